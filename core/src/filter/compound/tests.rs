use super::super::testnode::Node;
use super::*;
use proptest::prelude::*;

fn eval(s: &str) -> bool {
    parse_compound(s)
        .unwrap()
        .compile(s)
        .unwrap()
        .matches(&Node::web())
}

#[test]
fn precedence_and_grouping() {
    assert!(eval(
        "(role=web or role=db) and country=fr and not /^apache/"
    ));
    assert!(eval("role=db or role=web and country=fr"));
    assert!(!eval("(role=db or role=web) and country=de"));
    assert!(eval("nginx and ! apache"));
    assert!(eval("not not nginx"));
    assert!(eval(
        "identity(web-*) and agent(nrpe) and fact(os.family=Debian)"
    ));
    assert!(eval("identity(/^web-\\d+/) and class(/users$/)"));
    assert!(eval("fact(\"role = web\")"));
    assert!(eval("hostname=~/^(a|b) c/ or role!=db"));
    assert!(!eval("agent(resource)"));
}

#[test]
fn errors_carry_columns() {
    let cases = [
        ("", 1),
        ("role=web and", 13),
        ("(role=web", 10),
        ("role=web)", 9),
        ("and role=web", 1),
        ("role=web role=db", 10),
        ("fact(role)", 1),
        ("identity(/x(/)", 1),
        ("/unterminated", 1),
        ("fact(\"abc", 6),
        ("a or =x", 6),
    ];
    for (src, col) in cases {
        let e = parse_compound(src).unwrap_err();
        assert_eq!(e.column, col, "{src:?}: {e}");
    }
}

/// Each of these once overflowed the stack of whatever parsed,
/// compiled, matched or dropped it; now each is a clear error, on a
/// thread with a small stack to prove no deep recursion is left.
#[test]
fn deep_or_long_expressions_are_refused_not_overflowed() {
    let run = || {
        let cases: Vec<(String, &str)> = vec![
            (format!("{}x", "!".repeat(5000)), "bytes long"),
            (format!("{}x", "!".repeat(4000)), "nested more than"),
            (format!("{}x", "not ".repeat(1100)), "bytes long"),
            (format!("{}x", "not ".repeat(40)), "nested more than"),
            (
                format!("{}x{}", "(".repeat(40), ")".repeat(40)),
                "nested more than",
            ),
            (vec!["a"; 300].join(" and "), "more than 256 terms"),
            (vec!["a"; 2000].join(" or "), "bytes long"),
            (format!("/{}/", "a".repeat(2000)), "bytes long"),
            (
                format!("identity(/{}/)", "(a".repeat(300) + &")".repeat(300)),
                "invalid regular expression",
            ),
        ];
        // A regex whose compiled size is over the bound parses (its
        // syntax is fine) and is refused when compiled.
        let big = "class(/(?:a{1000}){1000}/)";
        let err = parse_compound(big).unwrap().compile(big).unwrap_err();
        assert!(err.message.contains("invalid regular expression"), "{err}");
        for (src, why) in cases {
            let err = parse_compound(&src).unwrap_err();
            assert!(
                err.message.contains(why),
                "{}...: {err}",
                &src[..src.len().min(40)]
            );
            assert!(
                err.to_string().len() < 6000,
                "the error repeats a huge input"
            );
        }
        // At the bounds, everything parses, compiles, matches and drops.
        let deep = format!("{}nginx", "not ".repeat(MAX_COMPOUND_DEPTH - 2));
        let nested = format!(
            "{}nginx{}",
            "(".repeat(MAX_COMPOUND_DEPTH - 1),
            ")".repeat(MAX_COMPOUND_DEPTH - 1)
        );
        let chain = vec!["nginx"; MAX_COMPOUND_TERMS].join(" and ");
        for src in [deep, nested, chain] {
            let e = parse_compound(&src).unwrap();
            assert!(e.compile(&src).unwrap().matches(&Node::web()), "{src}");
        }
    };
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn display_is_reparseable() {
    let src = "(role=web or identity(web-*)) and not fact(\"a=b\\\"c\")";
    let e = parse_compound(src).unwrap();
    let printed = e.to_string();
    assert_eq!(parse_compound(&printed).unwrap(), e, "{printed}");
}

fn arb_text() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_:.\\-\" ()/\\\\]{0,8}"
        .prop_map(|s| s.trim().to_string())
        .prop_filter("non-empty", |s| !s.is_empty())
}

fn arb_term() -> impl Strategy<Value = Expr> {
    let name = "[a-z][a-z0-9_.]{0,6}";
    let value = "[A-Za-z0-9_.\\- ()\"]{1,8}"
        .prop_map(|s| s.trim().to_string())
        .prop_filter("non-empty", |s| !s.is_empty() && !s.starts_with('/'));
    let op = prop_oneof![
        Just(super::super::FactOp::Eq),
        Just(super::super::FactOp::Ne),
        Just(super::super::FactOp::Lt),
        Just(super::super::FactOp::Ge),
    ];
    prop_oneof![
        "[a-z][a-z0-9_:]{0,8}".prop_map(|s| Expr::Term(Term::Class(s))),
        "[a-z][a-z0-9_.\\-]{0,8}".prop_map(|s| Expr::Term(Term::Identity(s))),
        "[a-z][a-z0-9_]{0,8}".prop_map(|s| Expr::Term(Term::Agent(s))),
        (name, op, value).prop_map(|(fact, op, value)| Expr::Term(Term::Fact(FactTerm {
            fact,
            op,
            value
        }))),
    ]
}

fn arb_expr() -> impl Strategy<Value = Expr> {
    arb_term().prop_recursive(5, 32, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Expr::Not(Box::new(a))),
        ]
    })
}

proptest! {
    #[test]
    fn parse_of_print_is_identity(e in arb_expr()) {
        let printed = e.to_string();
        let back = parse_compound(&printed);
        prop_assert_eq!(back.as_ref().ok(), Some(&e), "printed: {}", printed);
    }

    #[test]
    fn parser_never_panics(s in "\\PC{0,40}") {
        if let Ok(e) = parse_compound(&s) {
            let _ = e.compile(&s);
        }
    }

    #[test]
    fn parser_never_panics_on_filter_alphabet(s in "[a-z()!=<>~/ \"\\\\]{0,30}") {
        match parse_compound(&s) {
            Ok(e) => { let _ = e.compile(&s); }
            Err(err) => prop_assert!(err.column >= 1 && err.column <= s.chars().count() + 1),
        }
    }

    #[test]
    fn text_arguments_survive(t in arb_text()) {
        let e = Expr::Term(Term::Class(t.clone()));
        if Pattern::parse(&t).is_ok() {
            let back = parse_compound(&e.to_string());
            prop_assert_eq!(back.ok(), Some(e));
        }
    }
}

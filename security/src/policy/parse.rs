//! Reading actionpolicy and groups files.

use std::collections::HashMap;

use super::{Groups, Names, Policy, PolicyError, Rule};
use mco_core::filter::{parse_compound, FactTerm, Filter, FilterError};

/// A problem at a byte offset of the current line, before it becomes a
/// [`PolicyError`] with line and column.
struct At {
    byte: usize,
    message: String,
}

fn at(byte: usize, message: impl Into<String>) -> At {
    At {
        byte,
        message: message.into(),
    }
}

/// Turns a byte offset of `line` into a 1-based character column.
fn column(line: &str, byte: usize) -> usize {
    let mut byte = byte.min(line.len());
    while !line.is_char_boundary(byte) {
        byte -= 1;
    }
    line[..byte].chars().count() + 1
}

/// Meaningful lines: 1-based number, the whole line, and the byte range of its
/// content with surrounding whitespace removed. Blank and `#` lines are skipped.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str, usize, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let start = line.len() - line.trim_start().len();
        let body = line.trim();
        (!body.is_empty() && !body.starts_with('#')).then_some((i + 1, line, start, body))
    })
}

/// Whitespace-separated words of `s` with their byte offsets.
fn words(s: &str) -> impl Iterator<Item = (usize, &str)> {
    s.split(char::is_whitespace)
        .filter(|w| !w.is_empty())
        .map(move |w| (w.as_ptr() as usize - s.as_ptr() as usize, w))
}

pub(super) fn policy(file: &str, text: &str) -> Result<Policy, PolicyError> {
    let mut default_allow = None;
    let mut rules = Vec::new();
    for (number, line, start, body) in content_lines(text) {
        let err = |a: At| PolicyError {
            file: file.to_string(),
            line: number,
            column: column(line, start + a.byte),
            message: a.message,
        };
        let keyword = words(body).next().map_or("", |(_, w)| w);
        match keyword {
            "policy" => {
                if !rules.is_empty() {
                    return Err(err(at(0, "'policy default' must come before every rule")));
                }
                if default_allow.is_some() {
                    return Err(err(at(0, "a second 'policy default' line")));
                }
                default_allow = Some(policy_default(body).map_err(err)?);
            }
            "allow" | "deny" => rules.push(rule(number, body).map_err(err)?),
            _ => {
                return Err(err(at(
                    0,
                    format!("expected 'allow', 'deny' or 'policy default', found {keyword:?}"),
                )))
            }
        }
    }
    Ok(Policy {
        file: file.to_string(),
        default_allow: default_allow.unwrap_or(false),
        rules,
    })
}

/// `policy default allow|deny`, whitespace-separated.
fn policy_default(body: &str) -> Result<bool, At> {
    let w: Vec<_> = words(body).collect();
    match w.get(1) {
        Some((_, "default")) => {}
        Some((i, _)) => return Err(at(*i, "expected 'default' after 'policy'")),
        None => return Err(at(body.len(), "expected 'default allow' or 'default deny'")),
    }
    let allow = match w.get(2) {
        Some((_, "allow")) => true,
        Some((_, "deny")) => false,
        Some((i, other)) => {
            return Err(at(
                *i,
                format!("the default must be 'allow' or 'deny', not {other:?}"),
            ))
        }
        None => return Err(at(body.len(), "expected 'allow' or 'deny' after 'default'")),
    };
    if let Some((i, _)) = w.get(3) {
        return Err(at(*i, "unexpected text after the default"));
    }
    Ok(allow)
}

/// Splits a rule into columns with their byte offsets. A separator is a run of
/// blanks holding a tab, or, on a line without tabs, a run of two or more spaces.
fn columns(body: &str) -> Vec<(usize, &str)> {
    let tabbed = body.contains('\t');
    let mut out = Vec::new();
    let mut col_start = 0;
    let mut i = 0;
    let bytes = body.as_bytes();
    while i < bytes.len() {
        if bytes[i] != b' ' && bytes[i] != b'\t' {
            i += 1;
            continue;
        }
        let run_start = i;
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
            i += 1;
        }
        let run = &body[run_start..i];
        let separates = if tabbed {
            run.contains('\t')
        } else {
            run.len() >= 2
        };
        if separates {
            out.push((col_start, &body[col_start..run_start]));
            col_start = i;
        }
    }
    out.push((col_start, &body[col_start..]));
    out
}

fn rule(line: usize, body: &str) -> Result<Rule, At> {
    let cols = columns(body);
    let (_, keyword) = cols[0];
    let allow = match keyword {
        "allow" => true,
        "deny" => false,
        _ => {
            let len = if keyword.starts_with("allow") { 5 } else { 4 };
            return Err(at(
                len,
                "columns must be separated by tabs (or, on a line without tabs, \
                 by two or more spaces)",
            ));
        }
    };
    if cols.len() < 4 {
        let missing = ["callers", "actions", "facts"][cols.len() - 1];
        return Err(at(
            body.len(),
            format!(
                "missing the {missing} column: a rule is allow|deny, callers, actions, \
                 facts and optionally classes"
            ),
        ));
    }
    if let Some((i, _)) = cols.get(5) {
        return Err(at(
            *i,
            "too many columns: a rule has at most allow|deny, callers, actions, facts, classes",
        ));
    }
    let callers = names(cols[1], "callers")?;
    let actions = names(cols[2], "actions")?;
    let mut filter = Filter::default();
    let facts = condition(cols[3], Column::Facts, &mut filter)?;
    let classes = match cols.get(4) {
        Some(&c) => condition(c, Column::Classes, &mut filter)?,
        None => None,
    };
    let condition = if filter.is_empty() {
        None
    } else {
        let compiled = filter
            .compile()
            .map_err(|e| at(cols[3].0, format!("facts and classes: {}", e.message)))?;
        Some(compiled)
    };
    Ok(Rule {
        line,
        allow,
        callers,
        actions,
        facts,
        classes,
        condition,
    })
}

/// A CALLERS or ACTIONS column.
fn names((offset, text): (usize, &str), what: &str) -> Result<Names, At> {
    let list: Vec<_> = words(text).collect();
    if list.len() == 1 && list[0].1 == "*" {
        return Ok(Names::Any);
    }
    if let Some((i, _)) = list.iter().find(|(_, w)| *w == "*") {
        return Err(at(
            offset + i,
            format!("'*' must stand alone in the {what} column"),
        ));
    }
    Ok(Names::List(
        list.into_iter().map(|(_, w)| w.to_string()).collect(),
    ))
}

#[derive(Clone, Copy, PartialEq)]
enum Column {
    Facts,
    Classes,
}

/// A FACTS or CLASSES column, added to `filter`; returns its text unless `*`.
fn condition(
    (offset, text): (usize, &str),
    which: Column,
    filter: &mut Filter,
) -> Result<Option<String>, At> {
    let label = match which {
        Column::Facts => "facts",
        Column::Classes => "classes",
    };
    let filter_err = |base: usize, e: FilterError| {
        at(
            offset + base + byte_of_column(&text[base..], e.column),
            format!("{label} column: {}", e.message),
        )
    };
    if text == "*" {
        return Ok(None);
    }
    if is_compound(text) {
        parse_compound(text).map_err(|e| filter_err(0, e))?;
        let one = Filter {
            compound: vec![text.to_string()],
            ..Filter::default()
        };
        one.compile().map_err(|e| filter_err(0, e))?;
        filter.compound.push(text.to_string());
        return Ok(Some(text.to_string()));
    }
    for (i, word) in words(text) {
        if word == "*" {
            return Err(at(
                offset + i,
                format!("'*' must stand alone in the {label} column"),
            ));
        }
        match which {
            Column::Facts => {
                let term = FactTerm::parse(word).map_err(|e| filter_err(i, e))?;
                filter.fact.push(term);
            }
            Column::Classes => {
                let one = Filter {
                    class: vec![word.to_string()],
                    ..Filter::default()
                };
                one.compile().map_err(|e| filter_err(i, e))?;
                filter.class.push(word.to_string());
            }
        }
    }
    Ok(Some(text.to_string()))
}

/// The byte offset in `s` of a 1-based character column.
fn byte_of_column(s: &str, column: usize) -> usize {
    s.char_indices()
        .nth(column.saturating_sub(1))
        .map_or(s.len(), |(i, _)| i)
}

/// Whether a FACTS or CLASSES column is a compound expression: it has a word
/// `and`, `or` or `not`, a parenthesis, or a `!` that is not part of `!=`,
/// outside `/regex/` literals.
fn is_compound(text: &str) -> bool {
    if words(text).any(|(_, w)| matches!(w, "and" | "or" | "not")) {
        return true;
    }
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' => {
                let mut escaped = false;
                for r in chars.by_ref() {
                    match r {
                        '\\' if !escaped => escaped = true,
                        '/' if !escaped => break,
                        _ => escaped = false,
                    }
                }
            }
            '(' | ')' => return true,
            '!' if chars.peek() != Some(&'=') => return true,
            _ => {}
        }
    }
    false
}

pub(super) fn groups(file: &str, text: &str) -> Result<Groups, PolicyError> {
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    for (number, line, start, body) in content_lines(text) {
        let err = |byte: usize, message: String| PolicyError {
            file: file.to_string(),
            line: number,
            column: column(line, start + byte),
            message,
        };
        let mut w = words(body);
        let Some((_, name)) = w.next() else { continue };
        if name.contains(':') {
            let i = name.find(':').unwrap_or(0);
            return Err(err(
                i,
                format!("group name {name:?} contains ':', which only caller ids may"),
            ));
        }
        if name.contains('*') {
            return Err(err(
                name.find('*').unwrap_or(0),
                format!("group name {name:?} contains '*'"),
            ));
        }
        if groups.contains_key(name) {
            return Err(err(0, format!("group {name:?} is defined twice")));
        }
        groups.insert(
            name.to_string(),
            w.map(|(_, member)| member.to_string()).collect(),
        );
    }
    Ok(Groups { groups })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(text: &str) -> (usize, usize, String) {
        let e = Policy::parse("t.policy", text).unwrap_err();
        assert_eq!(e.file, "t.policy");
        (e.line, e.column, e.message)
    }

    #[test]
    fn full_file() {
        let text = "# header\n\npolicy default allow\n\
                    allow\tuser:alice user:bob\t*\t*\n\
                    deny\t*\trestart stop\trole=web country=fr\tnginx /^base::/\n\
                    allow\tops\tstatus\t(role=web or role=db) and not test\n";
        let p = Policy::parse("t.policy", text).unwrap();
        assert!(p.default_allow());
        assert_eq!(p.rules().len(), 3);
        let r = &p.rules()[0];
        assert_eq!(r.line, 4);
        assert!(r.allow);
        assert_eq!(
            r.callers,
            Names::List(vec!["user:alice".into(), "user:bob".into()])
        );
        assert_eq!(r.actions, Names::Any);
        assert!(r.facts.is_none() && r.classes.is_none() && r.condition.is_none());
        let r = &p.rules()[1];
        assert!(!r.allow);
        assert_eq!(r.facts.as_deref(), Some("role=web country=fr"));
        assert_eq!(r.classes.as_deref(), Some("nginx /^base::/"));
        assert!(r.condition.is_some());
        assert_eq!(p.rules()[2].line, 6);
    }

    #[test]
    fn no_default_line_denies() {
        let p = Policy::parse("t", "allow\t*\t*\t*\n").unwrap();
        assert!(!p.default_allow());
        let p = Policy::parse("t", "").unwrap();
        assert!(!p.default_allow() && p.rules().is_empty());
        let p = Policy::parse("t", "  policy   default\tdeny  \r\n").unwrap();
        assert!(!p.default_allow());
    }

    #[test]
    fn separators() {
        // Several tabs, blanks around tabs, CRLF endings.
        let p = Policy::parse("t", "allow\t\tuser:a \t*\t\t*\r\n").unwrap();
        assert_eq!(p.rules()[0].callers, Names::List(vec!["user:a".into()]));
        // A line without tabs splits on runs of two or more spaces.
        let p = Policy::parse("t", "allow  user:a user:b   *  role=web\n").unwrap();
        let r = &p.rules()[0];
        assert_eq!(
            r.callers,
            Names::List(vec!["user:a".into(), "user:b".into()])
        );
        assert_eq!(r.facts.as_deref(), Some("role=web"));
        // With a tab on the line, double spaces stay inside a column.
        let p = Policy::parse("t", "allow\t*\t*\trole=web  and  country=fr\n").unwrap();
        assert_eq!(
            p.rules()[0].facts.as_deref(),
            Some("role=web  and  country=fr")
        );
    }

    #[test]
    fn malformed_lines_have_line_and_column() {
        assert_eq!(
            err("# c\npermit\t*\t*\t*\n"),
            (
                2,
                1,
                "expected 'allow', 'deny' or 'policy default', found \"permit\"".into()
            )
        );
        let (l, c, m) = err("allow user:a * *\n");
        assert_eq!((l, c), (1, 6));
        assert!(m.contains("tabs"), "{m}");
        let (l, c, m) = err("\n\nallow\tuser:a\t*\n");
        assert_eq!((l, c), (3, 15));
        assert!(m.contains("missing the facts column"), "{m}");
        let (l, c, m) = err("deny\n");
        assert_eq!((l, c), (1, 5));
        assert!(m.contains("callers"), "{m}");
        let (l, c, m) = err("allow\t*\t*\t*\t*\textra\n");
        assert_eq!((l, c), (1, 15));
        assert!(m.contains("too many"), "{m}");
        // A fact without an operator, pointed at in the line.
        let (l, c, m) = err("allow\t*\t*\trole=web country\n");
        assert_eq!((l, c), (1, 20));
        assert!(m.starts_with("facts column: "), "{m}");
        // A missing value: the column of the end of the operator.
        let (l, c, _) = err("allow\t*\t*\trole=\n");
        assert_eq!((l, c), (1, 16));
        // A bad regex in a fact value.
        let (l, c, m) = err("allow\t*\t*\thost=~/a(/\n");
        assert_eq!((l, c), (1, 18));
        assert!(m.contains("regular expression"), "{m}");
        // A compound error, offset to the column of the expression.
        let (l, c, m) = err("allow\t*\t*\t(role=web\n");
        assert_eq!((l, c), (1, 20));
        assert!(m.contains("expected ')'"), "{m}");
        let (l, c, _) = err("allow\t*\t*\t*\trole=web and\n");
        assert_eq!((l, c), (1, 25));
        let (l, c, m) = err("allow\t*\t*\t*\t/x(/\n");
        assert_eq!((l, c), (1, 14));
        assert!(m.starts_with("classes column: "), "{m}");
        let (l, c, m) = err("allow\tuser:a *\t*\t*\n");
        assert_eq!((l, c), (1, 14));
        assert!(m.contains("stand alone"), "{m}");
        // Columns count characters, not bytes.
        let (l, c, _) = err("allow\tuser:é\t*\tröle=\n");
        assert_eq!((l, c), (1, 21));
    }

    #[test]
    fn policy_default_errors() {
        assert_eq!(err("policy deny\n").1, 8);
        assert_eq!(err("policy default maybe\n").1, 16);
        assert_eq!(err("policy default\n").1, 15);
        assert_eq!(err("policy default deny now\n").1, 21);
        let (l, c, m) = err("allow\t*\t*\t*\npolicy default allow\n");
        assert_eq!((l, c), (2, 1));
        assert!(m.contains("before"), "{m}");
        assert_eq!(err("policy default allow\npolicy default deny\n").0, 2);
        let (l, c, _) = err("  policy default x\n");
        assert_eq!((l, c), (1, 18));
    }

    /// The reproducer the policy fuzz target found (`fuzz/regressions/policy/deep-facts-column`):
    /// a FACTS column of thousands of `not`s overflowed the stack before compound filters were
    /// bounded. Now it is an error naming the line, on a stack as small as a worker's.
    #[test]
    fn a_deep_compound_column_is_an_error_not_an_overflow() {
        let text = format!("allow\t*\t*\t{}x\t*\n", "not ".repeat(3000));
        let r = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let e = Policy::parse("deep.policy", &text).unwrap_err();
                (e.line, e.to_string())
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(r.0, 1, "{}", r.1);
        assert!(
            r.1.contains("bytes long") || r.1.contains("nested"),
            "{}",
            r.1
        );
    }

    #[test]
    fn compound_detection() {
        assert!(is_compound("role=web and country=fr"));
        assert!(is_compound("not role=web"));
        assert!(is_compound("!test"));
        assert!(is_compound("fact(role=web)"));
        assert!(!is_compound("role!=web country=fr"));
        assert!(!is_compound("name=~/^(a|b)!$/"));
        assert!(!is_compound("android=1 order=2"));
    }

    #[test]
    fn groups_file() {
        let g = Groups::parse(
            "groups",
            "# ops people\nops user:alice\tuser:bob\n\n  empty\n",
        )
        .unwrap();
        assert_eq!(g.len(), 2);
        assert!(g.contains("ops", "user:bob"));
        assert!(!g.contains("ops", "user:carol"));
        assert_eq!(g.members("empty"), Some(&[][..]));
        assert!(g.members("nope").is_none());

        let e = Groups::parse("groups", "ops user:a\n  user:x user:b\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 7));
        let e = Groups::parse("groups", "ops user:a\nops user:b\n").unwrap_err();
        assert_eq!((e.line, e.column, e.file.as_str()), (2, 1, "groups"));
        assert!(e.message.contains("twice"));
        let e = Groups::parse("groups", "a* user:a\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 2));
        assert_eq!(e.to_string(), "groups:1:2: group name \"a*\" contains '*'");
    }

    fn policy_alphabet() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("allow".to_string()),
            Just("deny".to_string()),
            Just("policy default ".to_string()),
            Just("\t".to_string()),
            Just("  ".to_string()),
            Just("\n".to_string()),
            Just("*".to_string()),
            Just(" and ".to_string()),
            Just(" or ".to_string()),
            Just("not ".to_string()),
            Just("#".to_string()),
            "[a-z:=<>!~/()\"\\\\. é]{1,6}",
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    fn check(text: &str, r: Result<(), PolicyError>) -> Result<(), TestCaseError> {
        if let Err(e) = r {
            let line = text.lines().nth(e.line.wrapping_sub(1));
            prop_assert!(line.is_some(), "line {} out of range: {e}", e.line);
            let width = line.map_or(0, |l| l.chars().count());
            prop_assert!(
                e.column >= 1 && e.column <= width + 1,
                "column {} out of 1..={}: {e}",
                e.column,
                width + 1
            );
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn policy_parser_never_panics(s in "\\PC{0,200}") {
            check(&s, Policy::parse("p", &s).map(|_| ()))?;
        }

        #[test]
        fn policy_parser_never_panics_on_policy_alphabet(s in policy_alphabet()) {
            check(&s, Policy::parse("p", &s).map(|_| ()))?;
        }

        #[test]
        fn groups_parser_never_panics(s in "[a-z:* \t\n#é]{0,80}") {
            check(&s, Groups::parse("g", &s).map(|_| ()))?;
        }
    }
}

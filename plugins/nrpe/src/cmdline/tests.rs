use super::*;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

const ON: ArgPolicy = ArgPolicy {
    allow: true,
    allow_dash: false,
};

fn direct(template: &str, args: &[&str]) -> Vec<String> {
    match prepare(template, &s(args)).unwrap() {
        Program::Direct(w) => w,
        other => panic!("{template:?} is not direct: {other:?}"),
    }
}

#[test]
fn arguments_are_off_unless_allowed() {
    let off = ArgPolicy::default();
    assert_eq!(off.split("").unwrap(), Vec::<String>::new());
    assert_eq!(off.split("5").unwrap_err(), ArgError::NotAllowed);
    assert!(off
        .split("5")
        .unwrap_err()
        .to_string()
        .contains("allow_arguments"));
    assert_eq!(ON.split("5!10").unwrap(), s(&["5", "10"]));
    let many = vec!["x"; MAX_ARGS + 1].join("!");
    assert_eq!(
        ON.split(&many).unwrap_err(),
        ArgError::TooMany(MAX_ARGS + 1)
    );
    assert_eq!(ON.split(&many[2..]).unwrap().len(), MAX_ARGS);
}

#[test]
fn each_argument_must_be_one_safe_word() {
    assert_eq!(
        ON.split("5!!/var/lib:x,y=z%@+.-").unwrap(),
        s(&["5", "", "/var/lib:x,y=z%@+.-"])
    );
    for bad in [
        "x;touch /tmp/p",
        "$(id)",
        "`id`",
        "a|b",
        "a&b",
        "a>b",
        "'q'",
        "\"q\"",
        "a\\b",
        "*",
        "~root",
        "a\nb",
        "#c",
        "a b",
        "a\tb",
        "a\u{a0}b",
        "a\u{1b}b",
    ] {
        let e = ON.split(&format!("ok!{bad}")).unwrap_err();
        assert!(
            matches!(&e, ArgError::Bad { position: 2, arg, .. } if arg == bad),
            "{bad:?}: {e:?}"
        );
    }
    let e = ON.split("x!-o").unwrap_err();
    assert!(e.to_string().contains("allow_dash_arguments"), "{e}");
    let dash = ArgPolicy {
        allow: true,
        allow_dash: true,
    };
    assert_eq!(dash.split("x!-oX").unwrap(), s(&["x", "-oX"]));
    assert!(dash.split("-o X").is_err(), "whitespace stays refused");
}

/// The review's attack: one argument with spaces and dashes used to become options of the
/// check. It is refused, and even an argument the rules let through stays one word.
#[test]
fn one_argument_cannot_add_options_to_the_check() {
    let attack = "localhost -o ProxyCommand=/home/mallory/x --config=/tmp/y";
    for policy in [
        ON,
        ArgPolicy {
            allow: true,
            allow_dash: true,
        },
    ] {
        let e = policy.split(attack).unwrap_err();
        assert!(e.to_string().contains("whitespace"), "{e}");
    }
    let template = "/usr/lib/nagios/plugins/check_ssh -H $ARG1$";
    // Had it come through (the wire bypassing the checks), it would still be one word.
    assert_eq!(
        direct(template, &[attack]),
        ["/usr/lib/nagios/plugins/check_ssh", "-H", attack]
    );
    assert_eq!(
        direct(template, &["localhost"]),
        ["/usr/lib/nagios/plugins/check_ssh", "-H", "localhost"]
    );
}

#[test]
fn placeholders_stay_inside_their_word() {
    assert_eq!(
        direct("c -w $ARG1$ -c $ARG2$", &["5", "10"]),
        ["c", "-w", "5", "-c", "10"]
    );
    // A missing or empty argument is one empty word: later words never shift.
    assert_eq!(
        direct("c -H $ARG1$ -p 22", &[]),
        ["c", "-H", "", "-p", "22"]
    );
    assert_eq!(direct("c $ARG3$x", &["a"]), ["c", "x"]);
    assert_eq!(
        direct("c --f=$ARG1$ $ARG1$$ARG2$", &["a b", "c"]),
        ["c", "--f=a b", "a bc"]
    );
    assert_eq!(
        direct("c 'q $ARG1$' \"d $ARG1$\"", &["x y"]),
        ["c", "q x y", "d x y"]
    );
    assert_eq!(direct("c $ARG0$ $ARG99$", &["a"]), ["c", "", ""]);
    assert_eq!(direct("é $ARG1$ ü", &["5"]), ["é", "5", "ü"]);
    // Not placeholders: shell syntax.
    for shell in ["c $ARG", "c $ARGx$", "c $ARG1", "c $ARG12345$"] {
        assert!(
            matches!(prepare(shell, &[]).unwrap(), Program::Shell { .. }),
            "{shell}"
        );
    }
}

#[test]
fn splitting_like_sh() {
    assert_eq!(
        direct("/usr/bin/check -w 5  -c '10 20' \"a b\" c\\ d", &[]),
        ["/usr/bin/check", "-w", "5", "-c", "10 20", "a b", "c d"]
    );
    assert_eq!(direct("x '' \"\"", &[]), ["x", "", ""]);
    assert_eq!(direct("x 'a|b' \"c;d\"", &[]), ["x", "a|b", "c;d"]);
    for shell in [
        "a | b",
        "a > /dev/null",
        "a; b",
        "echo $HOME",
        "x \"$Y\"",
        "ls *.cfg",
        "a && b",
    ] {
        assert_eq!(
            prepare(shell, &[]).unwrap(),
            Program::Shell {
                line: shell.into(),
                args: vec![]
            },
            "{shell}"
        );
    }
    for broken in ["", "   ", "x 'a", "x \"a", "x \\", "x '$ARG1$"] {
        assert!(prepare(broken, &[]).is_err(), "{broken:?}");
    }
}

#[test]
fn shell_lines_get_arguments_as_quoted_positional_parameters() {
    let p = prepare(
        "c $ARG1$ x$ARG2$ '$ARG1$ q' \"$ARG2$ d\" $ARG0$ | tail -1",
        &s(&["a b", "c;d"]),
    )
    .unwrap();
    assert_eq!(
        p,
        Program::Shell {
            line: "c \"${1}\" x\"${2}\" ''\"${1}\"' q' \"${2} d\" '' | tail -1".into(),
            args: s(&["a b", "c;d"]),
        }
    );
    assert_eq!(
        p.display(),
        "/bin/sh -c 'c \"${1}\" x\"${2}\" '\\'''\\''\"${1}\"'\\'' q'\\'' \"${2} d\" '\\'''\\'' | tail -1' nrpe 'a b' 'c;d'"
    );
    // Only up to the highest referenced; missing ones are empty.
    assert_eq!(
        prepare("c $ARG3$ | d", &s(&["a"])).unwrap(),
        Program::Shell {
            line: "c \"${3}\" | d".into(),
            args: s(&["a", "", ""]),
        }
    );
    assert_eq!(
        Program::Direct(s(&["/bin/echo", "OK - fine|x=1s;2;3", "plain-1.0"])).display(),
        "/bin/echo 'OK - fine|x=1s;2;3' plain-1.0"
    );
}

/// What a real `/bin/sh` makes of a rewritten line: every argument arrives whole and literal,
/// in every quoting context.
#[test]
fn a_real_shell_receives_each_argument_as_one_literal_word() {
    let evil = s(&["a  b*", "$(touch /nonexistent/x);`id`", "'\"\\"]);
    let p = prepare(
        "printf '<%s>' $ARG1$ \"$ARG2$\" 'q$ARG3$q' $ARG2$x | cat",
        &evil,
    )
    .unwrap();
    let Program::Shell { line, args } = &p else {
        panic!("{p:?}")
    };
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(line)
        .arg(SHELL_NAME)
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("<{}><{}><q{}q><{}x>", evil[0], evil[1], evil[2], evil[1])
    );
}

proptest::proptest! {
    /// Whatever an argument holds, a direct line gets exactly one word in its place.
    #[test]
    fn an_argument_is_always_exactly_one_word(arg in "[^\u{0}]{0,40}") {
        let words = direct("/bin/check -x $ARG1$ -y", &[arg.as_str()]);
        proptest::prop_assert_eq!(words, s(&["/bin/check", "-x", &arg, "-y"]));
    }

    /// Arguments the rules accept never start an option.
    #[test]
    fn accepted_arguments_are_plain_words(arg in "[^!]{0,40}") {
        if let Ok(args) = ON.split(&arg) {
            for a in &args {
                proptest::prop_assert!(!a.starts_with('-') && !a.contains(char::is_whitespace));
            }
        }
    }
}

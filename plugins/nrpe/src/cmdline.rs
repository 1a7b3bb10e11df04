//! From a definition and request arguments to something to execute.
//!
//! Arguments arrive from the bus, so each must be *shell-safe*: none of the
//! characters a shell gives meaning to (quotes, `$`, backticks, `;`, `|`,
//! `&`, redirections, globs, `#`, `~`, brackets, backslash, control
//! characters). They replace `$ARG1$`, `$ARG2$`, … in the command line, which
//! is then split into words the way `sh` would: an argument holding spaces
//! becomes several words, as NRPE operators expect (`-w 5 -c 10`). Because a
//! safe argument can add only plain words, this is equally safe whether the
//! line then runs directly or, when the operator wrote shell syntax of their
//! own (a pipe, a redirection, a variable), through `/bin/sh -c`.

/// Characters an argument may not contain.
pub const UNSAFE_CHARS: &[char] = &[
    '`', '$', ';', '|', '&', '>', '<', '(', ')', '{', '}', '[', ']', '*', '?', '~', '\'', '"',
    '\\', '#', '!',
];

/// An argument that is not shell-safe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("argument {position} ({arg:?}) is not shell-safe: it contains {found:?}")]
pub struct UnsafeArg {
    /// 1-based position (`$ARGn$`).
    pub position: usize,
    /// The argument.
    pub arg: String,
    /// The first offending character.
    pub found: char,
}

/// Splits `!`-separated arguments and checks each one.
pub fn split_args(args: &str) -> Result<Vec<String>, UnsafeArg> {
    if args.is_empty() {
        return Ok(Vec::new());
    }
    args.split('!')
        .enumerate()
        .map(|(i, a)| {
            match a
                .chars()
                .find(|c| UNSAFE_CHARS.contains(c) || c.is_control())
            {
                Some(found) => Err(UnsafeArg {
                    position: i + 1,
                    arg: a.to_string(),
                    found,
                }),
                None => Ok(a.to_string()),
            }
        })
        .collect()
}

/// Replaces `$ARGn$` with the n-th argument (empty when there are fewer).
pub fn substitute(template: &str, args: &[String]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("$ARG") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 4..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let closed = digits > 0 && after.as_bytes().get(digits) == Some(&b'$');
        match after[..digits].parse::<usize>() {
            Ok(n) if closed => {
                if let Some(a) = n.checked_sub(1).and_then(|i| args.get(i)) {
                    out.push_str(a);
                }
                rest = &after[digits + 1..];
            }
            _ => {
                out.push_str("$ARG");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// How a command line is to be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// Program and arguments, no shell involved.
    Direct(Vec<String>),
    /// Shell syntax that only `/bin/sh -c` can run.
    Shell(String),
}

/// A command line that cannot be run at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the command line {line:?} {why}")]
pub struct BadLine {
    /// The line.
    pub line: String,
    /// What is wrong.
    pub why: &'static str,
}

/// Characters that, outside quotes, make a line need a shell.
const SHELL_SYNTAX: &[char] = &[
    '|', '&', ';', '<', '>', '(', ')', '$', '`', '*', '?', '[', '#', '~', '{', '}', '!', '\n',
];

/// Splits a command line into words as `sh` would, or says it needs a shell.
pub fn program(line: &str) -> Result<Program, BadLine> {
    let bad = |why| BadLine {
        line: line.to_string(),
        why,
    };
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(bad("has an unbalanced single quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('$') | Some('`') => return Ok(Program::Shell(line.to_string())),
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => word.push(e),
                            Some(e) => {
                                word.push('\\');
                                word.push(e);
                            }
                            None => return Err(bad("has an unbalanced double quote")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(bad("has an unbalanced double quote")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(e) => {
                    in_word = true;
                    word.push(e);
                }
                None => return Err(bad("ends with a backslash")),
            },
            c if SHELL_SYNTAX.contains(&c) => return Ok(Program::Shell(line.to_string())),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err(bad("is empty"));
    }
    Ok(Program::Direct(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn args_must_be_shell_safe() {
        assert_eq!(split_args("").unwrap(), Vec::<String>::new());
        assert_eq!(
            split_args("-w 5!-c 10!/var/lib:x,y=z%@+").unwrap(),
            s(&["-w 5", "-c 10", "/var/lib:x,y=z%@+"])
        );
        assert_eq!(split_args("a!!b").unwrap(), s(&["a", "", "b"]));
        for (bad, found) in [
            ("x;touch /tmp/p", ';'),
            ("$(id)", '$'),
            ("`id`", '`'),
            ("a|b", '|'),
            ("a&b", '&'),
            ("a>b", '>'),
            ("'q'", '\''),
            ("\"q\"", '"'),
            ("a\\b", '\\'),
            ("*", '*'),
            ("~root", '~'),
            ("a\nb", '\n'),
            ("#c", '#'),
        ] {
            let e = split_args(&format!("ok!{bad}")).unwrap_err();
            assert_eq!((e.position, e.found), (2, found), "{bad:?}");
        }
    }

    #[test]
    fn substitution() {
        let a = s(&["5", "10"]);
        assert_eq!(substitute("c -w $ARG1$ -c $ARG2$", &a), "c -w 5 -c 10");
        assert_eq!(substitute("c $ARG3$x", &a), "c x");
        assert_eq!(
            substitute("c $ARG0$ $ARG $ARGx$ $ARG1", &a),
            "c  $ARG $ARGx$ $ARG1"
        );
        assert_eq!(substitute("$ARG1$$ARG2$", &a), "510");
        assert_eq!(substitute("é $ARG1$ ü", &a), "é 5 ü");
    }

    #[test]
    fn splitting_like_sh() {
        assert_eq!(
            program("/usr/bin/check -w 5  -c '10 20' \"a b\" c\\ d").unwrap(),
            Program::Direct(s(&[
                "/usr/bin/check",
                "-w",
                "5",
                "-c",
                "10 20",
                "a b",
                "c d"
            ]))
        );
        assert_eq!(
            program("x '' \"\"").unwrap(),
            Program::Direct(s(&["x", "", ""]))
        );
        assert_eq!(
            program("x 'a|b' \"c;d\"").unwrap(),
            Program::Direct(s(&["x", "a|b", "c;d"]))
        );
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
                program(shell).unwrap(),
                Program::Shell(shell.into()),
                "{shell}"
            );
        }
        for broken in ["", "   ", "x 'a", "x \"a", "x \\"] {
            assert!(program(broken).is_err(), "{broken:?}");
        }
    }

    proptest::proptest! {
        /// A safe argument substituted into a plain line only ever adds plain words.
        #[test]
        fn safe_args_never_turn_a_line_into_shell(arg in "[^!]{0,40}") {
            if let Ok(args) = split_args(&arg) {
                let line = substitute("/bin/check -x $ARG1$", &args);
                proptest::prop_assert!(matches!(program(&line), Ok(Program::Direct(_))), "{line:?}");
            }
        }
    }
}

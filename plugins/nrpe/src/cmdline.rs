//! From a definition and request arguments to something to execute.
//!
//! Arguments arrive from the bus, so the key decision is that **each
//! argument is exactly one word** of what runs, whatever it holds: the
//! operator's line is split into words first, with `$ARGn$` kept as a
//! placeholder, and only then does an argument take its place, inside the
//! one word the operator wrote it in. An argument can never add a word, an
//! option or shell syntax. When the operator's line needs a shell (a pipe, a
//! redirection, a variable of their own), the line runs as
//! `/bin/sh -c LINE nrpe ARG1 ARG2 …` with each `$ARGn$` rewritten to a
//! quoted reference to positional parameter `n`, so the shell never parses
//! an argument's text.
//!
//! Arguments are refused unless the node allows them (`allow_arguments`,
//! off by default, as NRPE's `dont_blame_nrpe`), and each allowed one must
//! also be one plain word on its own ([`ArgPolicy::split`]): no whitespace,
//! none of the characters a shell gives meaning to, no control character,
//! and no leading `-` unless the node allows that too
//! (`allow_dash_arguments`). The character rules are the second wall: a
//! definition can still hand its words to a shell of its own
//! (`sh -c '… $ARG1$'`, `ssh host check $ARG1$`), and there an argument is
//! one literal word because it holds nothing a shell splits or expands.

/// The most arguments a request may carry (NRPE's own limit).
pub const MAX_ARGS: usize = 16;

/// Characters an argument may not contain (whitespace and control characters
/// are refused too).
pub const UNSAFE_CHARS: &[char] = &[
    '`', '$', ';', '|', '&', '>', '<', '(', ')', '{', '}', '[', ']', '*', '?', '~', '\'', '"',
    '\\', '#', '!',
];

/// What this node accepts as arguments (from its `[plugin.nrpe]` settings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArgPolicy {
    /// Whether requests may carry arguments at all.
    pub allow: bool,
    /// Whether an argument may start with `-` (and so be taken for an option).
    pub allow_dash: bool,
}

/// Arguments that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// The node takes no arguments.
    #[error("this node does not accept command arguments (allow_arguments is off in its [plugin.nrpe] settings)")]
    NotAllowed,
    /// More than [`MAX_ARGS`].
    #[error("{0} arguments given; at most {MAX_ARGS} are accepted")]
    TooMany(usize),
    /// One argument breaks a rule.
    #[error("argument {position} ({arg:?}) {why}")]
    Bad {
        /// 1-based position (`$ARGn$`).
        position: usize,
        /// The argument.
        arg: String,
        /// Which rule it breaks.
        why: String,
    },
}

impl ArgPolicy {
    /// Splits `!`-separated arguments and checks each one; an empty string
    /// is no arguments.
    pub fn split(&self, args: &str) -> Result<Vec<String>, ArgError> {
        if args.is_empty() {
            return Ok(Vec::new());
        }
        if !self.allow {
            return Err(ArgError::NotAllowed);
        }
        let count = args.split('!').count();
        if count > MAX_ARGS {
            return Err(ArgError::TooMany(count));
        }
        args.split('!')
            .enumerate()
            .map(|(i, a)| {
                let bad = |why: String| ArgError::Bad {
                    position: i + 1,
                    arg: a.to_string(),
                    why,
                };
                if let Some(c) = a.chars().find(|c| c.is_whitespace()) {
                    return Err(bad(format!(
                        "contains whitespace ({c:?}): each argument is one word"
                    )));
                }
                if let Some(c) = a
                    .chars()
                    .find(|c| UNSAFE_CHARS.contains(c) || c.is_control())
                {
                    return Err(bad(format!("is not shell-safe: it contains {c:?}")));
                }
                if a.starts_with('-') && !self.allow_dash {
                    return Err(bad("starts with '-': this node does not accept options as arguments (allow_dash_arguments is off)".into()));
                }
                Ok(a.to_string())
            })
            .collect()
    }
}

/// What will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// Program and arguments, no shell involved.
    Direct(Vec<String>),
    /// Shell syntax that only `/bin/sh -c` can run, with the positional
    /// parameters its `$ARGn$` references became.
    Shell {
        /// The line given to `sh -c`.
        line: String,
        /// `$1`, `$2`, … (empty when the line references no argument).
        args: Vec<String>,
    },
}

/// The name `$0` has in a shell definition.
pub const SHELL_NAME: &str = "nrpe";

impl Program {
    /// The command line as a shell would read it, for the reply's `command`.
    pub fn display(&self) -> String {
        match self {
            Program::Direct(words) => words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" "),
            Program::Shell { line, args } if args.is_empty() => line.clone(),
            Program::Shell { line, args } => {
                let mut out = format!("/bin/sh -c {} {SHELL_NAME}", quote(line));
                for a in args {
                    out.push(' ');
                    out.push_str(&quote(a));
                }
                out
            }
        }
    }
}

/// `w` single-quoted unless it is plain.
fn quote(w: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:=,%@+-".contains(c);
    if !w.is_empty() && w.chars().all(plain) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
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

/// If `s` starts with `$ARGn$`: `n` and the length of the placeholder.
fn placeholder(s: &str) -> Option<(usize, usize)> {
    let after = s.strip_prefix("$ARG")?;
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 4 || after.as_bytes().get(digits) != Some(&b'$') {
        return None;
    }
    let n = after[..digits].parse().ok()?;
    Some((n, 4 + digits + 1))
}

/// Argument `n` (1-based), empty when not given.
fn arg(args: &[String], n: usize) -> &str {
    n.checked_sub(1)
        .and_then(|i| args.get(i))
        .map_or("", String::as_str)
}

/// Splits the operator's `template` into words as `sh` would, each
/// `$ARGn$` becoming part of the one word it stands in; or, if the line
/// needs a shell, rewrites its placeholders into quoted positional
/// parameters. `args` are already checked.
pub fn prepare(template: &str, args: &[String]) -> Result<Program, BadLine> {
    match words(template, args)? {
        Some(words) => Ok(Program::Direct(words)),
        None => Ok(shell(template, args)),
    }
}

/// The words of `line` with arguments in place, or `None` if it needs a shell.
fn words(line: &str, args: &[String]) -> Result<Option<Vec<String>>, BadLine> {
    let bad = |why| BadLine {
        line: line.to_string(),
        why,
    };
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut i = 0;
    while let Some(c) = line[i..].chars().next() {
        if let Some((n, len)) = placeholder(&line[i..]) {
            word.push_str(arg(args, n));
            in_word = true;
            i += len;
            continue;
        }
        i += c.len_utf8();
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
                    if let Some((n, len)) = placeholder(&line[i..]) {
                        word.push_str(arg(args, n));
                        i += len;
                        continue;
                    }
                    let Some(c) = line[i..].chars().next() else {
                        return Err(bad("has an unbalanced single quote"));
                    };
                    i += c.len_utf8();
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                loop {
                    if let Some((n, len)) = placeholder(&line[i..]) {
                        word.push_str(arg(args, n));
                        i += len;
                        continue;
                    }
                    let Some(c) = line[i..].chars().next() else {
                        return Err(bad("has an unbalanced double quote"));
                    };
                    i += c.len_utf8();
                    match c {
                        '"' => break,
                        '$' | '`' => return Ok(None),
                        '\\' => match line[i..].chars().next() {
                            Some(e) => {
                                i += e.len_utf8();
                                if !matches!(e, '"' | '\\' | '$' | '`') {
                                    word.push('\\');
                                }
                                word.push(e);
                            }
                            None => return Err(bad("has an unbalanced double quote")),
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => match line[i..].chars().next() {
                Some(e) => {
                    i += e.len_utf8();
                    in_word = true;
                    word.push(e);
                }
                None => return Err(bad("ends with a backslash")),
            },
            c if SHELL_SYNTAX.contains(&c) => return Ok(None),
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
    Ok(Some(words))
}

/// Where a shell is while reading a line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    None,
    Single,
    Double,
}

/// `line` for `sh -c`, each `$ARGn$` replaced by a reference to `$n` quoted
/// for where it stands, with the positional parameters to pass.
fn shell(line: &str, args: &[String]) -> Program {
    let mut out = String::with_capacity(line.len() + 16);
    let mut used = 0;
    let mut q = Quoting::None;
    let mut i = 0;
    while let Some(c) = line[i..].chars().next() {
        if let Some((n, len)) = placeholder(&line[i..]) {
            i += len;
            if (1..=MAX_ARGS).contains(&n) {
                used = used.max(n);
                out.push_str(match q {
                    Quoting::None => "\"${",
                    Quoting::Double => "${",
                    Quoting::Single => "'\"${",
                });
                out.push_str(&n.to_string());
                out.push_str(match q {
                    Quoting::None => "}\"",
                    Quoting::Double => "}",
                    Quoting::Single => "}\"'",
                });
            } else if q == Quoting::None {
                // Never given: an empty word, as in a direct line.
                out.push_str("''");
            }
            continue;
        }
        i += c.len_utf8();
        out.push(c);
        match (q, c) {
            (Quoting::None, '\'') => q = Quoting::Single,
            (Quoting::Single, '\'') => q = Quoting::None,
            (Quoting::None, '"') => q = Quoting::Double,
            (Quoting::Double, '"') => q = Quoting::None,
            (Quoting::None | Quoting::Double, '\\') => {
                if let Some(e) = line[i..].chars().next() {
                    i += e.len_utf8();
                    out.push(e);
                }
            }
            _ => {}
        }
    }
    let positional = (1..=used).map(|n| arg(args, n).to_string()).collect();
    Program::Shell {
        line: out,
        args: positional,
    }
}

#[cfg(test)]
mod tests;

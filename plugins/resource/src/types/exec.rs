//! `exec`: run a command on the node, unless it need not run.
//!
//! **The escape hatch.** Commands run on the real node, from its real
//! programs, whatever the configured root: the root only decides where the
//! paths this type checks live (`creates`, `cwd`) and whose `/etc/passwd`
//! `user` is looked up in. Allow the type only where running arbitrary
//! commands as root is intended.
//!
//! - The name is a title; without `command` the name is the command (as in
//!   Puppet).
//! - `creates` (a path): the command does not run when it exists (the path
//!   itself, a link included; a link among its directories is an error,
//!   see [`crate::beneath`]).
//!   `onlyif`: runs only if this command exits 0; `unless`: runs only if
//!   this command does not exit 0. They are checked in that order, and run
//!   with the same `shell`, `user`, `cwd`, `environment` and `timeout`.
//! - `shell`: `true` runs the command through `/bin/sh -c`. Otherwise it is
//!   split into words here — spaces separate words, `'…'` and `"…"` quote,
//!   `\` escapes the next character — and shell syntax (`|`, `;`, `&`, `>`,
//!   `<`, `$(`, `${`, `$NAME`, backquotes) is refused with a message to set
//!   `shell=true`. Without a shell, `*` and `~` are not expanded.
//! - `cwd` (default: the root; opened without following links and entered
//!   by descriptor), `environment` (`KEY=VALUE` items, comma
//!   separated, so a value cannot hold a comma; a secret: never shown in a
//!   reply, and a refused item is named by its position), `user` (name or number
//!   from the root's `/etc/passwd`; its `HOME`, `USER` and `LOGNAME` are
//!   set), `timeout` (seconds; default the
//!   agent's command timeout), `returns` (exit codes that mean success;
//!   default `0`).
//!
//! State: an exec has no state of its own. `find` shows
//! `{name, ensure: "present", command}`. In `do`, the checks are evaluated
//! (see [`ResourceType::current`]) and the resource shows `would_run` and,
//! when it would not, the `reason`; the one possible change is `executed`
//! from `notrun` to `ran`, so a noop `do` runs only the checks. After a run
//! the resource also shows `exitcode` and `output` (the last 50 lines of
//! standard output then standard error, at most 16 KiB). An exit code not in
//! `returns` fails the request (status 1) with the code and the output's
//! last lines. The value of every `environment` item of at least
//! [`SCRUB_MIN`] characters is replaced by `[redacted]` in that output, so a
//! command that prints its secrets (or fails saying them) does not put them
//! in the reply, the audit log or the logs. `search` is refused.

use std::time::Duration;

use serde_json::{json, Value};

use crate::model::{bad_item, strings, Change, Failure, Kind, Property, State, REDACTED};
use crate::system::{Cmd, Output, System};
use crate::types::file::account;
use crate::types::ResourceType;

const PROPS: &[Property] = &[
    Property::new("command", Kind::Text),
    Property::new("creates", Kind::Text),
    Property::new("onlyif", Kind::Text),
    Property::new("unless", Kind::Text),
    Property::new("cwd", Kind::Text),
    Property::new("environment", Kind::List).sensitive(),
    Property::new("user", Kind::Text),
    Property::new("timeout", Kind::Integer),
    Property::new("returns", Kind::List),
    Property::new("shell", Kind::Boolean),
];

/// Lines of output kept in a reply or a failure.
const OUTPUT_LINES: usize = 50;
/// Bytes of output kept in a reply or a failure.
const OUTPUT_BYTES: usize = 16 * 1024;

/// Environment values shorter than this are not scrubbed from a run's
/// output: they would mangle it (`1`, `C`), and carry no secret worth the name.
pub const SCRUB_MIN: usize = 6;

/// `output` with every `environment` value of at least [`SCRUB_MIN`]
/// characters replaced by [`REDACTED`], longest first (so a value holding
/// another is replaced whole).
fn scrub(output: String, desired: &State) -> String {
    let mut values: Vec<String> = desired
        .get("environment")
        .map(strings)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|item| item.split_once('=').map(|(_, v)| v.to_string()))
        .filter(|v| v.chars().count() >= SCRUB_MIN)
        .collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values
        .iter()
        .fold(output, |out, v| out.replace(v.as_str(), REDACTED))
}

/// The `exec` type.
pub struct Exec;

/// Splits a command line into words without a shell: blanks separate
/// words, single quotes keep everything literally, double quotes keep all
/// but `\"`, `\\`, `\$` and `` \` `` escapes, a backslash outside quotes
/// takes the next character literally. Shell syntax outside single quotes
/// is refused: the message says what was found.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut it = line.chars().peekable();
    let dollar = |next: Option<&char>| matches!(next, Some(c) if *c == '(' || *c == '{' || *c == '_' || c.is_ascii_alphabetic());
    while let Some(c) = it.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match it.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("has an unclosed single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match it.next() {
                        Some('"') => break,
                        Some('\\') => match it.peek() {
                            Some(&x @ ('"' | '\\' | '$' | '`')) => {
                                cur.push(x);
                                it.next();
                            }
                            _ => cur.push('\\'),
                        },
                        Some('`') => return Err("uses `…` substitution".into()),
                        Some('$') if dollar(it.peek()) => {
                            return Err("uses $ expansion".into());
                        }
                        Some(x) => cur.push(x),
                        None => return Err("has an unclosed double quote".into()),
                    }
                }
            }
            '\\' => match it.next() {
                Some(x) => {
                    cur.push(x);
                    in_word = true;
                }
                None => return Err("ends in a backslash".into()),
            },
            '|' | ';' | '&' | '>' | '<' | '`' => {
                return Err(format!("uses the shell's {c:?}"));
            }
            '$' if dollar(it.peek()) => return Err("uses $ expansion".into()),
            x => {
                cur.push(x);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn text<'a>(s: &'a State, k: &str) -> Option<&'a str> {
    s.get(k).and_then(Value::as_str)
}

fn shell(desired: &State) -> bool {
    desired.get("shell").and_then(Value::as_bool) == Some(true)
}

/// The command: `command`, or the name.
fn command<'a>(name: &'a str, desired: &'a State) -> &'a str {
    text(desired, "command").unwrap_or(name)
}

/// The exit codes that mean success.
fn returns(desired: &State) -> Vec<i32> {
    match desired.get("returns") {
        Some(v) => strings(v)
            .iter()
            .filter_map(|c| c.trim().parse().ok())
            .collect(),
        None => vec![0],
    }
}

/// Builds the command for `line` with the request's shell, user, cwd,
/// environment and timeout.
fn build(sys: &System, desired: &State, line: &str) -> Result<Cmd, Failure> {
    let mut cmd = if shell(desired) {
        Cmd::new("/bin/sh").args(["-c", line])
    } else {
        let words = split_words(line).map_err(|e| Failure::invalid("command", e))?;
        let (first, rest) = words
            .split_first()
            .ok_or_else(|| Failure::invalid("command", "is empty"))?;
        Cmd::new(first.as_str()).args(rest)
    };
    if let Some(u) = text(desired, "user") {
        let a = account(sys, u)?
            .ok_or_else(|| Failure::invalid("user", format!("{u:?} is not in /etc/passwd")))?;
        cmd = cmd
            .as_user(a.uid, a.gid)
            .env("USER", &a.name)
            .env("LOGNAME", &a.name);
        if !a.home.is_empty() {
            cmd = cmd.env("HOME", &a.home);
        }
    }
    for item in desired.get("environment").map(strings).unwrap_or_default() {
        if let Some((k, v)) = item.split_once('=') {
            cmd = cmd.env(k, v);
        }
    }
    // The directory is opened here, never through a link (see
    // crate::beneath), and the command enters it by descriptor.
    let cwd = text(desired, "cwd").unwrap_or("/");
    let dir = sys.fs().open_dir(cwd)?.ok_or_else(|| {
        Failure::failed(format!(
            "cwd {} is not a directory",
            sys.path(cwd).display()
        ))
    })?;
    cmd = cmd.cwd_fd(dir);
    if let Some(t) = desired.get("timeout").and_then(Value::as_i64) {
        cmd = cmd.timeout(Duration::from_secs(t.max(1) as u64));
    }
    Ok(cmd)
}

/// The last lines of a run's output (standard output, then standard error).
fn tail(o: &Output) -> String {
    let mut all = o.stdout.clone();
    if !o.stderr.is_empty() {
        if !all.is_empty() && !all.ends_with('\n') {
            all.push('\n');
        }
        all.push_str(&o.stderr);
    }
    let ls: Vec<&str> = all.lines().collect();
    let mut out = ls[ls.len().saturating_sub(OUTPUT_LINES)..].join("\n");
    if out.len() > OUTPUT_BYTES {
        let mut cut = out.len() - OUTPUT_BYTES;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = out[cut..].to_string();
    }
    out
}

fn valid_path(prop: &str, p: &str) -> Result<(), Failure> {
    if !p.starts_with('/') || p.contains(['\0', '\n', '\r']) {
        return Err(Failure::invalid(
            prop,
            format!("{p:?} is not an absolute path"),
        ));
    }
    Ok(())
}

impl ResourceType for Exec {
    fn name(&self) -> &'static str {
        "exec"
    }

    fn properties(&self) -> &'static [Property] {
        PROPS
    }

    fn validate(&self, name: &str, desired: &State) -> Result<(), Failure> {
        if name.chars().any(char::is_control) {
            return Err(Failure::invalid("name", "must be one line"));
        }
        let mut lines = vec![(
            if desired.contains_key("command") {
                "command"
            } else {
                "name"
            },
            command(name, desired),
        )];
        for k in ["onlyif", "unless"] {
            if let Some(l) = text(desired, k) {
                lines.push((k, l));
            }
        }
        for (k, l) in lines {
            if l.trim().is_empty() {
                return Err(Failure::invalid(k, "is an empty command"));
            }
            if l.contains(['\0', '\n', '\r']) {
                return Err(Failure::invalid(k, "must be one line"));
            }
            if !shell(desired) {
                split_words(l).map_err(|e| {
                    Failure::invalid(k, format!("{e}: set shell=true to run it through /bin/sh"))
                })?;
            }
        }
        for k in ["creates", "cwd"] {
            if let Some(p) = text(desired, k) {
                valid_path(k, p)?;
            }
        }
        let env = desired.get("environment").map(strings).unwrap_or_default();
        for (i, item) in env.iter().enumerate() {
            let ok = item.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty()
                    && !k.starts_with(|c: char| c.is_ascii_digit())
                    && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
            if !ok {
                return Err(Failure::invalid(
                    "environment",
                    bad_item(i, "is not KEY=VALUE"),
                ));
            }
        }
        if let Some(u) = text(desired, "user") {
            if u.is_empty()
                || !u
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            {
                return Err(Failure::invalid(
                    "user",
                    format!("{u:?} is not a user name or number"),
                ));
            }
        }
        if let Some(t) = desired.get("timeout").and_then(Value::as_i64) {
            if !(1..=86_400).contains(&t) {
                return Err(Failure::invalid(
                    "timeout",
                    "must be between 1 and 86400 seconds",
                ));
            }
        }
        if let Some(r) = desired.get("returns") {
            let codes = strings(r);
            if codes.is_empty() {
                return Err(Failure::invalid("returns", "names no exit code"));
            }
            for c in codes {
                if c.trim().parse::<u8>().is_err() {
                    return Err(Failure::invalid(
                        "returns",
                        format!("{c:?} is not an exit code (0-255)"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn find(&self, _sys: &System, name: &str) -> Result<State, Failure> {
        let mut s = State::new();
        s.insert("name".into(), json!(name));
        s.insert("ensure".into(), json!("present"));
        s.insert("command".into(), json!(name));
        Ok(s)
    }

    fn search(&self, _sys: &System) -> Result<Vec<State>, Failure> {
        Err(Failure::invalid(
            "type",
            "exec resources cannot be searched",
        ))
    }

    /// Evaluates `creates`, `onlyif` and `unless` (in that order, stopping
    /// at the first that says no): `would_run`, and a `reason` when not.
    fn current(&self, sys: &System, name: &str, desired: &State) -> Result<State, Failure> {
        let mut s = self.find(sys, name)?;
        s.insert("command".into(), json!(command(name, desired)));
        // Refuse a bad user or cwd before running any check.
        build(sys, desired, command(name, desired))?;
        let mut reason = None;
        if let Some(c) = text(desired, "creates") {
            // Never through a link among its directories (an error then).
            if sys.fs().lstat(c)?.is_some() {
                reason = Some(format!("creates {c} exists"));
            }
        }
        if reason.is_none() {
            if let Some(l) = text(desired, "onlyif") {
                let o = sys.run(&build(sys, desired, l)?)?;
                if !o.success() {
                    reason = Some(format!("onlyif exited {}", o.code));
                }
            }
        }
        if reason.is_none() {
            if let Some(l) = text(desired, "unless") {
                let o = sys.run(&build(sys, desired, l)?)?;
                if o.success() {
                    reason = Some("unless exited 0".to_string());
                }
            }
        }
        s.insert("would_run".into(), json!(reason.is_none()));
        if let Some(r) = reason {
            s.insert("reason".into(), json!(r));
        }
        Ok(s)
    }

    fn changes(&self, _name: &str, _desired: &State, current: &State) -> Vec<Change> {
        if current.get("would_run").and_then(Value::as_bool) == Some(true) {
            vec![Change::new("executed", json!("notrun"), json!("ran"))]
        } else {
            Vec::new()
        }
    }

    fn apply(
        &self,
        sys: &System,
        name: &str,
        desired: &State,
        current: &State,
        changes: &[Change],
    ) -> Result<(), Failure> {
        self.apply_report(sys, name, desired, current, changes)
            .map(|_| ())
    }

    fn apply_report(
        &self,
        sys: &System,
        name: &str,
        desired: &State,
        _current: &State,
        _changes: &[Change],
    ) -> Result<State, Failure> {
        let line = command(name, desired);
        let o = sys.run(&build(sys, desired, line)?)?;
        let ok = returns(desired);
        let o = Output {
            code: o.code,
            stdout: scrub(o.stdout, desired),
            stderr: scrub(o.stderr, desired),
        };
        let output = tail(&o);
        if !ok.contains(&o.code) {
            let codes: Vec<String> = ok.iter().map(i32::to_string).collect();
            return Err(Failure::failed(format!(
                "exec[{name}] {line:?} returned {} instead of {}{}{}",
                o.code,
                codes.join(" or "),
                if output.is_empty() { "" } else { ":\n" },
                output
            )));
        }
        let mut s = State::new();
        s.insert("exitcode".into(), json!(o.code));
        s.insert("output".into(), json!(output));
        Ok(s)
    }
}

#[cfg(test)]
mod tests;

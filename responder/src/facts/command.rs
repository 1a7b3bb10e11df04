//! Fact commands: programs that print a JSON object of facts.

use std::time::Duration;

use mco_core::facts::FactMap;
use mco_process::{Cmd, Limits};
use serde_json::Value;

use super::{kind_of, FactsError, Origin, COMMAND_TIMEOUT, MAX_SOURCE_BYTES};

/// How much of a command's stderr is kept to find its first line; the rest is
/// read and dropped so the command never blocks on a full pipe.
const STDERR_KEEP: usize = 4096;

/// The longest stderr line quoted in [`FactsError::CommandFailed`].
const STDERR_LINE_MAX: usize = 300;

/// Runs one fact command (via `sh -c`, with a 30 s timeout, stdin null), parses its stdout as a JSON object.
///
/// It runs through [`mco_process::run`]: in a process group of its own, so
/// that on timeout the whole group is killed, not just the shell. Output
/// past [`MAX_SOURCE_BYTES`] is read and dropped, and the run then fails as
/// too large (once the command has ended, or at the timeout).
pub async fn run_fact_command(cmd: &str) -> Result<FactMap, FactsError> {
    run_fact_command_with_timeout(cmd, COMMAND_TIMEOUT).await
}

pub(super) async fn run_fact_command_with_timeout(
    cmd: &str,
    timeout: Duration,
) -> Result<FactMap, FactsError> {
    let limits = Limits {
        timeout,
        // One byte past the limit tells a command that printed too much.
        stdout_keep: usize::try_from(MAX_SOURCE_BYTES + 1).unwrap_or(usize::MAX),
        stderr_keep: STDERR_KEEP,
        kill_group: true,
    };
    let done = mco_process::run(Cmd::new("sh").arg("-c").arg(cmd), &limits)
        .await
        .map_err(|e| FactsError::Spawn {
            command: cmd.to_owned(),
            source: e.into_io(),
        })?;
    if done.stdout.len() as u64 > MAX_SOURCE_BYTES {
        return Err(FactsError::TooLarge {
            origin: Origin::Command(cmd.to_owned()),
            limit: MAX_SOURCE_BYTES,
        });
    }
    if done.timed_out {
        return Err(FactsError::CommandTimeout {
            command: cmd.to_owned(),
            timeout,
        });
    }
    if !done.status.success() {
        return Err(FactsError::CommandFailed {
            command: cmd.to_owned(),
            status: done.status,
            stderr: first_line(&done.stderr),
        });
    }
    parse_output(cmd, &done.stdout)
}

fn parse_output(cmd: &str, out: &[u8]) -> Result<FactMap, FactsError> {
    let origin = || Origin::Command(cmd.to_owned());
    if out.iter().all(u8::is_ascii_whitespace) {
        return Err(FactsError::Parse {
            origin: origin(),
            message: "it printed nothing; a fact command must print a JSON object".to_owned(),
        });
    }
    match serde_json::from_slice::<Value>(out) {
        Ok(v @ Value::Object(_)) if mco_core::limits::check_facts_depth(&v).is_err() => {
            Err(FactsError::Parse {
                origin: origin(),
                message: mco_core::limits::check_facts_depth(&v)
                    .err()
                    .unwrap_or_default(),
            })
        }
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(FactsError::NotAMapping {
            origin: origin(),
            found: kind_of(&other),
        }),
        Err(e) => Err(FactsError::Parse {
            origin: origin(),
            message: format!("its output is not valid JSON: {e}"),
        }),
    }
}

/// The first non-blank line of `stderr`, trimmed and cut to a readable length.
fn first_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    match line {
        Some(l) if l.chars().count() > STDERR_LINE_MAX => {
            let cut: String = l.chars().take(STDERR_LINE_MAX).collect();
            format!("{cut}…")
        }
        Some(l) => l.to_owned(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_skips_blanks_and_cuts_long_lines() {
        assert_eq!(
            first_line(b"\n  \n  oops: disk full \nmore\n"),
            "oops: disk full"
        );
        assert_eq!(first_line(b""), "");
        let long = "x".repeat(STDERR_LINE_MAX + 10);
        let got = first_line(long.as_bytes());
        assert_eq!(got.chars().count(), STDERR_LINE_MAX + 1);
        assert!(got.ends_with('…'));
    }

    #[test]
    fn output_must_be_a_json_object() {
        assert!(matches!(
            parse_output("c", b"  \n"),
            Err(FactsError::Parse { .. })
        ));
        assert!(matches!(
            parse_output("c", b"[1]"),
            Err(FactsError::NotAMapping {
                found: "a list",
                ..
            })
        ));
        assert_eq!(parse_output("c", b"{\"a\": 1}\n").unwrap()["a"], 1);
    }
}

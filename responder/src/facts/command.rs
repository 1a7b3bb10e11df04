//! Fact commands: programs that print a JSON object of facts.

use std::process::Stdio;
use std::time::Duration;

use mco_core::facts::FactMap;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

use super::{kind_of, FactsError, Origin, COMMAND_TIMEOUT, MAX_SOURCE_BYTES};

/// How much of a command's stderr is kept to find its first line; the rest is
/// read and dropped so the command never blocks on a full pipe.
const STDERR_KEEP: usize = 4096;

/// The longest stderr line quoted in [`FactsError::CommandFailed`].
const STDERR_LINE_MAX: usize = 300;

/// Runs one fact command (via `sh -c`, with a 30 s timeout, stdin null), parses its stdout as a JSON object.
///
/// The command runs in a process group of its own, so that on timeout the
/// whole group is killed, not just the shell.
pub async fn run_fact_command(cmd: &str) -> Result<FactMap, FactsError> {
    run_fact_command_with_timeout(cmd, COMMAND_TIMEOUT).await
}

pub(super) async fn run_fact_command_with_timeout(
    cmd: &str,
    timeout: Duration,
) -> Result<FactMap, FactsError> {
    let spawn_err = |source| FactsError::Spawn {
        command: cmd.to_owned(),
        source,
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(spawn_err(std::io::Error::other("no pipes to the command")));
    };

    // Outputs are read to the end before waiting, so the shell is reaped only
    // after everything holding its pipes has gone: until then its pid, which
    // is also the group id, cannot be reused and the group can be killed.
    let run = async {
        let (out, err) = tokio::try_join!(read_stdout(&mut stdout, cmd), async {
            Ok(mco_process::read_head(Some(&mut stderr), STDERR_KEEP).await)
        },)?;
        let status = child.wait().await.map_err(spawn_err)?;
        Ok::<_, FactsError>((out, err, status))
    };
    let (out, err, status) = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            kill_group(&mut child).await;
            return Err(e);
        }
        Err(_) => {
            kill_group(&mut child).await;
            return Err(FactsError::CommandTimeout {
                command: cmd.to_owned(),
                timeout,
            });
        }
    };
    if !status.success() {
        return Err(FactsError::CommandFailed {
            command: cmd.to_owned(),
            status,
            stderr: first_line(&err),
        });
    }
    parse_output(cmd, &out)
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

async fn read_stdout(
    reader: &mut (impl AsyncRead + Unpin),
    cmd: &str,
) -> Result<Vec<u8>, FactsError> {
    let mut out = Vec::new();
    let read = reader
        .take(MAX_SOURCE_BYTES + 1)
        .read_to_end(&mut out)
        .await;
    match read {
        Ok(_) if out.len() as u64 > MAX_SOURCE_BYTES => Err(FactsError::TooLarge {
            origin: Origin::Command(cmd.to_owned()),
            limit: MAX_SOURCE_BYTES,
        }),
        Ok(_) => Ok(out),
        Err(source) => Err(FactsError::Spawn {
            command: cmd.to_owned(),
            source,
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

/// Kills the command's process group, then reaps the shell.
async fn kill_group(child: &mut Child) {
    // `id()` is `None` once the shell has been reaped; until then its pid is
    // ours and so is the group it leads.
    if let Some(pid) = child.id() {
        mco_process::kill_group(pid);
    }
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
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

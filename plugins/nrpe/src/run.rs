//! Running one check: a child process in its own process group, output read
//! with a bound, a timeout, and the whole group killed when time runs out or
//! the request is abandoned.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use mco_process::{Cmd, Limits, RunError};

use crate::cmdline::Program;

/// Output kept from a check (the rest is read and dropped), as NRPE's own
/// buffer limit.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    /// The process exited with this code; its standard output (or standard
    /// error when it printed nothing on standard output).
    Exited {
        /// Exit code.
        code: i32,
        /// What it printed.
        text: String,
    },
    /// Killed by a signal it did not expect.
    Signalled(i32),
    /// Still running at the timeout; its process group was killed.
    TimedOut(Duration),
    /// The program could not be started.
    NotStarted(String),
}

/// Runs `program` with a time limit, through [`mco_process::run`]: its
/// process group is killed at the timeout or when the request is abandoned.
pub async fn run(program: &Program, timeout: Duration) -> Ran {
    let cmd = match program {
        Program::Direct(words) => Cmd::new(&words[0]).args(&words[1..]),
        Program::Shell { line, args } => {
            let c = Cmd::shell(line);
            if args.is_empty() {
                c
            } else {
                c.arg(crate::cmdline::SHELL_NAME).args(args)
            }
        }
    };
    let limits = Limits {
        timeout,
        stdout_keep: MAX_OUTPUT_BYTES,
        stderr_keep: 4096,
        kill_group: true,
    };
    let done = match mco_process::run(cmd, &limits).await {
        Ok(done) => done,
        Err(RunError::Spawn(e)) => {
            let what = match program {
                Program::Direct(w) => w[0].clone(),
                Program::Shell { .. } => "/bin/sh".to_string(),
            };
            return Ran::NotStarted(match e.kind() {
                std::io::ErrorKind::NotFound => format!("{what}: no such file or command"),
                std::io::ErrorKind::PermissionDenied => format!("{what}: not executable"),
                _ => format!("{what}: {e}"),
            });
        }
        Err(RunError::Wait(e)) => {
            return Ran::NotStarted(format!("waiting for the check failed: {e}"))
        }
    };
    if done.timed_out {
        return Ran::TimedOut(timeout);
    }
    let status = done.status;
    // Leftover children that closed their output are the plugin's
    // business, as with NRPE.
    let text = if done.stdout.iter().all(u8::is_ascii_whitespace) {
        done.stderr
    } else {
        done.stdout
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    match status.code() {
        Some(code) => Ran::Exited { code, text },
        None => Ran::Signalled(status.signal().unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(line: &str) -> Program {
        Program::Shell {
            line: line.into(),
            args: Vec::new(),
        }
    }

    fn direct(words: &[&str]) -> Program {
        Program::Direct(words.iter().map(|w| w.to_string()).collect())
    }

    #[tokio::test]
    async fn exit_codes_and_output() {
        let r = run(&shell("echo 'W|a=1'; exit 1"), Duration::from_secs(10)).await;
        assert_eq!(
            r,
            Ran::Exited {
                code: 1,
                text: "W|a=1\n".into()
            }
        );
        let r = run(
            &direct(&["/bin/sh", "-c", "echo oops >&2; exit 7"]),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(
            r,
            Ran::Exited {
                code: 7,
                text: "oops\n".into()
            }
        );
        let r = run(&direct(&["/nonexistent/check_x"]), Duration::from_secs(10)).await;
        assert!(
            matches!(r, Ran::NotStarted(ref m) if m.contains("no such file")),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // The grandchild would write the marker after the timeout if it lived.
        let line = format!("(sleep 3; touch {}) & sleep 30", marker.display());
        let r = run(&shell(&line), Duration::from_millis(300)).await;
        assert_eq!(r, Ran::TimedOut(Duration::from_millis(300)));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            !marker.exists(),
            "a process of the check outlived its timeout"
        );
    }
}

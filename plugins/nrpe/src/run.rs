//! Running one check: a child process in its own process group, output read
//! with a bound, a timeout, and the whole group killed when time runs out or
//! the request is abandoned.

use std::process::Stdio;
use std::time::Duration;

use mco_process::{read_head, GroupGuard};
use tokio::process::Command;

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

/// Runs `program` with a time limit.
pub async fn run(program: &Program, timeout: Duration) -> Ran {
    let mut cmd = match program {
        Program::Direct(words) => {
            let mut c = Command::new(&words[0]);
            c.args(&words[1..]);
            c
        }
        Program::Shell { line, args } => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(line);
            if !args.is_empty() {
                c.arg(crate::cmdline::SHELL_NAME).args(args);
            }
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
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
    };
    // Covers both the timeout and a request abandoned by the dispatcher.
    let mut guard = GroupGuard::new(child.id());
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let work = async {
        let (out, err, status) = tokio::join!(
            read_head(stdout.as_mut(), MAX_OUTPUT_BYTES),
            read_head(stderr.as_mut(), 4096),
            child.wait()
        );
        (out, err, status)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok((out, err, status)) => {
            // The leader is reaped: its pid may be reused, so the group is
            // no longer ours to kill. Leftover children that closed their
            // output are the plugin's business, as with NRPE.
            guard.disarm();
            let status = match status {
                Ok(s) => s,
                Err(e) => return Ran::NotStarted(format!("waiting for the check failed: {e}")),
            };
            let text = if out.iter().all(u8::is_ascii_whitespace) {
                err
            } else {
                out
            };
            let text = String::from_utf8_lossy(&text).into_owned();
            match status.code() {
                Some(code) => Ran::Exited { code, text },
                None => {
                    use std::os::unix::process::ExitStatusExt;
                    Ran::Signalled(status.signal().unwrap_or(0))
                }
            }
        }
        Err(_) => {
            drop(guard);
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            Ran::TimedOut(timeout)
        }
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

//! Running the bootstrap command, and what Puppet's `--detailed-exitcodes` mean.

use std::process::Stdio;
use std::time::Duration;

use mco_process::{kill_group, read_head};

/// Most output returned, bytes (stdout then stderr).
pub const MAX_OUTPUT: usize = 64 * 1024;

/// The outcome of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// Exit code; -1 when killed (by us on timeout, or a signal).
    pub exitcode: i64,
    /// stdout then stderr, cut at [`MAX_OUTPUT`].
    pub output: String,
    /// Whether it timed out.
    pub timed_out: bool,
}

/// Puppet's detailed exit codes: success, and a summary.
/// 0 no changes and 2 changes applied succeed; 1, 4 and 6 (and any other) fail.
pub fn interpret(exitcode: i64, timed_out: bool) -> (bool, String) {
    if timed_out {
        return (false, "timed out".to_string());
    }
    match exitcode {
        0 => (true, "succeeded with no changes".to_string()),
        2 => (true, "succeeded with changes".to_string()),
        1 => (false, "failed".to_string()),
        4 => (false, "failures".to_string()),
        6 => (false, "changes and failures".to_string()),
        -1 => (false, "killed by a signal".to_string()),
        n => (false, format!("failed with exit code {n}")),
    }
}

/// Runs `argv` (no shell) with stdin closed in a process group of its own;
/// after `timeout` the whole group is killed.
pub async fn run(argv: &[String], timeout: Duration) -> std::io::Result<RunOutcome> {
    let Some((program, args)) = argv.split_first() else {
        return Err(std::io::Error::other("empty command"));
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pgid = child.id();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let read = async {
        let (out, err) = tokio::join!(
            read_head(stdout.as_mut(), MAX_OUTPUT),
            read_head(stderr.as_mut(), MAX_OUTPUT)
        );
        let status = child.wait().await;
        (out, err, status)
    };
    match tokio::time::timeout(timeout, read).await {
        Ok((mut out, err, status)) => {
            out.extend_from_slice(&err);
            out.truncate(MAX_OUTPUT);
            Ok(RunOutcome {
                exitcode: status?.code().map_or(-1, i64::from),
                output: String::from_utf8_lossy(&out).into_owned(),
                timed_out: false,
            })
        }
        Err(_) => {
            // The leader has not been reaped (the wait did not finish), so
            // the group id is still ours.
            if let Some(pgid) = pgid {
                kill_group(pgid);
            }
            Ok(RunOutcome {
                exitcode: -1,
                output: String::new(),
                timed_out: true,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detailed_exit_codes() {
        assert!(interpret(0, false).0);
        assert!(interpret(2, false).0);
        for code in [1, 4, 6, 3, -1] {
            assert!(!interpret(code, false).0, "{code}");
        }
        assert!(!interpret(0, true).0);
    }

    #[tokio::test]
    async fn runs_without_a_shell_and_times_out() {
        let argv: Vec<String> = ["sh", "-c", "echo out; echo err >&2; exit 2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let r = run(&argv, Duration::from_secs(10)).await.unwrap();
        assert_eq!(r.exitcode, 2);
        assert_eq!(r.output, "out\nerr\n");
        let slow: Vec<String> = ["sleep", "5"].iter().map(|s| s.to_string()).collect();
        let r = run(&slow, Duration::from_millis(100)).await.unwrap();
        assert!(r.timed_out);
    }

    #[tokio::test]
    async fn a_timeout_kills_the_commands_children_too() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // A grandchild that would write the marker after the timeout if it lived.
        let line = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let argv: Vec<String> = ["sh", "-c", &line].iter().map(|s| s.to_string()).collect();
        let r = run(&argv, Duration::from_millis(300)).await.unwrap();
        assert!(r.timed_out);
        // Wait past the grandchild's own deadline, polling for the marker.
        let until = std::time::Instant::now() + Duration::from_secs(4);
        while std::time::Instant::now() < until {
            assert!(
                !marker.exists(),
                "a child of the timed-out command lived on"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

//! Running the bootstrap command, and what Puppet's `--detailed-exitcodes` mean.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

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

/// Runs `argv` (no shell) with stdin closed, killing it after `timeout`.
pub async fn run(argv: &[String], timeout: Duration) -> std::io::Result<RunOutcome> {
    let Some((program, args)) = argv.split_first() else {
        return Err(std::io::Error::other("empty command"));
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let read = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let o = async {
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut out).await;
            }
        };
        let e = async {
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut err).await;
            }
        };
        tokio::join!(o, e);
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
        Err(_) => Ok(RunOutcome {
            exitcode: -1,
            output: String::new(),
            timed_out: true,
        }),
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
}

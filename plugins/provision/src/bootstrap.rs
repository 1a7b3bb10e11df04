//! Running the bootstrap command, and what Puppet's `--detailed-exitcodes` mean.

use std::time::Duration;

use mco_process::{Cmd, Limits, RunError};

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

/// Runs `argv` (no shell) with stdin closed, through [`mco_process::run`]:
/// in a process group of its own, killed as a whole after `timeout` or if
/// the caller gives up on the run.
pub async fn run(argv: &[String], timeout: Duration) -> std::io::Result<RunOutcome> {
    let Some((program, args)) = argv.split_first() else {
        return Err(std::io::Error::other("empty command"));
    };
    let done = mco_process::run(
        Cmd::new(program).args(args),
        &Limits::new(timeout, MAX_OUTPUT),
    )
    .await
    .map_err(RunError::into_io)?;
    if done.timed_out {
        return Ok(RunOutcome {
            exitcode: -1,
            output: String::new(),
            timed_out: true,
        });
    }
    let exitcode = done.code().map_or(-1, i64::from);
    let mut out = done.stdout;
    out.extend_from_slice(&done.stderr);
    out.truncate(MAX_OUTPUT);
    Ok(RunOutcome {
        exitcode,
        output: String::from_utf8_lossy(&out).into_owned(),
        timed_out: false,
    })
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

    /// `/proc/PID/stat`'s state letter, `None` once the process is gone.
    fn state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit(')').next()?.trim_start().chars().next()
    }

    /// Polls until `pid` is dead (gone, or a zombie not yet reaped by init).
    async fn wait_dead(pid: u32) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while matches!(state(pid), Some(s) if s != 'Z') {
            assert!(
                std::time::Instant::now() < deadline,
                "child {pid} of the bootstrap lived on"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A bootstrap that starts a long-lived child, which writes its pid.
    fn with_child(pidfile: &std::path::Path) -> Vec<String> {
        let line = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        ["sh", "-c", &line].iter().map(|s| s.to_string()).collect()
    }

    fn read_pid(pidfile: &std::path::Path) -> Option<u32> {
        std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
    }

    #[tokio::test]
    async fn a_timeout_kills_the_child_by_pid() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // Long enough for the shell to start its child and write the pid.
        let r = run(&with_child(&pidfile), Duration::from_secs(3))
            .await
            .unwrap();
        assert!(r.timed_out);
        assert_eq!(r.exitcode, -1);
        let pid = read_pid(&pidfile).expect("the shell wrote its child's pid");
        wait_dead(pid).await;
    }

    #[tokio::test]
    async fn an_abandoned_run_kills_the_bootstraps_children() {
        // The action's caller giving up drops the run: before it went
        // through mco_process::run only the leader was killed then, and its
        // children lived on.
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let argv = with_child(&pidfile);
        let mut call = Box::pin(run(&argv, Duration::from_secs(600)));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let child = loop {
            tokio::select! {
                r = &mut call => panic!("the bootstrap ended: {r:?}"),
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            if let Some(pid) = read_pid(&pidfile) {
                break pid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the child never started"
            );
        };
        assert!(matches!(state(child), Some(s) if s != 'Z'), "running");
        drop(call);
        wait_dead(child).await;
    }
}

//! Running the real `mco` binary (or any program) the way a test wants it: isolated from the
//! caller's environment, bounded in time, with output that reads well when an assertion fails.
//!
//! Every run gets a fresh `HOME` (so `~/.config/mco/client.toml` is whatever the test put there)
//! and none of the caller's `MCO_*` variables, `XDG_CONFIG_HOME` or `RUST_LOG`; a test that wants
//! one sets it with [`Cmd::env`].

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::proc::{bin_path, ChildGuard};

/// How long a command may run before it is killed and the test fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `mco ARGS` with the defaults of [`Cmd`] and returns its output.
///
/// # Panics
///
/// If the `mco` binary is not built (see [`bin_path`]) or the run takes longer than
/// [`DEFAULT_TIMEOUT`].
#[track_caller]
pub fn mco<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Cmd::mco().args(args).run()
}

/// The client config a fresh temporary `HOME` gets: insecure, like the responders
/// [`crate::Responder`] starts by default.
pub const INSECURE_CLIENT: &str = "[security]\ninsecure = true\n";

/// Whether a variable of the caller's environment is kept away from the command.
pub fn is_scrubbed(name: &str) -> bool {
    name.starts_with("MCO_") || matches!(name, "XDG_CONFIG_HOME" | "RUST_LOG" | "HOME")
}

/// A command to run to completion: program, arguments, environment, stdin and a time limit.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
    home: Option<PathBuf>,
    current_dir: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Cmd {
    /// A command running `program` with no arguments, a fresh temporary `HOME`, empty stdin and
    /// a time limit of [`DEFAULT_TIMEOUT`].
    pub fn new(program: impl Into<PathBuf>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            home: None,
            current_dir: None,
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A command running the workspace's `mco` binary.
    ///
    /// # Panics
    ///
    /// If the binary is not built (see [`bin_path`]).
    #[track_caller]
    pub fn mco() -> Cmd {
        Cmd::new(bin_path("mco"))
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Sets an environment variable for the command (after the scrubbing).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cmd {
        self.envs.push((
            key.as_ref().to_os_string(),
            Some(value.as_ref().to_os_string()),
        ));
        self
    }

    /// Removes an environment variable for the command.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Cmd {
        self.envs.push((key.as_ref().to_os_string(), None));
        self
    }

    /// Uses `dir` as `HOME` instead of a fresh temporary directory, for tests that prepare
    /// `~/.config/mco/` themselves. The directory must outlive the run.
    pub fn home(mut self, dir: impl Into<PathBuf>) -> Cmd {
        self.home = Some(dir.into());
        self
    }

    /// Runs the command in `dir`.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Cmd {
        self.current_dir = Some(dir.into());
        self
    }

    /// Feeds `bytes` to the command's standard input (empty by default).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(bytes.into());
        self
    }

    /// Changes the time limit (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Cmd {
        self.timeout = timeout;
        self
    }

    /// The command line, for messages.
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|part| {
                let part = part.to_string_lossy();
                if part.is_empty() || part.contains(char::is_whitespace) {
                    format!("'{part}'")
                } else {
                    part.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the command to completion and returns its output, whatever its exit status.
    ///
    /// # Panics
    ///
    /// If the program cannot be started, or it has not exited within the time limit (it is killed
    /// first; the message shows what it printed so far).
    #[track_caller]
    pub fn run(&self) -> Output {
        let scratch = tempfile::Builder::new()
            .prefix("mco-cmd-")
            .tempdir()
            .expect("a temporary directory for the command");
        let home = match &self.home {
            Some(home) => home.clone(),
            None => {
                let home = scratch.path().join("home");
                // The suite's fleets run in the demo's insecure mode unless a
                // test brings its own HOME or --config with certificates.
                let cfg = home.join(".config/mco");
                fs::create_dir_all(&cfg).expect("create the temporary HOME");
                fs::write(cfg.join("client.toml"), INSECURE_CLIENT)
                    .expect("write the default client config");
                home
            }
        };
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(is_scrubbed) {
                cmd.env_remove(name);
            }
        }
        cmd.env("HOME", &home);
        for (key, value) in &self.envs {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        let stdin_path = scratch.path().join("stdin");
        fs::write(&stdin_path, self.stdin.as_deref().unwrap_or_default())
            .expect("write the command's stdin");
        let mut child = ChildGuard::spawn_with_stdin(cmd, &stdin_path);
        let status = child.wait_exit(self.timeout);
        let Some(status) = status else {
            child.kill();
            panic!(
                "{:?}",
                TimedOut {
                    command: self.display(),
                    timeout: self.timeout,
                    stdout: child.stdout_text(),
                    stderr: child.stderr_text(),
                }
            );
        };
        Output {
            command: self.display(),
            status: status_code(status),
            stdout: child.stdout_text(),
            stderr: child.stderr_text(),
        }
    }

    /// [`run`](Self::run) on tokio's blocking pool, so an async test's runtime keeps serving
    /// its other tasks (for example a subscriber the test holds) while `mco` runs.
    ///
    /// # Panics
    ///
    /// As [`run`](Self::run).
    pub async fn run_async(self) -> Output {
        match tokio::task::spawn_blocking(move || self.run()).await {
            Ok(output) => output,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }
}

/// The exit code, or 128 + the signal number for a process killed by a signal (as a shell
/// reports it).
fn status_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => -1,
    }
}

struct TimedOut {
    command: String,
    timeout: Duration,
    stdout: String,
    stderr: String,
}

impl fmt::Debug for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "command did not exit within {:?} and was killed",
            self.timeout
        )?;
        write_parts(f, &self.command, None, &self.stdout, &self.stderr)
    }
}

/// What a finished command did.
#[derive(Clone, PartialEq, Eq)]
pub struct Output {
    /// The command line that ran.
    pub command: String,
    /// The exit code; 128 + N if killed by signal N.
    pub status: i32,
    /// Standard output, lossily decoded as UTF-8.
    pub stdout: String,
    /// Standard error, lossily decoded as UTF-8.
    pub stderr: String,
}

impl Output {
    /// Checks the exit code.
    ///
    /// # Panics
    ///
    /// If the command exited with another code; the message shows the command, stdout and stderr.
    #[track_caller]
    pub fn assert_exit(&self, code: i32) -> &Output {
        if self.status != code {
            panic!("expected exit status {code}\n{self:?}");
        }
        self
    }

    /// Checks that the command exited with 0.
    ///
    /// # Panics
    ///
    /// As [`assert_exit`](Self::assert_exit).
    #[track_caller]
    pub fn assert_success(&self) -> &Output {
        self.assert_exit(0)
    }

    /// Checks that standard output is exactly `expected`.
    ///
    /// # Panics
    ///
    /// If it is not; the message shows both texts and the first line where they differ.
    #[track_caller]
    pub fn assert_stdout_eq(&self, expected: &str) -> &Output {
        if self.stdout != expected {
            panic!(
                "stdout differs from the expected text\n{}\n\
                 ---------- expected stdout ----------\n{expected}\n{self:?}",
                first_difference(expected, &self.stdout)
            );
        }
        self
    }

    /// Standard output parsed as one JSON document.
    ///
    /// # Panics
    ///
    /// If it is not valid JSON; the message shows the parse error and the whole output.
    #[track_caller]
    pub fn stdout_json(&self) -> serde_json::Value {
        match serde_json::from_str(&self.stdout) {
            Ok(value) => value,
            Err(err) => panic!("stdout is not JSON: {err}\n{self:?}"),
        }
    }

    /// Standard output parsed as JSON lines (one document per non-empty line).
    ///
    /// # Panics
    ///
    /// If a line is not valid JSON; the message names the line and shows the whole output.
    #[track_caller]
    pub fn stdout_json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| match serde_json::from_str(line) {
                Ok(value) => value,
                Err(err) => panic!("stdout line {} is not JSON: {err}\n{self:?}", i + 1),
            })
            .collect()
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_parts(
            f,
            &self.command,
            Some(self.status),
            &self.stdout,
            &self.stderr,
        )
    }
}

fn write_parts(
    f: &mut fmt::Formatter<'_>,
    command: &str,
    status: Option<i32>,
    stdout: &str,
    stderr: &str,
) -> fmt::Result {
    writeln!(f, "command: {command}")?;
    if let Some(status) = status {
        writeln!(f, "status: {status}")?;
    }
    for (name, text) in [("stdout", stdout), ("stderr", stderr)] {
        writeln!(f, "---------- {name} ----------")?;
        if text.is_empty() {
            writeln!(f, "(empty)")?;
        } else {
            f.write_str(text)?;
            if !text.ends_with('\n') {
                writeln!(f, "\n(no newline at end)")?;
            }
        }
    }
    write!(f, "-----------------------------")
}

/// Describes the first line where `actual` departs from `expected`.
pub fn first_difference(expected: &str, actual: &str) -> String {
    let mut expected_lines = expected.lines();
    let mut actual_lines = actual.lines();
    let mut line = 1;
    loop {
        match (expected_lines.next(), actual_lines.next()) {
            (Some(e), Some(a)) if e == a => line += 1,
            (Some(e), Some(a)) => {
                return format!("line {line}:\n  expected: {e:?}\n  actual:   {a:?}")
            }
            (Some(e), None) => return format!("line {line}: missing, expected {e:?}"),
            (None, Some(a)) => return format!("line {line}: unexpected {a:?}"),
            (None, None) => return "the texts differ only in line endings".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_mco_variables_and_config_locations() {
        assert!(is_scrubbed("MCO_CONFIG"));
        assert!(is_scrubbed("MCO_ANYTHING"));
        assert!(is_scrubbed("XDG_CONFIG_HOME"));
        assert!(is_scrubbed("RUST_LOG"));
        assert!(!is_scrubbed("PATH"));
        assert!(!is_scrubbed("MCOLLECTIVE"));
    }

    #[test]
    fn first_difference_names_the_line() {
        assert_eq!(
            first_difference("a\nb\nc\n", "a\nx\nc\n"),
            "line 2:\n  expected: \"b\"\n  actual:   \"x\""
        );
        assert_eq!(
            first_difference("a\n", "a\nb\n"),
            "line 2: unexpected \"b\""
        );
        assert_eq!(
            first_difference("a\nb", "a"),
            "line 2: missing, expected \"b\""
        );
    }

    #[test]
    fn debug_shows_everything() {
        let out = Output {
            command: "mco ping".into(),
            status: 2,
            stdout: "one\ntwo".into(),
            stderr: String::new(),
        };
        let text = format!("{out:?}");
        assert!(text.contains("command: mco ping\nstatus: 2\n"), "{text}");
        assert!(
            text.contains("---------- stdout ----------\none\ntwo\n(no newline at end)"),
            "{text}"
        );
        assert!(
            text.contains("---------- stderr ----------\n(empty)"),
            "{text}"
        );
    }

    #[test]
    fn status_code_reports_signals_like_a_shell() {
        assert_eq!(status_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(status_code(ExitStatus::from_raw(libc::SIGKILL)), 137);
    }
}

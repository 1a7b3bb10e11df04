//! Child processes owned by a test: located in the workspace's target directory, their output
//! captured in files, killed and reaped when the guard is dropped.
//!
//! Output goes to files rather than pipes so that a chatty child never blocks on a full pipe and a
//! test can read what it logged so far at any moment without a reader thread.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::poll::POLL_INTERVAL;

/// The directory holding the workspace binaries built alongside the running test executable:
/// `target/<profile>/` (or `target/<triple>/<profile>/`).
///
/// A test executable lives in `target/<profile>/deps/`; the binaries (`mco`, `mco-responder`) are
/// one level up.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test executable");
    let dir = exe
        .parent()
        .expect("the test executable has a parent directory");
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.parent()
            .expect("the deps directory has a parent")
            .to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// The path of the workspace binary `name` (`mco`, `mco-responder`) in the same target directory
/// as the running test executable.
///
/// # Panics
///
/// If the binary is not there: `cargo test -p mco-tests` does not build the other crates'
/// binaries, so run `cargo build --bins` first (a plain `cargo test` at the workspace root builds
/// them).
pub fn bin_path(name: &str) -> PathBuf {
    let dir = bin_dir();
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        panic!(
            "binary `{name}` not found at {}: run cargo build --bins first \
             (with the same profile and CARGO_TARGET_DIR as the tests)",
            path.display()
        );
    }
    path
}

/// A child process that is killed (SIGKILL) and reaped when dropped, also while a test unwinds
/// from a panic, so no test leaves a process or a zombie behind.
///
/// Its standard input is `/dev/null`; its standard output and error go to files in a temporary
/// directory owned by the guard, readable at any time with [`stdout_text`](Self::stdout_text) and
/// [`stderr_text`](Self::stderr_text).
pub struct ChildGuard {
    child: Child,
    program: String,
    status: Option<ExitStatus>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    _dir: TempDir,
}

impl ChildGuard {
    /// Starts `cmd` with its output captured, or returns the error from spawning it.
    ///
    /// Any stdin/stdout/stderr configuration already on `cmd` is replaced.
    pub fn try_spawn(cmd: Command) -> io::Result<ChildGuard> {
        ChildGuard::try_spawn_inner(cmd, Stdio::null())
    }

    /// Starts `cmd` with its output captured and its standard input read from the file `stdin`.
    ///
    /// # Panics
    ///
    /// If the file cannot be opened or the program cannot be started.
    #[track_caller]
    pub fn spawn_with_stdin(cmd: Command, stdin: &Path) -> ChildGuard {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let file = match File::open(stdin) {
            Ok(file) => file,
            Err(err) => panic!(
                "cannot open {} as stdin for {program}: {err}",
                stdin.display()
            ),
        };
        match ChildGuard::try_spawn_inner(cmd, Stdio::from(file)) {
            Ok(guard) => guard,
            Err(err) => panic!("cannot start {program}: {err}"),
        }
    }

    fn try_spawn_inner(mut cmd: Command, stdin: Stdio) -> io::Result<ChildGuard> {
        let dir = tempfile::Builder::new().prefix("mco-child-").tempdir()?;
        let stdout_path = dir.path().join("stdout");
        let stderr_path = dir.path().join("stderr");
        cmd.stdin(stdin)
            .stdout(File::create(&stdout_path)?)
            .stderr(File::create(&stderr_path)?);
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd.spawn()?;
        Ok(ChildGuard {
            child,
            program,
            status: None,
            stdout_path,
            stderr_path,
            _dir: dir,
        })
    }

    /// Starts `cmd` with its output captured.
    ///
    /// # Panics
    ///
    /// If the program cannot be started; the message names it.
    #[track_caller]
    pub fn spawn(cmd: Command) -> ChildGuard {
        let program = cmd.get_program().to_string_lossy().into_owned();
        match ChildGuard::try_spawn(cmd) {
            Ok(guard) => guard,
            Err(err) => panic!("cannot start {program}: {err}"),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to standard output so far (lossily decoded as UTF-8).
    pub fn stdout_text(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// Everything the process wrote to standard error so far (lossily decoded as UTF-8).
    pub fn stderr_text(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// The exit status if the process has exited (reaping it), `None` while it runs.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(status) => self.status = status,
                Err(err) => panic!("cannot wait for {} ({}): {err}", self.program, self.pid()),
            }
        }
        self.status
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Sends `signal` (for example `libc::SIGTERM` or `libc::SIGHUP`) to the process.
    ///
    /// Returns `false`, sending nothing, if the process has already exited: its pid may belong to
    /// another process by now.
    pub fn signal(&mut self, signal: libc::c_int) -> bool {
        if !self.is_running() {
            return false;
        }
        // The child is not reaped yet (try_wait said it is running), so its pid is still ours.
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits in pid_t");
        match send_signal(pid, signal) {
            Ok(()) => true,
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => false,
            Err(err) => panic!(
                "cannot send signal {signal} to {} ({pid}): {err}",
                self.program
            ),
        }
    }

    /// Waits up to `timeout` for the process to exit, polling; `None` if it is still running
    /// then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            std::thread::sleep(POLL_INTERVAL.min(deadline - now));
        }
    }

    /// Kills the process (SIGKILL) if it still runs, and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        // An error here means the process has exited already; wait() below reaps it either way.
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => {
                self.status = Some(status);
                status
            }
            Err(err) => panic!("cannot wait for {} ({}): {err}", self.program, self.pid()),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl fmt::Debug for ChildGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildGuard")
            .field("program", &self.program)
            .field("pid", &self.child.id())
            .field("status", &self.status)
            .finish()
    }
}

fn send_signal(pid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| io::Error::other(format!("no process {pid}")))?;
    let signal = rustix::process::Signal::from_named_raw(signal)
        .ok_or_else(|| io::Error::other(format!("unknown signal {signal}")))?;
    Ok(rustix::process::kill_process(pid, signal)?)
}

fn read_lossy(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => panic!("cannot read {}: {err}", path.display()),
    }
}

/// What `/proc/<pid>/stat` says about a process: enough to tell whether a given process is gone,
/// a zombie, or its pid was reused by another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The command name (`comm`), at most 15 bytes.
    pub comm: String,
    /// The state letter: `R`, `S`, `D`, `Z` (zombie), `T`, ...
    pub state: char,
    /// Start time in clock ticks since boot; with the pid it identifies one process.
    pub start_time: u64,
}

impl ProcStat {
    /// Reads `/proc/<pid>/stat`; `None` if there is no such process.
    pub fn of(pid: u32) -> Option<ProcStat> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        ProcStat::parse(&text)
    }

    /// Parses the text of a `/proc/<pid>/stat` file.
    pub fn parse(text: &str) -> Option<ProcStat> {
        // The command name is in parentheses and may itself hold spaces and parentheses.
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        let comm = text.get(open + 1..close)?.to_string();
        let mut rest = text.get(close + 1..)?.split_whitespace();
        let state = rest.next()?.chars().next()?;
        // After the state come fields 4..=21; start time is field 22.
        let start_time = rest.nth(18)?.parse().ok()?;
        Some(ProcStat {
            comm,
            state,
            start_time,
        })
    }
}

/// Whether the process `pid` that had `before` as its stat is gone: no such pid, or the pid now
/// belongs to a process started at another time. A zombie of it still counts as present.
pub fn process_gone(pid: u32, before: &ProcStat) -> bool {
    match ProcStat::of(pid) {
        None => true,
        Some(now) => now.start_time != before.start_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_name() {
        let text = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 \
                    1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let stat = ProcStat::parse(text).expect("parses");
        assert_eq!(stat.comm, "a (b) c");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.start_time, 987_654);
    }

    #[test]
    fn reads_own_stat() {
        let stat = ProcStat::of(std::process::id()).expect("own stat");
        assert_ne!(stat.state, 'Z');
        assert!(stat.start_time > 0);
        assert!(!process_gone(std::process::id(), &stat));
    }

    #[test]
    fn rejects_truncated_stat() {
        assert_eq!(ProcStat::parse("12 (x) S 1 2"), None);
        assert_eq!(ProcStat::parse("garbage"), None);
    }
}

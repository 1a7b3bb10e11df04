//! [`run`]: the one way mco runs an external command.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::GroupGuard;

/// How long a killed leader is waited for before it is left to tokio's
/// reaper of dropped children (a process stuck in the kernel, state `D`, dies
/// only when it leaves it).
const REAP_GRACE: Duration = Duration::from_secs(5);

/// Signal 9, for the wait status of a killed command that could not be
/// reaped within [`REAP_GRACE`].
const SIGKILL: i32 = 9;

/// A command to run: a program and its arguments (or a shell line), its
/// environment, working directory, user and standard input.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env_clear: bool,
    env: Vec<(OsString, Option<OsString>)>,
    cwd: Option<PathBuf>,
    cwd_fd: Option<Arc<OwnedFd>>,
    user: Option<(u32, u32)>,
    stdin: Option<Vec<u8>>,
}

impl Cmd {
    /// `program` (a path, or a name looked up in `PATH`) with no arguments.
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env_clear: false,
            env: Vec::new(),
            cwd: None,
            cwd_fd: None,
            user: None,
            stdin: None,
        }
    }

    /// `/bin/sh -c line`.
    pub fn shell(line: impl AsRef<OsStr>) -> Cmd {
        Cmd::new("/bin/sh").arg("-c").arg(line)
    }

    /// Adds an argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.args.push(a.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, items: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(items.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cmd {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Cmd {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts from an empty environment (variables set with [`Cmd::env`]
    /// still apply, whenever they were set).
    pub fn env_clear(mut self) -> Cmd {
        self.env_clear = true;
        self
    }

    /// Runs in `dir`.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Cmd {
        self.cwd = Some(dir.into());
        self
    }

    /// Runs in the directory open as `dir`, wins over [`Cmd::cwd`]. The
    /// child enters it through `/proc/self/fd/N`, a link the kernel follows
    /// to the open directory itself, so no path is resolved again (the
    /// effect of `fchdir`, with no `unsafe` pre-exec hook); it needs `/proc`.
    pub fn cwd_fd(mut self, dir: OwnedFd) -> Cmd {
        self.cwd_fd = Some(Arc::new(dir));
        self
    }

    /// Runs as this uid and gid.
    pub fn as_user(mut self, uid: u32, gid: u32) -> Cmd {
        self.user = Some((uid, gid));
        self
    }

    /// Feeds `data` on standard input, then closes it (without this, standard
    /// input is `/dev/null`).
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(data.into());
        self
    }

    /// The program, as given.
    pub fn get_program(&self) -> &OsStr {
        &self.program
    }

    /// The arguments, as given.
    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    fn command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.program);
        c.args(&self.args);
        if self.env_clear {
            c.env_clear();
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(fd) = &self.cwd_fd {
            c.current_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        } else if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        if let Some((uid, gid)) = self.user {
            c.uid(uid).gid(gid);
        }
        c.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
        c
    }
}

/// Bounds on one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long it may run; then it is killed.
    pub timeout: Duration,
    /// Bytes of standard output kept (the rest is read and dropped).
    pub stdout_keep: usize,
    /// Bytes of standard error kept (the rest is read and dropped).
    pub stderr_keep: usize,
    /// Kill the whole process group (`true`, what every caller in mco
    /// wants), or only the command itself, on timeout or when abandoned.
    pub kill_group: bool,
}

impl Limits {
    /// `timeout`, with `keep` bytes kept of each output, killing the group.
    pub fn new(timeout: Duration, keep: usize) -> Limits {
        Limits {
            timeout,
            stdout_keep: keep,
            stderr_keep: keep,
            kill_group: true,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The command's wait status (after a timeout: the kill's; if the killed
    /// command could not be reaped within a few seconds, being stuck in the
    /// kernel, a plain "killed by SIGKILL": it is reaped later).
    pub status: ExitStatus,
    /// Whether it was killed because it ran out of time.
    pub timed_out: bool,
    /// From the spawn to the end (the reaping of the command).
    pub elapsed: Duration,
    /// The head of its standard output.
    pub stdout: Vec<u8>,
    /// Whether standard output went on past [`Limits::stdout_keep`].
    pub stdout_truncated: bool,
    /// The head of its standard error.
    pub stderr: Vec<u8>,
    /// Whether standard error went on past [`Limits::stderr_keep`].
    pub stderr_truncated: bool,
}

impl Finished {
    /// Its exit code, if it exited (rather than being killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The signal that killed it, if one did.
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }

    /// Whether it exited 0 in time.
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.success()
    }
}

/// Why a command has no [`Finished`].
#[derive(Debug)]
pub enum RunError {
    /// It could not be started.
    Spawn(std::io::Error),
    /// Waiting for it failed.
    Wait(std::io::Error),
}

impl RunError {
    /// The underlying error.
    pub fn io(&self) -> &std::io::Error {
        match self {
            RunError::Spawn(e) | RunError::Wait(e) => e,
        }
    }

    /// The underlying error, owned.
    pub fn into_io(self) -> std::io::Error {
        match self {
            RunError::Spawn(e) | RunError::Wait(e) => e,
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bare error: callers name the command in their own words.
        std::fmt::Display::fmt(self.io(), f)
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.io())
    }
}

/// Reads `reader` to its end into `head`, keeping `keep` bytes and setting
/// `truncated` if more came. A read error ends it as the end would.
async fn drain<R: AsyncRead + Unpin>(
    reader: Option<R>,
    keep: usize,
    head: &mut Vec<u8>,
    truncated: &mut bool,
) {
    let Some(mut reader) = reader else { return };
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = keep.saturating_sub(head.len());
                head.extend_from_slice(&buf[..n.min(room)]);
                *truncated |= n > room;
            }
        }
    }
}

/// Runs `cmd` within `limits`, the same way for every caller:
///
/// - it starts in a process group of its own, standard input fed from
///   [`Cmd::stdin`] (or `/dev/null`);
/// - both outputs are read at once to their end, so it never blocks on a
///   full pipe, keeping a bounded head of each;
/// - it has finished when both outputs are closed and it has exited; only
///   then is it reaped, so until then its pid, which is the group's id, is
///   ours to kill;
/// - at the timeout the whole group is killed (SIGKILL) first, then the
///   command is reaped, and the pipes are let go of: a grandchild that left
///   the group holding them cannot keep the call waiting;
/// - if the future is dropped before it finishes, the group is killed too.
pub async fn run(cmd: Cmd, limits: &Limits) -> Result<Finished, RunError> {
    let started = Instant::now();
    let mut child = cmd.command().spawn().map_err(RunError::Spawn)?;
    // Declared after `child`, so dropped before it: the group dies before
    // tokio's kill-on-drop of the leader and reaping of it.
    let mut guard = GroupGuard::new(child.id().filter(|_| limits.kill_group));
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (mut out, mut out_cut) = (Vec::new(), false);
    let (mut err, mut err_cut) = (Vec::new(), false);
    let input = cmd.stdin.unwrap_or_default();
    let work = async {
        let feed = async {
            if let Some(mut s) = stdin {
                // A command that does not read its input is not an error.
                let _ = s.write_all(&input).await;
            }
        };
        tokio::join!(
            feed,
            drain(stdout, limits.stdout_keep, &mut out, &mut out_cut),
            drain(stderr, limits.stderr_keep, &mut err, &mut err_cut),
        );
        child.wait().await
    };
    let waited = tokio::time::timeout(limits.timeout, work).await;
    let (status, timed_out) = match waited {
        Ok(status) => (status.map_err(RunError::Wait)?, false),
        Err(_) => {
            // Not reaped (the wait did not finish): the group is still ours.
            drop(guard);
            guard = GroupGuard::new(None);
            let _ = child.start_kill();
            match tokio::time::timeout(REAP_GRACE, child.wait()).await {
                Ok(Ok(status)) => (status, true),
                Ok(Err(e)) => return Err(RunError::Wait(e)),
                // Stuck in the kernel: it dies when it leaves, and tokio
                // reaps it once `child` is dropped. It reads as killed.
                Err(_) => (ExitStatus::from_raw(SIGKILL), true),
            }
        }
    };
    // Reaped: its pid may be reused, so the group is no longer ours.
    guard.disarm();
    Ok(Finished {
        status,
        timed_out,
        elapsed: started.elapsed(),
        stdout: out,
        stdout_truncated: out_cut,
        stderr: err,
        stderr_truncated: err_cut,
    })
}

/// [`run`] for a caller on a plain thread (not a tokio worker, where it would
/// block others): it runs on a single-threaded runtime of its own.
pub fn run_blocking(cmd: Cmd, limits: &Limits) -> Result<Finished, RunError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Spawn)?;
    rt.block_on(run(cmd, limits))
}

//! The system a provider works on: a root directory (`/` on a real node, a
//! temporary tree in tests and dry runs), commands run with a timeout, and
//! files read and replaced through [`Beneath`]: relative to a descriptor of
//! the root, never through a symbolic link, whole or not at all.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::beneath::{Beneath, WriteOpts, READ_LIMIT};
use crate::model::Failure;

/// Output kept from a provider's command, each stream (the rest is read and
/// dropped): far more than any listing a provider parses.
const OUTPUT_KEEP: usize = 16 * 1024 * 1024;

/// The node's system as providers see it.
#[derive(Debug, Clone)]
pub struct System {
    root: PathBuf,
    timeout: Duration,
    fs: Beneath,
}

/// What a finished command left.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Standard error, or standard output if that is empty, trimmed: what to
    /// tell the operator when it failed.
    pub fn why(&self) -> String {
        let e = self.stderr.trim();
        if e.is_empty() {
            self.stdout.trim().to_string()
        } else {
            e.to_string()
        }
    }
}

/// A command to run.
#[derive(Debug, Clone, Default)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    cwd_fd: Option<Arc<OwnedFd>>,
    stdin: Option<Vec<u8>>,
    uid: Option<(u32, u32)>,
    timeout: Option<Duration>,
}

impl Cmd {
    /// `program` with no arguments.
    pub fn new(program: impl Into<String>) -> Cmd {
        Cmd {
            program: program.into(),
            ..Cmd::default()
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.args.push(a.as_ref().to_string_lossy().into_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, items: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in items {
            self.args.push(a.as_ref().to_string_lossy().into_owned());
        }
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, k: &str, v: &str) -> Cmd {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// Runs in `dir`.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Cmd {
        self.cwd = Some(dir.into());
        self
    }

    /// Runs in the directory open as `dir` (entered by descriptor in the
    /// child, so no path is resolved again: see
    /// [`mco_process::Cmd::cwd_fd`]); wins over [`Cmd::cwd`].
    pub fn cwd_fd(mut self, dir: OwnedFd) -> Cmd {
        self.cwd_fd = Some(Arc::new(dir));
        self
    }

    /// Feeds `data` on standard input.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(data.into());
        self
    }

    /// Runs as this uid and gid.
    pub fn as_user(mut self, uid: u32, gid: u32) -> Cmd {
        self.uid = Some((uid, gid));
        self
    }

    /// Bounds the run (default: the system's timeout).
    pub fn timeout(mut self, t: Duration) -> Cmd {
        self.timeout = Some(t);
        self
    }

    /// The command line, for messages.
    pub fn display(&self) -> String {
        let mut s = self.program.clone();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }
}

impl System {
    /// A system rooted at `root`, running commands for at most `timeout`.
    pub fn new(root: impl Into<PathBuf>, timeout: Duration) -> System {
        let root = root.into();
        System {
            fs: Beneath::new(root.clone()),
            root,
            timeout,
        }
    }

    /// Every file operation under the root (see [`Beneath`]).
    pub fn fs(&self) -> &Beneath {
        &self.fs
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this is the real system (`root` is `/`).
    pub fn is_real_root(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The path of the system file `abs` (written as on the node, e.g.
    /// `/etc/hosts`) under the root. `..` components cannot climb above the root.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let mut out = self.root.clone();
        let mut depth = 0usize;
        for c in abs.as_ref().components() {
            match c {
                Component::Normal(p) => {
                    out.push(p);
                    depth += 1;
                }
                Component::ParentDir if depth > 0 => {
                    out.pop();
                    depth -= 1;
                }
                _ => {}
            }
        }
        out
    }

    /// Runs `cmd` to completion or its timeout, through
    /// [`mco_process::run_blocking`] (providers run on blocking threads): the
    /// whole process group is killed on timeout. A program that cannot be
    /// started is a failure naming it.
    pub fn run(&self, cmd: &Cmd) -> Result<Output, Failure> {
        let mut c = mco_process::Cmd::new(&cmd.program).args(&cmd.args);
        for (k, v) in &cmd.env {
            c = c.env(k, v);
        }
        if let Some(d) = &cmd.cwd {
            c = c.cwd(d);
        }
        if let Some(fd) = &cmd.cwd_fd {
            let fd = fd
                .try_clone()
                .map_err(|e| Failure::failed(format!("cannot run {}: {e}", cmd.program)))?;
            c = c.cwd_fd(fd);
        }
        if let Some((uid, gid)) = cmd.uid {
            c = c.as_user(uid, gid);
        }
        if let Some(data) = &cmd.stdin {
            c = c.stdin(data.clone());
        }
        #[cfg(test)]
        spawned::record(cmd);
        let limit = cmd.timeout.unwrap_or(self.timeout);
        let done = mco_process::run_blocking(c, &mco_process::Limits::new(limit, OUTPUT_KEEP))
            .map_err(|e| Failure::failed(format!("cannot run {}: {e}", cmd.program)))?;
        if done.timed_out {
            return Err(Failure::failed(format!(
                "{} timed out after {}s and was killed",
                cmd.display(),
                limit.as_secs()
            )));
        }
        Ok(Output {
            code: done.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&done.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&done.stderr).into_owned(),
        })
    }

    /// Reads a system file as text; a missing file is `None`. A link, a
    /// FIFO or other non-regular file, or one over [`READ_LIMIT`] bytes is
    /// refused (see [`Beneath::read`]).
    pub fn read(&self, abs: &str) -> Result<Option<String>, Failure> {
        Ok(self
            .fs
            .read(abs, READ_LIMIT)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Replaces a system file whole (see [`Beneath::write`]), keeping an
    /// existing file's mode and owner, or using `mode` for a new one.
    pub fn write(&self, abs: &str, content: &[u8], mode: u32) -> Result<(), Failure> {
        self.fs.write(abs, content, &WriteOpts::keep(mode))
    }
}

/// What [`System::run`] started in this test process, so tests can check
/// what a spawned tool was given: its arguments (which any local user can
/// read in `/proc/PID/cmdline`) and its standard input (which they cannot).
#[cfg(test)]
pub(crate) mod spawned {
    use std::sync::Mutex;

    /// One started command.
    #[derive(Debug, Clone)]
    pub(crate) struct Spawned {
        /// The program as given.
        pub(crate) program: String,
        /// Its arguments.
        pub(crate) args: Vec<String>,
        /// Its standard input, if it was given one.
        pub(crate) stdin: Option<Vec<u8>>,
    }

    static LOG: Mutex<Vec<Spawned>> = Mutex::new(Vec::new());

    pub(super) fn record(cmd: &super::Cmd) {
        LOG.lock().unwrap_or_else(|p| p.into_inner()).push(Spawned {
            program: cmd.program.clone(),
            args: cmd.args.clone(),
            stdin: cmd.stdin.clone(),
        });
    }

    /// Every command started so far whose arguments mention `needle`
    /// (a test's temporary root, to keep apart tests running at once).
    pub(crate) fn mentioning(needle: &str) -> Vec<Spawned> {
        LOG.lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| s.args.iter().any(|a| a.contains(needle)))
            .cloned()
            .collect()
    }
}

/// Splits text into lines that keep their line endings, so that joining them
/// gives back the exact bytes: how providers keep every line they do not own.
pub fn lines(text: &str) -> Vec<String> {
    text.split_inclusive('\n').map(str::to_string).collect()
}

/// Appends `line` (which must end in a newline) to `lines`, first ending the
/// last line if it had no newline.
pub fn push_line(lines: &mut Vec<String>, line: String) {
    if let Some(last) = lines.last_mut() {
        if !last.ends_with('\n') {
            last.push('\n');
        }
    }
    lines.push(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_root() {
        let s = System::new("/tmp/r", Duration::from_secs(1));
        assert_eq!(s.path("/etc/hosts"), PathBuf::from("/tmp/r/etc/hosts"));
        assert_eq!(s.path("/../../etc/x"), PathBuf::from("/tmp/r/etc/x"));
        assert_eq!(s.path("/a/../../b"), PathBuf::from("/tmp/r/b"));
        let real = System::new("/", Duration::from_secs(1));
        assert_eq!(real.path("/etc/hosts"), PathBuf::from("/etc/hosts"));
        assert!(real.is_real_root());
    }

    #[test]
    fn writes_keep_mode_and_leave_no_temporaries() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        let s = System::new(d.path(), Duration::from_secs(1));
        let p = d.path().join("f");
        s.write("/f", b"one\n", 0o640).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        s.write("/f", b"two\n", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        assert_eq!(s.read("/f").unwrap().as_deref(), Some("two\n"));
        assert_eq!(s.read("/nope").unwrap(), None);
        assert_eq!(s.read("/nodir/nope").unwrap(), None);
    }

    #[test]
    fn temporaries_of_dead_writers_are_removed_on_the_next_write() {
        let d = tempfile::tempdir().unwrap();
        let s = System::new(d.path(), Duration::from_secs(1));
        // pid_max is at most 2^22 on Linux: this writer is certainly gone.
        let stale = d.path().join(".hosts.mco-999999999-0");
        std::fs::write(&stale, b"half a fi").unwrap();
        let other = d.path().join(".passwd.mco-999999999-0");
        std::fs::write(&other, b"not ours").unwrap();
        s.write("/hosts", b"whole\n", 0o644).unwrap();
        assert!(!stale.exists(), "the dead writer's temporary is gone");
        assert!(other.exists(), "another file's temporary is not touched");
        assert_eq!(
            std::fs::read_to_string(d.path().join("hosts")).unwrap(),
            "whole\n"
        );
    }

    #[test]
    fn a_command_runs_in_a_directory_given_by_descriptor() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("work")).unwrap();
        let s = System::new(d.path(), Duration::from_secs(5));
        let dir = s.fs().open_dir("/work").unwrap().unwrap();
        let o = s.run(&Cmd::new("pwd").cwd_fd(dir)).unwrap();
        assert_eq!(
            std::path::Path::new(o.stdout.trim()),
            d.path().canonicalize().unwrap().join("work")
        );
    }

    #[test]
    fn lines_round_trip_exactly() {
        for t in ["a\nb\n", "a\r\nb", "", "\n\n", "x"] {
            assert_eq!(lines(t).concat(), t);
        }
        let mut l = lines("a\nb");
        push_line(&mut l, "c\n".into());
        assert_eq!(l.concat(), "a\nb\nc\n");
    }

    #[test]
    fn commands_run_time_out_and_report_missing_programs() {
        let s = System::new("/", Duration::from_secs(5));
        let o = s
            .run(&Cmd::new("sh").args(["-c", "echo hi; echo err >&2; exit 3"]))
            .unwrap();
        assert_eq!(
            (o.code, o.stdout.as_str(), o.stderr.as_str()),
            (3, "hi\n", "err\n")
        );
        let o = s.run(&Cmd::new("cat").stdin("fed")).unwrap();
        assert_eq!(o.stdout, "fed");
        let e = s
            .run(
                &Cmd::new("sleep")
                    .arg("30")
                    .timeout(Duration::from_millis(200)),
            )
            .unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
        let e = s.run(&Cmd::new("/nonexistent/prog")).unwrap_err();
        assert!(
            e.to_string().contains("cannot run /nonexistent/prog"),
            "{e}"
        );
    }

    #[test]
    fn a_command_filling_stderr_before_stdout_does_not_stall() {
        // 1 MiB on stderr first: far more than a pipe holds, so the command
        // finishes only if stderr is read while stdout is.
        let s = System::new("/", Duration::from_secs(20));
        let o = s
            .run(&Cmd::new("sh").args([
                "-c",
                "head -c 1048576 /dev/zero | tr '\\0' e >&2; echo done",
            ]))
            .unwrap();
        assert_eq!(o.code, 0);
        assert_eq!(o.stdout, "done\n");
        assert_eq!(o.stderr.len(), 1_048_576);
    }
}

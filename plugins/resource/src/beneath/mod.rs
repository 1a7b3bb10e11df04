//! Every file operation of the resource agent, made relative to a
//! descriptor of the configured root and never through a symbolic link.
//!
//! A path such as `/home/alice/.ssh/authorized_keys` is first clamped
//! lexically (as [`crate::system::System::path`] does: `.` and `..` never
//! reach the kernel), then resolved one component at a time: the root is
//! opened (it is the operator's setting, so it may itself be a link), and
//! each directory below it is opened with `openat(parent, name,
//! O_DIRECTORY | O_NOFOLLOW)`. A component that is a symbolic link is
//! refused with an error naming it; a component that is missing ends the
//! walk ("absent"). The final component is then worked on through the
//! parent's descriptor only: `fstatat(AT_SYMLINK_NOFOLLOW)`, `openat` with
//! `O_NOFOLLOW | O_NONBLOCK` (a FIFO, socket or device is refused after
//! `fstat`, without blocking), `mkdirat`, `unlinkat`, `symlinkat`,
//! `renameat`; owner and mode are only ever set on an open descriptor
//! (`fchown`, `fchmod`, or `fchownat(fd, "", AT_EMPTY_PATH)` on an `O_PATH`
//! descriptor of a link itself), never by path, and a file is only opened
//! for real once an `O_PATH` descriptor showed it is a regular file or a
//! directory (a device's driver is never asked to open).
//!
//! Why a walk rather than `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`:
//! both refuse the same paths once `..` is gone (and it is, lexically,
//! before any system call), but the walk works on every kernel and under
//! every seccomp profile the agent may run in (`openat2` needs Linux 5.6
//! and is answered `ENOSYS` by some container runtimes), so there is one
//! code path, tested everywhere, rather than a fast path and a fallback
//! that is tested nowhere. Holding a descriptor per step also means a
//! component swapped for a link after it was opened cannot redirect the
//! rest of the walk.
//!
//! Consequences an operator sees: a path whose directories include a
//! symbolic link (a `/home` that links to `/var/home`, `/var/run` → `/run`)
//! is refused; name the real path. Since nothing is followed, the path a
//! resource names is the real location it changes, so the `deny_names`
//! checked on that name are checked on the real location.
//!
//! Files are written whole or not at all: a temporary file created
//! (`O_CREAT | O_EXCL | O_NOFOLLOW`) in the target's directory, written,
//! given its owner and mode on the descriptor, fsynced, renamed over the
//! target with `renameat`, and the directory fsynced.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Uid, CWD};
use rustix::io::Errno;

use crate::model::Failure;

/// Most bytes read from one system or user file (passwd, crontabs,
/// authorized_keys, …): far more than any real one, small enough that a
/// planted giant file cannot exhaust memory.
pub const READ_LIMIT: u64 = 16 * 1024 * 1024;

/// Deepest directory tree [`Beneath::chown_tree`] descends into.
pub const TREE_DEPTH: usize = 256;

/// Most entries one directory listing returns.
pub const LIST_LIMIT: usize = 100_000;

/// What is at a path (the path itself, never what a link points to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

/// The metadata providers look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// What it is.
    pub kind: Kind,
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Number of hard links.
    pub nlink: u64,
    /// Size in bytes.
    pub size: u64,
}

#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn meta(st: &rustix::fs::Stat) -> Meta {
    let kind = match FileType::from_raw_mode(st.st_mode as _) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    };
    Meta {
        kind,
        mode: (st.st_mode as u32) & 0o7777,
        uid: st.st_uid as u32,
        gid: st.st_gid as u32,
        nlink: st.st_nlink as u64,
        size: st.st_size.max(0) as u64,
    }
}

/// How [`Beneath::write`] sets the new file's mode and owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOpts {
    /// The mode whatever was there (`None`: an existing file's, else `new_mode`).
    pub mode: Option<u32>,
    /// The owner whatever was there (`None`: an existing file's, else `new_uid`).
    pub uid: Option<u32>,
    /// The group whatever was there (`None`: an existing file's, else `new_gid`).
    pub gid: Option<u32>,
    /// The mode of a file that did not exist.
    pub new_mode: u32,
    /// The owner of a file that did not exist (`None`: the agent's).
    pub new_uid: Option<u32>,
    /// The group of a file that did not exist (`None`: the agent's).
    pub new_gid: Option<u32>,
    /// Whether a symbolic link at the path may be replaced by the file
    /// (otherwise it is refused). The link is replaced, never followed.
    pub replace_link: bool,
}

impl WriteOpts {
    /// Keep an existing file's mode and owner; a new one gets `new_mode`
    /// and the agent's owner.
    pub fn keep(new_mode: u32) -> WriteOpts {
        WriteOpts {
            mode: None,
            uid: None,
            gid: None,
            new_mode,
            new_uid: None,
            new_gid: None,
            replace_link: false,
        }
    }
}

/// The configured root, and every operation on paths under it.
#[derive(Debug, Clone)]
pub struct Beneath {
    root: PathBuf,
}

/// An open directory and one name in it.
struct At {
    dir: OwnedFd,
    name: OsString,
    shown: PathBuf,
}

fn io(what: &Path, e: Errno) -> Failure {
    Failure::io(what, std::io::Error::from(e))
}

fn refused_link(what: &Path) -> Failure {
    Failure::failed(format!(
        "{} is a symbolic link; refusing to follow it",
        what.display()
    ))
}

fn uid(n: u32) -> Result<Uid, Failure> {
    if n == u32::MAX {
        return Err(Failure::failed("uid 4294967295 is not a user id"));
    }
    Ok(Uid::from_raw(n))
}

fn gid(n: u32) -> Result<Gid, Failure> {
    if n == u32::MAX {
        return Err(Failure::failed("gid 4294967295 is not a group id"));
    }
    Ok(Gid::from_raw(n))
}

fn am_root() -> bool {
    rustix::process::geteuid().is_root()
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

const FILE_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// Opens the directory `name` in `dir`, refusing a link; `None` when missing.
fn step(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> Result<Option<OwnedFd>, Failure> {
    match rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
            match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if meta(&st).kind == Kind::Symlink => Err(refused_link(shown)),
                Ok(_) => Err(Failure::failed(format!(
                    "{} is not a directory",
                    shown.display()
                ))),
                Err(_) => Err(io(shown, e)),
            }
        }
        Err(e) => Err(io(shown, e)),
    }
}

fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> Result<Option<Meta>, Failure> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(meta(&st))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(io(shown, e)),
    }
}

fn fsync_dir(dir: BorrowedFd<'_>) {
    let _ = rustix::fs::fsync(dir);
}

/// Sets owner then mode on an open descriptor (owner first: `chown`
/// clears set-id bits). Failing to give a file away is ignored when the
/// agent is not root and `must_own` is false (tests as a plain user).
fn own(
    fd: BorrowedFd<'_>,
    shown: &Path,
    mode: Option<u32>,
    owner: (Option<u32>, Option<u32>),
    must_own: bool,
) -> Result<(), Failure> {
    if owner.0.is_some() || owner.1.is_some() {
        let have = meta(&rustix::fs::fstat(fd).map_err(|e| io(shown, e))?);
        let u = owner.0.filter(|u| *u != have.uid).map(uid).transpose()?;
        let g = owner.1.filter(|g| *g != have.gid).map(gid).transpose()?;
        if u.is_some() || g.is_some() {
            match rustix::fs::fchown(fd, u, g) {
                Ok(()) => {}
                Err(Errno::PERM) if !must_own && !am_root() => {}
                Err(e) => return Err(io(shown, e)),
            }
        }
    }
    if let Some(m) = mode {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(m & 0o7777)).map_err(|e| io(shown, e))?;
    }
    Ok(())
}

/// Whether process `pid` still runs.
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Opens the last component of `at` for reading, never following a link
/// and never opening anything but a regular file or a directory (a device's
/// driver is never asked to open): `O_PATH | O_NOFOLLOW` first, `fstat`,
/// then the same inode reopened through `/proc/self/fd` (or, without
/// `/proc`, by name with `O_NOFOLLOW`, checked to be the same inode). A
/// link, FIFO, socket or device is an error saying it refuses to `verb`.
fn open_plain(at: &At, verb: &str) -> Result<Option<(OwnedFd, Meta)>, Failure> {
    let path = match rustix::fs::openat(
        at.dir.as_fd(),
        at.name.as_os_str(),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(io(&at.shown, e)),
    };
    let first = rustix::fs::fstat(&path).map_err(|e| io(&at.shown, e))?;
    match meta(&first).kind {
        Kind::Symlink => return Err(refused_link(&at.shown)),
        Kind::Other => {
            return Err(Failure::failed(format!(
                "{} is not a regular file (a FIFO, socket or device); refusing to {verb}",
                at.shown.display()
            )))
        }
        Kind::File | Kind::Dir => {}
    }
    let via_proc = format!("/proc/self/fd/{}", path.as_raw_fd());
    let reopen = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(CWD, via_proc.as_str(), reopen, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => rustix::fs::openat(
            at.dir.as_fd(),
            at.name.as_os_str(),
            FILE_FLAGS,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::LOOP => refused_link(&at.shown),
            e => io(&at.shown, e),
        })?,
        Err(e) => return Err(io(&at.shown, e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| io(&at.shown, e))?;
    if (st.st_dev, st.st_ino) != (first.st_dev, first.st_ino) {
        return Err(Failure::failed(format!(
            "{} changed while it was being opened; refusing to use it",
            at.shown.display()
        )));
    }
    Ok(Some((fd, meta(&st))))
}

impl Beneath {
    /// Operations under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Beneath {
        Beneath { root: root.into() }
    }

    /// The path's components after lexical clamping (`..` cannot climb
    /// above the root; `.` and empty ones vanish).
    fn parts(abs: &Path) -> Vec<OsString> {
        let mut out: Vec<OsString> = Vec::new();
        for c in abs.components() {
            match c {
                Component::Normal(p) => out.push(p.to_os_string()),
                Component::ParentDir => {
                    out.pop();
                }
                _ => {}
            }
        }
        out
    }

    /// The path under the root, for messages.
    pub fn shown(&self, abs: impl AsRef<Path>) -> PathBuf {
        let mut p = self.root.clone();
        for c in Beneath::parts(abs.as_ref()) {
            p.push(c);
        }
        p
    }

    fn open_root(&self) -> Result<OwnedFd, Failure> {
        rustix::fs::openat(
            CWD,
            &self.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io(&self.root, e))
    }

    /// Walks `parts` from the root; `None` when a component is missing,
    /// unless `create` (a mode) makes the missing directories.
    fn walk(&self, parts: &[OsString], create: Option<u32>) -> Result<Option<OwnedFd>, Failure> {
        let mut fd = self.open_root()?;
        let mut shown = self.root.clone();
        for p in parts {
            shown.push(p);
            let next = match step(fd.as_fd(), p, &shown)? {
                Some(n) => n,
                None => {
                    let Some(mode) = create else {
                        return Ok(None);
                    };
                    let made = match rustix::fs::mkdirat(
                        fd.as_fd(),
                        p.as_os_str(),
                        Mode::from_raw_mode(0o700),
                    ) {
                        Ok(()) => true,
                        Err(Errno::EXIST) => false,
                        Err(e) => return Err(io(&shown, e)),
                    };
                    let n = step(fd.as_fd(), p, &shown)?.ok_or_else(|| {
                        Failure::failed(format!("{} vanished as it was made", shown.display()))
                    })?;
                    if made {
                        own(n.as_fd(), &shown, Some(mode), (None, None), false)?;
                        fsync_dir(fd.as_fd());
                    }
                    n
                }
            };
            fd = next;
        }
        Ok(Some(fd))
    }

    /// The directory holding `abs` (opened) and its last component; `None`
    /// when a directory on the way is missing.
    fn at(&self, abs: &Path) -> Result<Option<At>, Failure> {
        let mut parts = Beneath::parts(abs);
        let name = parts.pop().ok_or_else(|| {
            Failure::failed(format!(
                "{}: the root itself cannot be changed",
                self.root.display()
            ))
        })?;
        let shown = self.shown(abs);
        Ok(self.walk(&parts, None)?.map(|dir| At { dir, name, shown }))
    }

    fn at_existing_dir(&self, abs: &Path) -> Result<At, Failure> {
        self.at(abs)?.ok_or_else(|| {
            Failure::failed(format!(
                "the directory that would hold {} does not exist",
                self.shown(abs).display()
            ))
        })
    }

    /// What is at `abs` (not following a final link); `None` when it or a
    /// directory on the way is missing. A link among the directories is an
    /// error.
    pub fn lstat(&self, abs: impl AsRef<Path>) -> Result<Option<Meta>, Failure> {
        if Beneath::parts(abs.as_ref()).is_empty() {
            let root = self.open_root()?;
            return Ok(Some(meta(
                &rustix::fs::fstat(&root).map_err(|e| io(&self.root, e))?,
            )));
        }
        let Some(at) = self.at(abs.as_ref())? else {
            return Ok(None);
        };
        lstat_at(at.dir.as_fd(), &at.name, &at.shown)
    }

    /// Opens the regular file at `abs` for reading, without following a
    /// link and without blocking: a link, directory, FIFO, socket or device
    /// is refused with an error naming it. `None` when missing.
    pub fn open_file(&self, abs: impl AsRef<Path>) -> Result<Option<(File, Meta)>, Failure> {
        let Some(at) = self.at(abs.as_ref())? else {
            return Ok(None);
        };
        let Some((fd, m)) = open_plain(&at, "read it")? else {
            return Ok(None);
        };
        match m.kind {
            Kind::File => Ok(Some((File::from(fd), m))),
            Kind::Dir => Err(Failure::failed(format!(
                "{} is a directory, not a file",
                at.shown.display()
            ))),
            _ => Err(Failure::failed(format!(
                "{} is not a regular file (a FIFO, socket or device); refusing to read it",
                at.shown.display()
            ))),
        }
    }

    /// The content of the regular file at `abs` ([`Beneath::open_file`]),
    /// refusing one larger than `limit` bytes; `None` when missing.
    pub fn read(&self, abs: impl AsRef<Path>, limit: u64) -> Result<Option<Vec<u8>>, Failure> {
        Ok(self.read_with_meta(abs, limit)?.map(|(b, _)| b))
    }

    /// [`Beneath::read`], with the metadata of the file that was read.
    pub fn read_with_meta(
        &self,
        abs: impl AsRef<Path>,
        limit: u64,
    ) -> Result<Option<(Vec<u8>, Meta)>, Failure> {
        let Some((f, m)) = self.open_file(abs.as_ref())? else {
            return Ok(None);
        };
        let shown = self.shown(abs.as_ref());
        let mut out = Vec::new();
        f.take(limit.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| Failure::io(&shown, e))?;
        if out.len() as u64 > limit {
            return Err(Failure::failed(format!(
                "{} is larger than {limit} bytes; refusing to read it",
                shown.display()
            )));
        }
        Ok(Some((out, m)))
    }

    /// Where the link at `abs` points; `None` when missing.
    pub fn read_link(&self, abs: impl AsRef<Path>) -> Result<Option<PathBuf>, Failure> {
        let Some(at) = self.at(abs.as_ref())? else {
            return Ok(None);
        };
        match rustix::fs::readlinkat(at.dir.as_fd(), at.name.as_os_str(), Vec::new()) {
            Ok(t) => Ok(Some(PathBuf::from(OsString::from_vec(t.into_bytes())))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(io(&at.shown, e)),
        }
    }

    /// Opens the directory `abs` (for `fchdir`, listings); `None` when missing.
    pub fn open_dir(&self, abs: impl AsRef<Path>) -> Result<Option<OwnedFd>, Failure> {
        self.walk(&Beneath::parts(abs.as_ref()), None)
    }
}

mod change;
mod tree;

#[cfg(test)]
mod tests;

//! Listing directories and handing a tree over to another owner, both
//! through descriptors only.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Uid};
use rustix::io::Errno;

use super::{io, lstat_at, meta, step, uid, Beneath, Kind, LIST_LIMIT, TREE_DEPTH};
use crate::model::Failure;

impl Beneath {
    /// The entries of the directory `abs` (not `.` and `..`), each with what
    /// it is (links not followed), sorted by name; `None` when missing.
    pub fn list(&self, abs: impl AsRef<Path>) -> Result<Option<Vec<(OsString, Kind)>>, Failure> {
        let shown = self.shown(abs.as_ref());
        let Some(fd) = self.open_dir(abs.as_ref())? else {
            return Ok(None);
        };
        list_fd(fd.as_fd(), &shown).map(Some)
    }

    /// Gives everything under the directory `abs` (and `abs`) owned by
    /// `old` to `new`. Each entry is opened without following links and
    /// checked and changed through that descriptor, so an entry swapped
    /// for a link or another file meanwhile is never what changes owner.
    /// Descends at most [`TREE_DEPTH`] levels (deeper is an error).
    pub fn chown_tree(&self, abs: impl AsRef<Path>, old: u32, new: u32) -> Result<(), Failure> {
        let new = uid(new)?;
        let Some(top) = self.open_dir(abs.as_ref())? else {
            return Ok(());
        };
        // Directories still to visit, each as (its parent, its name): only
        // the directories on the current branch stay open.
        let mut pending: Vec<(Rc<OwnedFd>, OsString, PathBuf, usize)> = Vec::new();
        let mut next = Some((top, self.shown(abs.as_ref()), 0usize));
        loop {
            if let Some((dir, shown, depth)) = next.take() {
                let m = meta(&rustix::fs::fstat(&dir).map_err(|e| io(&shown, e))?);
                if m.uid == old {
                    rustix::fs::fchown(&dir, Some(new), None).map_err(|e| io(&shown, e))?;
                }
                let entries = list_fd(dir.as_fd(), &shown)?;
                let dir = Rc::new(dir);
                for (name, kind) in entries {
                    let path = shown.join(&name);
                    if kind == Kind::Dir {
                        if depth >= TREE_DEPTH {
                            return Err(Failure::failed(format!(
                                "{} is more than {TREE_DEPTH} directories deep; refusing to go on",
                                path.display()
                            )));
                        }
                        pending.push((dir.clone(), name, path, depth + 1));
                    } else {
                        chown_entry(dir.as_fd(), &name, &path, old, new)?;
                    }
                }
            }
            let Some((parent, name, path, depth)) = pending.pop() else {
                return Ok(());
            };
            match step(parent.as_fd(), &name, &path) {
                Ok(Some(sub)) => next = Some((sub, path, depth)),
                Ok(None) => {}
                // Swapped for something else since it was listed: change
                // that thing itself if it is the user's, never follow it.
                Err(_) => chown_entry(parent.as_fd(), &name, &path, old, new)?,
            }
        }
    }
}

/// Gives the entry `name` of `dir` to `new` if `old` owns it, checked and
/// changed through one descriptor of the entry itself (`O_PATH |
/// O_NOFOLLOW`: a link is changed, not followed).
fn chown_entry(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    old: u32,
    new: Uid,
) -> Result<(), Failure> {
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(io(path, e)),
    };
    let m = meta(&rustix::fs::fstat(&fd).map_err(|e| io(path, e))?);
    if m.uid == old {
        rustix::fs::chownat(&fd, "", Some(new), None, AtFlags::EMPTY_PATH)
            .map_err(|e| io(path, e))?;
    }
    Ok(())
}

/// The entries of an open directory, as [`Beneath::list`] gives them.
pub(super) fn list_fd(dir: BorrowedFd<'_>, shown: &Path) -> Result<Vec<(OsString, Kind)>, Failure> {
    let mut d = Dir::read_from(dir).map_err(|e| io(shown, e))?;
    let mut out = Vec::new();
    while let Some(entry) = d.read() {
        let entry = entry.map_err(|e| io(shown, e))?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        if out.len() >= LIST_LIMIT {
            return Err(Failure::failed(format!(
                "{} has more than {LIST_LIMIT} entries; refusing to list it",
                shown.display()
            )));
        }
        let kind = match entry.file_type() {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Unknown => match lstat_at(dir, name, shown)? {
                Some(m) => m.kind,
                None => continue,
            },
            _ => Kind::Other,
        };
        out.push((name.to_os_string(), kind));
    }
    out.sort();
    Ok(out)
}

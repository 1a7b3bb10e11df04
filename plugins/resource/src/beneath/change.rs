//! The operations of [`Beneath`] that change the tree: writes, new
//! directories, links, removals, owners and modes.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::tree::list_fd;
use super::{
    alive, fsync_dir, gid, io, lstat_at, meta, open_plain, own, refused_link, step, uid, At,
    Beneath, Kind, WriteOpts,
};
use crate::model::Failure;

impl Beneath {
    /// Replaces the file at `abs` with `content`: whole or not at all, the
    /// owner and mode (per `opts`) set on the new file's descriptor before
    /// it is renamed into place. A directory, FIFO, socket or device at
    /// `abs` is refused, so is a link unless `opts.replace_link`.
    pub fn write(
        &self,
        abs: impl AsRef<Path>,
        content: &[u8],
        opts: &WriteOpts,
    ) -> Result<(), Failure> {
        let at = self.at_existing_dir(abs.as_ref())?;
        let old = match lstat_at(at.dir.as_fd(), &at.name, &at.shown)? {
            Some(m) if m.kind == Kind::File => Some(m),
            Some(m) if m.kind == Kind::Symlink && opts.replace_link => None,
            Some(m) if m.kind == Kind::Symlink => return Err(refused_link(&at.shown)),
            Some(m) if m.kind == Kind::Dir => {
                return Err(Failure::failed(format!(
                    "{} is a directory; refusing to replace it with a file",
                    at.shown.display()
                )))
            }
            Some(_) => {
                return Err(Failure::failed(format!(
                    "{} is a FIFO, socket or device; refusing to replace it",
                    at.shown.display()
                )))
            }
            None => None,
        };
        let mode = opts.mode.or(old.map(|m| m.mode)).unwrap_or(opts.new_mode);
        let owner = (
            opts.uid.or(old.map(|m| m.uid)).or(opts.new_uid),
            opts.gid.or(old.map(|m| m.gid)).or(opts.new_gid),
        );
        let must_own = opts.uid.is_some()
            || opts.gid.is_some()
            || (old.is_none() && (opts.new_uid.is_some() || opts.new_gid.is_some()));
        self.remove_stale_temporaries(&at);
        let base = at.name.to_string_lossy().into_owned();
        let mut n = 0u32;
        let (tmp, fd) = loop {
            let tmp = OsString::from(format!(".{base}.mco-{}-{n}", std::process::id()));
            match rustix::fs::openat(
                at.dir.as_fd(),
                tmp.as_os_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => break (tmp, fd),
                Err(Errno::EXIST) if n < 1000 => n += 1,
                Err(e) => return Err(io(&at.shown, e)),
            }
        };
        let mut f = File::from(fd);
        let result = (|| -> Result<(), Failure> {
            f.write_all(content)
                .map_err(|e| Failure::io(&at.shown, e))?;
            own(f.as_fd(), &at.shown, Some(mode), owner, must_own)?;
            f.sync_all().map_err(|e| Failure::io(&at.shown, e))?;
            rustix::fs::renameat(
                at.dir.as_fd(),
                tmp.as_os_str(),
                at.dir.as_fd(),
                at.name.as_os_str(),
            )
            .map_err(|e| io(&at.shown, e))?;
            fsync_dir(at.dir.as_fd());
            Ok(())
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(at.dir.as_fd(), tmp.as_os_str(), AtFlags::empty());
        }
        result
    }

    /// Removes the temporaries an earlier writer of `at` left when it was
    /// killed between creating and renaming them (`.NAME.mco-PID-N` and
    /// `.NAME.mco-link-PID-N` whose PID no longer runs). Best effort.
    fn remove_stale_temporaries(&self, at: &At) {
        let prefix = format!(".{}.mco-", at.name.to_string_lossy());
        let Ok(names) = list_fd(at.dir.as_fd(), &at.shown) else {
            return;
        };
        for (file, _) in names {
            let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
                continue;
            };
            let rest = rest.strip_prefix("link-").unwrap_or(rest);
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid != std::process::id() && !alive(pid) {
                let _ = rustix::fs::unlinkat(at.dir.as_fd(), file.as_os_str(), AtFlags::empty());
            }
        }
    }

    /// Creates the file `abs` with `content` and `mode` only if nothing is
    /// there (`O_EXCL`, never through a link): `false` when something was.
    pub fn create_new(
        &self,
        abs: impl AsRef<Path>,
        content: &[u8],
        mode: u32,
    ) -> Result<bool, Failure> {
        let at = self.at_existing_dir(abs.as_ref())?;
        let fd = match rustix::fs::openat(
            at.dir.as_fd(),
            at.name.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        ) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => return Ok(false),
            Err(e) => return Err(io(&at.shown, e)),
        };
        File::from(fd)
            .write_all(content)
            .map_err(|e| Failure::io(&at.shown, e))?;
        Ok(true)
    }

    /// Makes the directory `abs` (its parent must exist) with `mode` and
    /// owner, set on its descriptor. Fails if something is already there.
    pub fn mkdir(
        &self,
        abs: impl AsRef<Path>,
        mode: u32,
        owner: (Option<u32>, Option<u32>),
    ) -> Result<(), Failure> {
        let at = self.at_existing_dir(abs.as_ref())?;
        rustix::fs::mkdirat(
            at.dir.as_fd(),
            at.name.as_os_str(),
            Mode::from_raw_mode(0o700),
        )
        .map_err(|e| io(&at.shown, e))?;
        let fd = step(at.dir.as_fd(), &at.name, &at.shown)?.ok_or_else(|| {
            Failure::failed(format!("{} vanished as it was made", at.shown.display()))
        })?;
        // The directory that was made is ours until we give it away: one
        // that is not was swapped in by whoever can write the parent.
        let m = meta(&rustix::fs::fstat(&fd).map_err(|e| io(&at.shown, e))?);
        if m.uid != rustix::process::geteuid().as_raw() {
            return Err(Failure::failed(format!(
                "{} was replaced while it was being made; refusing to use it",
                at.shown.display()
            )));
        }
        own(fd.as_fd(), &at.shown, Some(mode), owner, true)?;
        fsync_dir(at.dir.as_fd());
        Ok(())
    }

    /// Makes `abs` and every missing directory above it (each new one with
    /// `mode`, owned by the agent); an existing one is left as it is.
    pub fn mkdir_all(&self, abs: impl AsRef<Path>, mode: u32) -> Result<(), Failure> {
        self.walk(&Beneath::parts(abs.as_ref()), Some(mode))
            .map(|_| ())
    }

    /// Sets mode and owner of the file or directory at `abs` on its
    /// descriptor (opened without following a link and without blocking).
    /// A link, FIFO, socket or device is refused, and so is a regular file
    /// with other hard links (the change would reach every name of it).
    pub fn set_meta(
        &self,
        abs: impl AsRef<Path>,
        mode: Option<u32>,
        owner: (Option<u32>, Option<u32>),
    ) -> Result<(), Failure> {
        let at = self.at_existing_dir(abs.as_ref())?;
        let (fd, m) = open_plain(&at, "change it")?
            .ok_or_else(|| Failure::failed(format!("{} does not exist", at.shown.display())))?;
        match m.kind {
            Kind::Dir => {}
            Kind::File if m.nlink <= 1 => {}
            Kind::File => {
                return Err(Failure::failed(format!(
                    "{} has {} hard links; refusing to change the mode or owner of all of them",
                    at.shown.display(),
                    m.nlink
                )))
            }
            _ => {
                return Err(Failure::failed(format!(
                    "{} is not a regular file or a directory; refusing to change it",
                    at.shown.display()
                )))
            }
        }
        own(fd.as_fd(), &at.shown, mode, owner, true)
    }

    /// Sets the owner of the link at `abs` itself: opened with `O_PATH |
    /// O_NOFOLLOW`, checked to be a link, changed through that descriptor
    /// (so a link swapped for a file meanwhile is refused, not changed).
    pub fn set_link_owner(
        &self,
        abs: impl AsRef<Path>,
        owner: (Option<u32>, Option<u32>),
    ) -> Result<(), Failure> {
        let at = self.at_existing_dir(abs.as_ref())?;
        let u = owner.0.map(uid).transpose()?;
        let g = owner.1.map(gid).transpose()?;
        let fd = rustix::fs::openat(
            at.dir.as_fd(),
            at.name.as_os_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io(&at.shown, e))?;
        let m = meta(&rustix::fs::fstat(&fd).map_err(|e| io(&at.shown, e))?);
        if m.kind != Kind::Symlink {
            return Err(Failure::failed(format!(
                "{} is no longer a symbolic link; refusing to change its owner",
                at.shown.display()
            )));
        }
        rustix::fs::chownat(&fd, "", u, g, AtFlags::EMPTY_PATH).map_err(|e| io(&at.shown, e))
    }

    /// Makes `abs` a link to `target` atomically (a link at a temporary
    /// name in the same directory, renamed over `abs`). The link is written
    /// as given; it is never followed here.
    pub fn symlink(&self, abs: impl AsRef<Path>, target: &str) -> Result<(), Failure> {
        let at = self.at_existing_dir(abs.as_ref())?;
        if lstat_at(at.dir.as_fd(), &at.name, &at.shown)?.is_some_and(|m| m.kind == Kind::Dir) {
            return Err(Failure::failed(format!(
                "{} is a directory; refusing to replace it with a link",
                at.shown.display()
            )));
        }
        let base = at.name.to_string_lossy().into_owned();
        let mut n = 0u32;
        let tmp = loop {
            let tmp = OsString::from(format!(".{base}.mco-link-{}-{n}", std::process::id()));
            match rustix::fs::symlinkat(target, at.dir.as_fd(), tmp.as_os_str()) {
                Ok(()) => break tmp,
                Err(Errno::EXIST) if n < 1000 => n += 1,
                Err(e) => return Err(io(&at.shown, e)),
            }
        };
        if let Err(e) = rustix::fs::renameat(
            at.dir.as_fd(),
            tmp.as_os_str(),
            at.dir.as_fd(),
            at.name.as_os_str(),
        ) {
            let _ = rustix::fs::unlinkat(at.dir.as_fd(), tmp.as_os_str(), AtFlags::empty());
            return Err(io(&at.shown, e));
        }
        fsync_dir(at.dir.as_fd());
        Ok(())
    }

    /// Removes the file or link (`dir` false) or the empty directory
    /// (`dir` true) at `abs`; `false` when nothing was there.
    pub fn remove(&self, abs: impl AsRef<Path>, dir: bool) -> Result<bool, Failure> {
        let Some(at) = self.at(abs.as_ref())? else {
            return Ok(false);
        };
        let flags = if dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        match rustix::fs::unlinkat(at.dir.as_fd(), at.name.as_os_str(), flags) {
            Ok(()) => {
                fsync_dir(at.dir.as_fd());
                Ok(true)
            }
            Err(Errno::NOENT) => Ok(false),
            Err(Errno::NOTEMPTY | Errno::EXIST) => Err(Failure::failed(format!(
                "{} is a directory that is not empty; refusing to remove it",
                at.shown.display()
            ))),
            Err(e) => Err(io(&at.shown, e)),
        }
    }
}

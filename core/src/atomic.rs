//! Writing a file whole or not at all: the one way mco replaces a file on
//! disk (PKI files, pins, caches, the provisioner's journal).
//!
//! [`write_atomic`] always:
//!
//! 1. creates a temporary file in the target's directory with `O_EXCL` and
//!    the final mode from the start (never readable by others for an
//!    instant; the mode is then set exactly, whatever the umask), and gives
//!    it its owner if one was asked for;
//! 2. writes the data and fsyncs the file;
//! 3. moves it into place: a rename, or without clobbering (a rename that
//!    refuses an existing target, or a hard link), so that two writers
//!    cannot both win and an existing file is never replaced between a
//!    check and the write;
//! 4. fsyncs the directory, which makes the move durable.
//!
//! On any failure the temporary file is removed; the target is either the
//! old file, untouched, or the new one, whole.

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// How [`write_atomic`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// The file's permission bits, exactly (the umask does not apply).
    pub mode: u32,
    /// The owning user to give the file (`None`: the writer's).
    pub uid: Option<u32>,
    /// The owning group to give the file (`None`: the writer's).
    pub gid: Option<u32>,
    /// Fail with [`io::ErrorKind::AlreadyExists`] if the target exists,
    /// leaving it untouched.
    pub no_clobber: bool,
}

impl WriteOptions {
    /// Replaces any existing file, giving the new one `mode`.
    pub fn new(mode: u32) -> WriteOptions {
        WriteOptions {
            mode,
            uid: None,
            gid: None,
            no_clobber: false,
        }
    }

    /// Whether to refuse an existing target.
    pub fn no_clobber(mut self, no_clobber: bool) -> WriteOptions {
        self.no_clobber = no_clobber;
        self
    }

    /// Gives the file this owner (either may be `None`: left as created).
    pub fn owner(mut self, uid: Option<u32>, gid: Option<u32>) -> WriteOptions {
        self.uid = uid;
        self.gid = gid;
        self
    }
}

impl Default for WriteOptions {
    /// Private (`0600`), replacing.
    fn default() -> WriteOptions {
        WriteOptions::new(0o600)
    }
}

/// Writes `data` to `path` whole or not at all (see the [module](self)):
/// a temporary sibling created exclusive with `opts.mode`, written, fsynced,
/// moved into place, then the directory fsynced.
pub fn write_atomic(path: &Path, data: &[u8], opts: &WriteOptions) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    // Created with O_EXCL and the mode; removed when dropped unless moved
    // into place.
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(Permissions::from_mode(opts.mode))
        .tempfile_in(&dir)?;
    let file = tmp.as_file_mut();
    if opts.uid.is_some() || opts.gid.is_some() {
        // Before the mode: a change of owner clears set-id bits.
        std::os::unix::fs::fchown(&*file, opts.uid, opts.gid)?;
    }
    file.set_permissions(Permissions::from_mode(opts.mode))?;
    file.write_all(data)?;
    file.sync_all()?;
    if opts.no_clobber {
        tmp.persist_noclobber(path).map_err(|e| e.error)?;
    } else {
        tmp.persist(path).map_err(|e| e.error)?;
    }
    File::open(&dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn the_mode_is_applied_exactly() {
        let dir = tempfile::tempdir().unwrap();
        for m in [0o600, 0o644, 0o640, 0o666, 0o400] {
            let p = dir.path().join(format!("f{m:o}"));
            write_atomic(&p, b"x", &WriteOptions::new(m)).unwrap();
            assert_eq!(mode(&p), m, "{m:o}");
        }
        // Replacing gives the new mode too.
        let p = dir.path().join("f644");
        write_atomic(&p, b"y", &WriteOptions::default()).unwrap();
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn no_clobber_refuses_an_existing_file_and_leaves_it_intact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        let opts = WriteOptions::new(0o600).no_clobber(true);
        write_atomic(&p, b"first", &opts).unwrap();
        fs::set_permissions(&p, Permissions::from_mode(0o640)).unwrap();
        let err = write_atomic(&p, b"second", &opts).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(mode(&p), 0o640);
        // The temporary written before the refusal is gone.
        assert_eq!(names(dir.path()), ["key"]);
    }

    #[test]
    fn an_existing_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pins");
        write_atomic(&p, &[b'a'; 10_000], &WriteOptions::default()).unwrap();
        let old_inode = fs::metadata(&p).unwrap().ino();
        write_atomic(&p, b"short", &WriteOptions::default()).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"short");
        // A new file moved into place, not the old one rewritten.
        assert_ne!(fs::metadata(&p).unwrap().ino(), old_inode);
        assert_eq!(names(dir.path()), ["pins"]);
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A parent that is a file fails even for root.
        let file = dir.path().join("plain");
        fs::write(&file, b"not a directory").unwrap();
        let err = write_atomic(&file.join("x"), b"data", &WriteOptions::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory, "{err}");
        // The move fails: the target is a directory.
        fs::create_dir(dir.path().join("taken")).unwrap();
        fs::write(dir.path().join("taken/inside"), b"kept").unwrap();
        assert!(
            write_atomic(&dir.path().join("taken"), b"data", &WriteOptions::default()).is_err()
        );
        assert_eq!(names(dir.path()), ["plain", "taken"]);
        assert_eq!(fs::read(dir.path().join("taken/inside")).unwrap(), b"kept");
        // No file name at all.
        let err = write_atomic(Path::new("/"), b"", &WriteOptions::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn the_owner_is_given_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        fs::write(&probe, b"").unwrap();
        let me = fs::metadata(&probe).unwrap();
        // Root can give any owner; anyone else can at least name their own.
        let (uid, gid) = if me.uid() == 0 {
            (4321, 4322)
        } else {
            (me.uid(), me.gid())
        };
        let p = dir.path().join("owned");
        let opts = WriteOptions::new(0o640).owner(Some(uid), Some(gid));
        write_atomic(&p, b"x", &opts).unwrap();
        let m = fs::metadata(&p).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (uid, gid, 0o640));
    }
}

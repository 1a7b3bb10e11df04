//! Writing PKI files: whole or not at all, with exact modes, and never replacing a file unless
//! asked to.
//!
//! Files are written by [`mco_core::atomic::write_atomic`]: to a temporary sibling (created with
//! its final mode, so a key is never readable by others even for a moment), flushed to disk, then
//! moved into place and the directory flushed. Without `force` the move refuses an existing
//! target: two writers cannot both win, and an existing file is never clobbered between a check
//! and the write.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use mco_core::atomic::{self, WriteOptions};

use super::PkiError;

/// Mode of private keys.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates, CSRs, CRLs and the index.
pub const PUBLIC_MODE: u32 = 0o644;
/// Mode of a PKI directory this module creates.
pub const DIR_MODE: u32 = 0o700;

/// Wraps an I/O error with its path.
pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and parents) if missing; a directory created here gets mode 0700.
pub fn ensure_dir(dir: &Path) -> Result<(), PkiError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io_err(dir))
}

/// Fails with [`PkiError::Exists`] if `path` exists and `force` is off.
pub fn refuse_existing(path: &Path, force: bool) -> Result<(), PkiError> {
    if !force && fs::symlink_metadata(path).is_ok() {
        return Err(PkiError::Exists {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Writes `data` to `path` with `mode`, atomically; replaces an existing file only if `force`
/// (see [`mco_core::atomic::write_atomic`]).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32, force: bool) -> Result<(), PkiError> {
    let opts = WriteOptions::new(mode).no_clobber(!force);
    atomic::write_atomic(path, data, &opts).map_err(|e| {
        if !force && e.kind() == io::ErrorKind::AlreadyExists {
            PkiError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            io_err(path)(e)
        }
    })
}

/// Replaces a private file of this party (a cache, a pins file): its
/// directory is created 0700 if missing, and the file is written 0600,
/// atomically.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_dir(dir)?;
    }
    write_atomic(path, data, KEY_MODE, true)
}

/// Removes `path`; a missing file is fine.
pub fn remove_if_present(path: &Path) -> Result<(), PkiError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Reads a file as text.
pub fn read_text(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_with_the_exact_mode_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("a.key");
        let cert = dir.path().join("a.pem");
        write_atomic(&key, b"secret", KEY_MODE, false).unwrap();
        write_atomic(&cert, b"public", PUBLIC_MODE, false).unwrap();
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&cert), 0o644);
        assert_eq!(fs::read(&key).unwrap(), b"secret");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn refuses_to_replace_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pem");
        write_atomic(&path, b"one", PUBLIC_MODE, false).unwrap();
        let err = write_atomic(&path, b"two", PUBLIC_MODE, false).unwrap_err();
        assert!(matches!(err, PkiError::Exists { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_atomic(&path, b"two", KEY_MODE, true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn creates_missing_directories_private() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        ensure_dir(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);
    }
}

//! Writing PKI files: whole or not at all, with exact modes, and never replacing a file unless
//! asked to.
//!
//! Each file is written to a temporary sibling (created with its final mode, so a key is never
//! readable by others even for a moment), flushed to disk, then moved into place. Without `force`
//! the move is a hard link, which fails if the target exists: two writers cannot both win, and an
//! existing file is never clobbered between a check and the write.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};

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

/// Writes `data` to `path` with `mode`, atomically; replaces an existing file only if `force`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32, force: bool) -> Result<(), PkiError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = temp_sibling(path);
    let result = write_temp(&tmp, data, mode).and_then(|()| {
        if force {
            fs::rename(&tmp, path).map_err(io_err(path))
        } else {
            let linked = fs::hard_link(&tmp, path);
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(PkiError::Exists {
                    path: path.to_path_buf(),
                }),
                Err(e) => Err(io_err(path)(e)),
            }
        }
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // The rename or link is durable once the directory is flushed too.
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(&dir))
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

fn write_temp(tmp: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(io_err(tmp))?;
    // The umask may have removed bits from `mode`; set it exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(data))
        .and_then(|()| file.sync_all())
        .map_err(io_err(tmp))
}

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{:016x}.tmp", OsRng.next_u64()))
}

#[cfg(test)]
mod tests {
    use super::*;

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

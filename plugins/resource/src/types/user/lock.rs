//! The lock the shadow tools take on an account database (`NAME.lock`),
//! taken the same way when a database is changed natively.

use crate::beneath::Beneath;
use crate::model::Failure;
use crate::system::System;

/// A lock on a system database the way the shadow tools take it: the file
/// `NAME.lock` created exclusively, holding our pid; a lock left by a dead
/// process is broken. Released on drop.
pub(crate) struct FileLock(Beneath, String);

impl FileLock {
    /// Locks `abs` (a path as on the node) under the root.
    pub(crate) fn take(sys: &System, abs: &str) -> Result<FileLock, Failure> {
        let lock = format!("{abs}.lock");
        let fs = sys.fs();
        for attempt in 0..2 {
            if fs.create_new(&lock, std::process::id().to_string().as_bytes(), 0o600)? {
                return Ok(FileLock(fs.clone(), lock));
            }
            if attempt > 0 {
                break;
            }
            // A lock that is not a small regular file (a link, a FIFO) is
            // not read, only reported.
            let pid = fs
                .read(&lock, 64)?
                .and_then(|b| String::from_utf8_lossy(&b).trim().parse::<i32>().ok())
                .filter(|p| *p > 0);
            if let Some(p) = pid.filter(|p| alive(*p)) {
                return Err(Failure::failed(format!(
                    "{} is locked by process {p}",
                    sys.path(abs).display()
                )));
            }
            fs.remove(&lock, false)?;
        }
        Err(Failure::failed(format!(
            "cannot lock {}",
            sys.path(abs).display()
        )))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.0.remove(&self.1, false);
    }
}

fn alive(pid: i32) -> bool {
    // kill(2) with signal 0 only checks that the process exists; one that
    // is not ours to signal exists all the same.
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

//! Running external commands: what every part of mco that starts one (NRPE
//! checks, fact commands, resource providers, bootstrap runs, an external
//! CA signer) needs in the same form.
//!
//! - A command runs in a process group of its own (`process_group(0)` on
//!   the command), so that it and everything it started can be killed at
//!   once: [`kill_group`], or a [`GroupGuard`] that does it when dropped,
//!   which covers a timeout and a caller that gives up alike.
//! - Its output is read to the end, so it never blocks on a full pipe, but
//!   only a bounded head of it is kept ([`read_head`],
//!   [`read_head_blocking`]), so a chatty command cannot fill our memory.
//!
//! Killing a group is a `kill(2)` with a negative pid, which needs `unsafe`
//! for the libc call; it lives here so the crates that run commands need
//! none. So does the one other scheduling call mco makes,
//! [`idle_priority`].

use std::io::Read;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Reads `reader` to its end, keeping the first `keep` bytes. A read error
/// ends it as the end of the stream would: output only explains a result.
/// `None` (a pipe that was not set up) reads as empty.
pub async fn read_head<R: AsyncRead + Unpin>(reader: Option<&mut R>, keep: usize) -> Vec<u8> {
    let mut head = Vec::new();
    let Some(reader) = reader else { return head };
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return head,
            Ok(n) => {
                let room = keep.saturating_sub(head.len());
                head.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// [`read_head`] for a blocking reader (a `std::process` pipe, on a thread
/// of its own).
pub fn read_head_blocking<R: Read>(mut reader: R, keep: usize) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return head,
            Ok(n) => {
                let room = keep.saturating_sub(head.len());
                head.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return head,
        }
    }
}

/// Kills (SIGKILL) the process group whose leader is `pgid`: a command
/// started with `process_group(0)` and everything it started. Call it only
/// while the leader has not been reaped, so that its pid, and the group's,
/// are still ours. Pids 0 and 1 and ones beyond `i32` are ignored.
pub fn kill_group(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid > 1 {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours;
        // the negative pid addresses the process group `pgid` leads.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Moves the calling thread to the idle scheduling class (`SCHED_IDLE` on
/// Linux): it then runs only when no other thread wants the CPU. For
/// background work whose result is only ever an optimisation (the
/// responder's prepared signature nonces). Elsewhere, and if the call
/// fails, the thread keeps its priority.
pub fn idle_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 names the calling thread; `param` is a valid
        // sched_param that outlives the call, which only reads it.
        #[allow(unsafe_code)]
        let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    }
}

/// Kills a command's process group when dropped, unless disarmed first:
/// arm it right after the spawn, disarm it once the leader has been reaped.
#[derive(Debug)]
pub struct GroupGuard(Option<u32>);

impl GroupGuard {
    /// Guards the group led by `pid` (`None`: nothing to guard).
    pub fn new(pid: Option<u32>) -> GroupGuard {
        GroupGuard(pid)
    }

    /// The leader was reaped: its pid may be reused, so the group is no
    /// longer ours to kill.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            kill_group(pgid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn keeps_the_head_and_drains_the_rest() {
        // 1 MiB: far more than a pipe holds, so the writer finishes only if
        // everything is read.
        let mut child = tokio::process::Command::new("/bin/sh")
            .args(["-c", "head -c 1048576 /dev/zero | tr '\\0' x"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take();
        let head = read_head(out.as_mut(), 100).await;
        assert_eq!(head, vec![b'x'; 100]);
        assert!(child.wait().await.unwrap().success());
        assert!(read_head::<tokio::process::ChildStdout>(None, 10)
            .await
            .is_empty());
    }

    #[test]
    fn blocking_reads_keep_the_head_too() {
        let data = vec![7u8; 100_000];
        assert_eq!(read_head_blocking(&data[..], 10), vec![7u8; 10]);
        assert_eq!(read_head_blocking(&data[..5], 10), vec![7u8; 5]);
    }

    /// Whether `pid` is still a process (a zombie counts until reaped).
    fn alive(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[tokio::test]
    async fn a_dropped_guard_kills_the_whole_group() {
        // The shell starts a grandchild and waits; both are in the group.
        let mut child = tokio::process::Command::new("/bin/sh")
            .args(["-c", "sleep 300 & echo $!; wait"])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while out.read(&mut byte).await.unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let grandchild: u32 = String::from_utf8(line).unwrap().trim().parse().unwrap();
        assert!(alive(grandchild));
        drop(GroupGuard::new(child.id()));
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("the shell was killed")
            .unwrap();
        assert!(!status.success());
        // The grandchild is reparented and reaped by init once killed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(grandchild) && !is_zombie(grandchild) {
            assert!(Instant::now() < deadline, "the grandchild survived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn is_zombie(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    }

    #[test]
    fn a_disarmed_guard_kills_nothing() {
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .unwrap();
        let mut guard = GroupGuard::new(Some(child.id()));
        guard.disarm();
        drop(guard);
        assert!(child.try_wait().unwrap().is_none(), "still running");
        kill_group(child.id());
        assert!(!child.wait().unwrap().success());
        kill_group(0);
        kill_group(1);
        kill_group(u32::MAX);
    }
}

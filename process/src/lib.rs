//! Running external commands: what every part of mco that starts one (NRPE
//! checks, fact commands, resource providers, bootstrap runs, an external
//! CA signer, provisioner notifiers) needs, in one form: [`run`] (and
//! [`run_blocking`] for a caller on a plain thread).
//!
//! - A command runs in a process group of its own, so that it and
//!   everything it started can be killed at once: at its timeout, or when
//!   the caller gives up on it (the future is dropped).
//! - Its outputs are read to the end, so it never blocks on a full pipe, but
//!   only a bounded head of each is kept, so a chatty command cannot fill
//!   our memory.
//! - The group is killed before the command is reaped, never after: once
//!   reaped, its pid (the group's id) may belong to someone else.
//!
//! Signals go through `rustix`; the one `unsafe` call left is
//! [`idle_priority`]'s `sched_setscheduler`, which `rustix` does not offer.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod run;

pub use run::{run, run_blocking, Cmd, Finished, Limits, RunError};

use rustix::process::{kill_process_group, Pid, Signal};

/// Kills (SIGKILL) the process group whose leader is `pgid`: a command
/// started in a group of its own and everything it started. Call it only
/// while the leader has not been reaped, so that its pid, and the group's,
/// are still ours. Pids 0 and 1 and ones beyond `i32` are ignored.
pub fn kill_group(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid > 1 {
        if let Some(pid) = Pid::from_raw(pgid) {
            // A group that is already gone is what we wanted.
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

/// Moves the calling thread to the idle scheduling class (`SCHED_IDLE` on
/// Linux): it then runs only when no other thread wants the CPU. For
/// background work whose result is only ever an optimisation (the
/// responder's prepared signature nonces). Elsewhere, and if the call
/// fails, the thread keeps its priority.
///
/// The one `unsafe` block in mco: `rustix` has no `sched_setscheduler`.
#[allow(unsafe_code)]
pub fn idle_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 names the calling thread; `param` is a valid
        // sched_param that outlives the call, which only reads it.
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
mod tests;

//! The responder process's own life: re-executing itself after
//! `provision restart`. Per-identity paths (`{identity}` in a config path)
//! are [`mco_core::config::for_identity`].

/// Replaces this process with a fresh run of the same binary and arguments;
/// returns only if that failed (and says so in the log).
pub fn reexec() {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("restart: cannot find our own binary: {e}");
            return;
        }
    };
    tracing::warn!("restarting: re-executing {}", exe.display());
    let err = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .exec();
    tracing::error!("restart: exec {} failed: {err}", exe.display());
}

//! `mco provision …` and `mco classify …`: the provisioner is its own
//! program, `mco-provisioner`, found beside `mco` (or on `PATH`); these
//! verbs run it in `mco`'s place with the arguments given. Its `--config`
//! is the provisioner's file: `mco`'s client config (`MCO_CONFIG`) is
//! neither passed nor read.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use crate::error::ClientError;

use super::Exit;

/// The `mco-provisioner` program: beside the running `mco`, else on `PATH`.
pub fn program() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("mco-provisioner")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("mco-provisioner"))
}

/// Replaces this process with `mco-provisioner [verb] args…`; returns only
/// if it cannot be started.
pub fn exec(verb: Option<&str>, args: &[OsString]) -> Result<Exit, ClientError> {
    let program = program();
    let mut cmd = std::process::Command::new(&program);
    cmd.args(verb).args(args);
    let err = cmd.exec();
    Err(ClientError::Io(format!(
        "cannot run {}: {err} (the provisioner is installed as mco-provisioner)",
        program.display()
    )))
}

//! Client errors, with the exit code each maps to.

use mco_core::config::ConfigErrors;
use mco_core::ddl::DdlError;
use mco_core::FilterError;

/// Everything that can stop a verb before or while it talks to the bus.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Wrong arguments.
    #[error("{0}")]
    Usage(String),
    /// A filter that does not parse; shown with a caret under the column.
    #[error("{0}\n{ptr}", ptr = .0.pointer())]
    Filter(#[from] FilterError),
    /// A bad config file.
    #[error("bad configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    /// A DDL that does not load.
    #[error("bad DDL: {0}")]
    Ddl(#[from] DdlError),
    /// No broker reachable.
    #[error("cannot connect to the broker at {servers}: {message}")]
    Connect {
        /// The URLs tried.
        servers: String,
        /// Why.
        message: String,
    },
    /// The bus failed mid-request.
    #[error("the bus failed: {0}")]
    Bus(String),
    /// Our key, certificate or the CA could not be used.
    #[error("{0}")]
    Security(String),
    /// A local I/O problem (a nodes file, stdin).
    #[error("{0}")]
    Io(String),
}

impl ClientError {
    /// The process exit code: 64 for usage and configuration, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_)
            | ClientError::Filter(_)
            | ClientError::Config(_)
            | ClientError::Ddl(_) => 64,
            _ => 1,
        }
    }
}

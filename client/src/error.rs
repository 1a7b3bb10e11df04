//! Client errors, their kinds, and the one place kinds become exit codes.

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
    #[error("cannot connect to the broker at {servers}: {source}")]
    Connect {
        /// The URLs tried.
        servers: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The bus failed mid-request.
    #[error("the bus failed {what}: {source}")]
    Bus {
        /// What was being done (`publishing the request`, …).
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The broker or a node did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// Nobody answered who was asked (or nobody was found to ask).
    #[error("{0}")]
    NoResponders(String),
    /// Our key, certificate, the CA or a pin could not be used, or what came
    /// back failed verification.
    #[error("{0}")]
    Verification(String),
    /// A local I/O problem without an underlying error of its own.
    #[error("{0}")]
    Io(String),
    /// A local file or stream could not be read or written.
    #[error("{what}: {source}")]
    File {
        /// Which file or stream, and what for.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What kind of failure a [`ClientError`] is: what a caller matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The command line was wrong (arguments, a filter, inputs).
    Usage,
    /// A configuration file or a DDL is wrong.
    Config,
    /// The broker could not be reached, or the connection failed.
    Connection,
    /// Something did not happen within its time.
    Timeout,
    /// Nobody answered.
    NoResponders,
    /// Credentials, trust or a reply's signature.
    Verification,
    /// A local file or stream.
    Io,
}

impl ClientError {
    /// The bus failed while doing `what`.
    pub fn bus(what: &str, source: impl std::error::Error + Send + Sync + 'static) -> ClientError {
        ClientError::Bus {
            what: what.to_string(),
            source: Box::new(source),
        }
    }

    /// `what` (a file or stream) could not be read or written.
    pub fn file(what: impl Into<String>, source: std::io::Error) -> ClientError {
        ClientError::File {
            what: what.into(),
            source,
        }
    }

    /// This error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Usage(_) | ClientError::Filter(_) => ErrorKind::Usage,
            ClientError::Config(_) | ClientError::Ddl(_) => ErrorKind::Config,
            ClientError::Connect { .. } | ClientError::Bus { .. } => ErrorKind::Connection,
            ClientError::Timeout(_) => ErrorKind::Timeout,
            ClientError::NoResponders(_) => ErrorKind::NoResponders,
            ClientError::Verification(_) => ErrorKind::Verification,
            ClientError::Io(_) | ClientError::File { .. } => ErrorKind::Io,
        }
    }

    /// The process exit code: 64 for usage and configuration, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }
}

impl ErrorKind {
    /// The process exit code of a verb that failed this way: 64 (`EX_USAGE`)
    /// when the operator must change what they typed or configured, 1 for
    /// everything that happened on the way.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Usage | ErrorKind::Config => 64,
            ErrorKind::Connection
            | ErrorKind::Timeout
            | ErrorKind::NoResponders
            | ErrorKind::Verification
            | ErrorKind::Io => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_exit_code() {
        let cases = [
            (ClientError::Usage("x".into()), ErrorKind::Usage, 64),
            (
                ClientError::bus("publishing", std::io::Error::other("x")),
                ErrorKind::Connection,
                1,
            ),
            (
                ClientError::file("--nodes f", std::io::Error::other("x")),
                ErrorKind::Io,
                1,
            ),
            (ClientError::Timeout("x".into()), ErrorKind::Timeout, 1),
            (
                ClientError::NoResponders("x".into()),
                ErrorKind::NoResponders,
                1,
            ),
            (
                ClientError::Verification("x".into()),
                ErrorKind::Verification,
                1,
            ),
            (ClientError::Io("x".into()), ErrorKind::Io, 1),
        ];
        for (e, kind, code) in cases {
            assert_eq!((e.kind(), e.exit_code()), (kind, code), "{e}");
        }
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = ClientError::Connect {
            servers: "nats://x".into(),
            source: Box::new(io),
        };
        assert_eq!(e.kind(), ErrorKind::Connection);
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(
            e.to_string(),
            "cannot connect to the broker at nats://x: refused"
        );
    }
}

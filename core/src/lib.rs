//! mco-core: the small interface crate every mco component stands on.
//!
//! It holds what both ends of the bus must agree on — the wire envelope and
//! subjects, filters and the compound-filter language, the facts model, the
//! DDL and input validation, configuration files — and the [`agent::Agent`]
//! trait that plugins implement. It opens no sockets, spawns no tasks and
//! holds no cryptography (that is `mco-security` and `mco-pki`), so an agent
//! plugin can depend on it alone, compile quickly and stay swappable.

#![forbid(unsafe_code)]

pub mod agent;
pub mod atomic;
pub mod backoff;
pub mod binding;
pub mod classification;
pub mod config;
pub mod ddl;
pub mod facts;
pub mod filter;
pub mod inventory;
pub mod limits;
pub mod logline;
pub mod provisioning;
pub mod subject;
pub mod wire;

pub use agent::{ActionError, ActionResult, Agent, NodeInfo, Outputs, RequestContext};
pub use binding::Target;
pub use ddl::Ddl;
pub use filter::{Filter, FilterError};
pub use wire::{Envelope, Kind, ReplyBody, RequestBody, Status};

/// This build's version, reported by `rpcutil` and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

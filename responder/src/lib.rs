//! mco-responder: the responder, the daemon every managed node runs.
//!
//! It connects to NATS, keeps the node's facts and classes fresh, listens on
//! its node subject and its agents' broadcast subjects, and answers requests
//! whose filter selects it. The key decision is that the subscription loop
//! never waits on an action: it decodes, filters and hands each request to a
//! task holding one of a bounded number of slots, so a slow agent makes the
//! node answer `busy`, never stall or queue without bound.

#![forbid(unsafe_code)]

pub mod audit;
pub mod crl_watch;
pub mod daemon;
pub mod dispatch;
pub mod facts;
pub mod fleet;
pub mod hosted;
pub mod inventory;
pub mod lifecycle;
pub mod node;
pub mod provisioning;
pub mod security;
pub mod serve;
pub mod stats;

pub use daemon::{preflight, run, DaemonError, Options};

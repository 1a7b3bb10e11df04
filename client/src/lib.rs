//! mco-client: the `mco` command line client.
//!
//! A verb runs in two stages: first its arguments are resolved into a checked
//! plan — filter compiled, inputs coerced and validated against the DDL — so
//! that nothing malformed ever reaches the bus; then it discovers, sends
//! directly to each expected node, and waits exactly until every one of them
//! has answered or the timeout passes.

#![forbid(unsafe_code)]

pub mod bus;
pub mod cli;
pub mod commands;
pub mod config;
pub mod crl_watch;
pub mod ddls;
pub mod discovery;
pub mod error;
pub mod inventory;
pub mod nrpe;
pub mod output;
pub mod pins;
pub mod retry;
pub mod rpc;
pub mod senders;
pub mod session;
pub mod target;
pub mod terminal;
pub mod verify;

pub use error::ClientError;

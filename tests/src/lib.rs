//! Test support for mco's end-to-end tests: a real `nats-server`, real `mco-responder` processes
//! and the real `mco` binary, never a mocked bus.
//!
//! The key decision is that every external thing a test starts is owned by a guard value
//! ([`NatsServer`], [`ChildGuard`]) that kills and reaps it in `Drop`, so a failing test leaves no
//! process behind, and that every wait is a poll with a deadline ([`eventually`]) rather than a
//! sleep. Ports are picked free at run time and state lives in temporary directories, so tests run
//! in parallel without touching the caller's environment.
//!
//! - [`nats`]: [`NatsServer`], started on a free loopback port, restartable on the same port.
//! - [`proc`]: [`bin_path`] to find the workspace binaries, [`ChildGuard`] to own a process.
//! - [`cmd`]: [`mco`] / [`Cmd`] to run a command to completion and assert on its [`Output`].
//! - [`poll`]: [`eventually`] and [`eventually_async`].
//! - [`secure`]: [`SecureCollective`], a CA made with `mco pki`, a TLS broker and signing
//!   responders.
//!
//! A typical end-to-end test:
//!
//! ```no_run
//! use std::process::Command;
//! use std::time::Duration;
//! use mco_tests::{bin_path, eventually, mco, ChildGuard, NatsServer};
//!
//! let nats = NatsServer::start();
//! let mut cmd = Command::new(bin_path("mco-responder"));
//! cmd.args(["--config", "responder.toml", "--nats", &nats.url()]);
//! let responder = ChildGuard::spawn(cmd);
//! eventually(Duration::from_secs(10), "the responder to come up", || {
//!     responder.stderr_text().contains("ready")
//! });
//! mco(["ping", "--nats", &nats.url()]).assert_success();
//! ```

#![forbid(unsafe_code)]

pub mod cluster;
pub mod cmd;
pub mod fleet;
pub mod nats;
pub mod netns;
pub mod poll;
pub mod proc;
pub mod provisioning;
pub mod replies;
pub mod secure;

pub use cluster::{SecureCluster, SecureClusterBuilder};
pub use cmd::{mco, Cmd, Output};
pub use fleet::{wait_for_nodes, Responder, ResponderSpec};
pub use nats::{NatsServer, NatsServerBuilder};
pub use netns::Netns;
pub use poll::{eventually, eventually_async};
pub use proc::{bin_path, ChildGuard, ProcStat};
pub use secure::{tls_connect, SecureCollective, SecureCollectiveBuilder, TlsClient};

//! mco-provisioner: the provisioning service.
//!
//! A freshly booted node runs its responder in provisioning mode, in the
//! `provisioning` collective on a broker reached with the bootstrap token.
//! The provisioner finds it (discovery every interval, and the node's own
//! announcement), and takes it through the steps of [`step::Step`]: lock,
//! inventory, the expected check, a master, a certificate signed by the
//! collective's CA, configuration (with its classification), bootstrap
//! runs, a restart into the fleet and the confirmation that it answers
//! there. Every outcome goes to the notifiers.
//!
//! Its parts: the service and its loop ([`service`]), one attempt
//! ([`attempt`]) and its steps ([`steps`]) with the step machine's rules
//! ([`step`]), the expected check ([`expected`], [`registry`],
//! [`classify`]), choosing a master ([`masters`]), the journal that lets it
//! resume without signing twice ([`state`]), telling someone ([`notify`], [`webhook`]),
//! its counters ([`metrics`]), its config ([`config`]) and the operator's
//! verbs ([`admin`]).

#![forbid(unsafe_code)]

pub mod admin;
mod announce;
pub mod attempt;
mod calls;
pub mod choose;
pub mod classify;
pub mod cli;
pub mod config;
pub mod expected;
pub mod masters;
pub mod metrics;
pub mod notify;
pub mod registry;
pub mod service;
pub mod state;
pub mod step;
mod steps;
pub mod webhook;

use std::future::Future;

use mco_client::error::ClientError;

pub use config::ProvisionerConfig;
pub use service::Provisioner;

/// Runs the provisioner with `cfg` until `shutdown` resolves, then lets the
/// steps in flight finish within `shutdown_grace` (see
/// [`Provisioner::serve`]).
pub async fn run(
    cfg: ProvisionerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ClientError> {
    let p = Provisioner::start(cfg).await?;
    p.serve(shutdown).await;
    Ok(())
}

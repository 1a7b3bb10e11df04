//! The provisioner: finds unprovisioned nodes in the provisioning
//! collective and turns each into a signed, configured fleet member.
//!
//! Its parts: the service and its steps ([`run`]), its config
//! ([`config`]), choosing a master ([`masters`]), the journal that lets it
//! resume without signing twice ([`state`]), telling someone ([`notify`])
//! and its counters ([`metrics`]).

mod announce;
pub mod config;
pub mod masters;
pub mod metrics;
pub mod notify;
pub mod registry;
pub mod run;
pub mod state;

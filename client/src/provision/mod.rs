//! The provisioner: finds unprovisioned nodes in the provisioning
//! collective and turns each into a signed, configured fleet member.
//!
//! Its parts: choosing a master ([`masters`]), the journal that lets it
//! resume without signing twice ([`state`]), telling someone
//! ([`notify`]) and its counters ([`metrics`]).

pub mod masters;
pub mod metrics;
pub mod notify;
pub mod state;

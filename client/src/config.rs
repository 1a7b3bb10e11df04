//! Finding and loading the client's config.

use std::path::{Path, PathBuf};

use mco_core::config::{expand_home, ClientConfig};

use crate::error::ClientError;

/// Loads `explicit` if given (it must exist), else the first existing of
/// `~/.config/mco/client.toml` and `/etc/mco/client.toml`, else defaults.
pub fn load(explicit: Option<&Path>, nats: &[String]) -> Result<ClientConfig, ClientError> {
    let mut cfg = match explicit {
        Some(p) => ClientConfig::load(p)?,
        None => {
            let candidates = [
                expand_home("~/.config/mco/client.toml"),
                PathBuf::from("/etc/mco/client.toml"),
            ];
            match candidates.iter().find(|p| p.is_file()) {
                Some(p) => ClientConfig::load(p)?,
                None => ClientConfig::defaults(),
            }
        }
    };
    if !nats.is_empty() {
        cfg.nats.servers = nats.to_vec();
    }
    Ok(cfg)
}

//! Configuration files: the responder's (`ResponderConfig::from_toml`,
//! with the nrpe agent's `[plugin.nrpe]` table, `NrpeConfig::from_table`),
//! the client's (`ClientConfig::from_toml`), the provisioner's
//! (`ProvisionerConfig::from_toml`) and durations (`parse_duration`).
//!
//! The first byte picks the file; the rest is its text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mco_core::config::{parse_duration, ClientConfig, ResponderConfig};
use mco_fuzz::on_worker_stack;
use mco_plugin_nrpe::NrpeConfig;
use mco_provisioner::config::ProvisionerConfig;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    on_worker_stack(|| check(which, text));
});

fn check(which: u8, text: &str) {
    let path = Path::new("/etc/mco/fuzz.toml");
    match which % 4 {
        0 => {
            if let Ok(cfg) = ResponderConfig::from_toml(path, text) {
                if let Some(t) = cfg.plugin.get("nrpe") {
                    let _ = NrpeConfig::from_table(t, path);
                }
            }
        }
        1 => {
            let _ = ClientConfig::from_toml(path, text);
        }
        2 => {
            let _ = ProvisionerConfig::from_toml(path, text);
        }
        _ => {
            if let Ok(d) = parse_duration(text) {
                // A duration prints as something that parses back to it.
                let again = parse_duration(&format!("{}ms", d.as_millis()));
                if d.subsec_nanos() % 1_000_000 == 0 {
                    assert_eq!(again, Ok(d), "{text:?}");
                }
            }
        }
    }
}

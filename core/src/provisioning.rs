//! The responder's `[provisioning]` table: how a node with no certificate yet
//! joins the provisioning broker, and where its provisioning state lives.
//!
//! It lives in core beside the rest of the config because three parties read
//! it: the responder (whether to start in provisioning mode), the `provision`
//! agent (token, state directory, bootstrap command, hosts file) and the
//! provisioner's tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Table;

use crate::config::{Reader, SecurityConfig};

/// The collective a node in provisioning mode joins, and only that one.
pub const PROVISIONING_COLLECTIVE: &str = "provisioning";

/// File names under `state_dir`.
pub mod files {
    /// The node's provisioning-mode signing key (0600).
    pub const NODE_KEY: &str = "node.key";
    /// The lock: JSON `{owner, expires}`.
    pub const LOCK: &str = "lock.json";
    /// The chosen master: JSON `{name, address}`.
    pub const MASTER: &str = "master.json";
    /// Present once provisioning is disabled for good.
    pub const DISABLED: &str = "disabled";
    /// Where `gencsr` keeps the certificate key and CSR.
    pub const CSR_DIR: &str = "csr";
    /// Where `configure` writes certificates when `[security]` names no paths.
    pub const SSL_DIR: &str = "ssl";
    /// Written by `configure` once the node's files and config are in place.
    pub const CONFIGURED: &str = "configured";
    /// A virtual node's own normal-mode config, written by `configure` in a
    /// `--fleet` responder (whose virtual nodes share one config file).
    pub const NODE_CONFIG: &str = "responder.toml";
}

/// `[provisioning]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisioningConfig {
    /// `Some(true)`: always provision; `Some(false)`: never; `None` (the
    /// default): provision while the `[security]` cert or key file is missing.
    pub enabled: Option<bool>,
    /// The provisioning broker's URLs (not `[nats] servers`).
    pub servers: Vec<String>,
    /// The bootstrap token; every `provision` action must present it, and
    /// it is the NATS token on the provisioning broker.
    pub token_file: Option<PathBuf>,
    /// The CA certificate shipped in the image: it checks the provisioner's
    /// requests and, for `tls://` URLs, the broker's certificate.
    pub ca: Option<PathBuf>,
    /// Node key, CSR, lock, master and the disabled marker.
    pub state_dir: PathBuf,
    /// The bootstrap command as an argv (no shell), e.g.
    /// `["puppet", "agent", "--test", "--environment", "bootstrap", "--detailed-exitcodes"]`.
    pub bootstrap_command: Vec<String>,
    /// The final run after the bootstrap run (`run phase=final`), e.g.
    /// `["puppet", "agent", "--test", "--detailed-exitcodes"]`; none by default.
    pub final_command: Vec<String>,
    /// How long the bootstrap (or final) command may run.
    pub bootstrap_timeout: Duration,
    /// The hosts file `set_master` edits.
    pub hosts_file: PathBuf,
    /// Most time `restart` waits (a random part of it) before re-executing.
    pub splay: Duration,
}

impl Default for ProvisioningConfig {
    fn default() -> Self {
        ProvisioningConfig {
            enabled: None,
            servers: Vec::new(),
            token_file: None,
            ca: None,
            state_dir: PathBuf::from("/var/lib/mco/provisioning"),
            bootstrap_command: Vec::new(),
            final_command: Vec::new(),
            bootstrap_timeout: Duration::from_secs(600),
            hosts_file: PathBuf::from("/etc/hosts"),
            splay: Duration::from_secs(0),
        }
    }
}

impl ProvisioningConfig {
    /// The keys `[provisioning]` knows.
    pub const KEYS: &'static [&'static str] = &[
        "enabled",
        "servers",
        "token_file",
        "ca",
        "state_dir",
        "bootstrap_command",
        "final_command",
        "bootstrap_timeout",
        "hosts_file",
        "splay",
    ];

    /// Reads `[provisioning]`, reporting unknown and bad keys on `r`.
    pub fn read(r: &mut Reader, t: &Table) -> ProvisioningConfig {
        let p = "provisioning";
        r.unknown(t, p, Self::KEYS);
        let d = ProvisioningConfig::default();
        let servers = r.strings(t, p, "servers").unwrap_or_default();
        let token_file = r.path(t, p, "token_file");
        let ca = r.path(t, p, "ca");
        let enabled = r.boolean(t, p, "enabled");
        if enabled != Some(false) {
            if servers.is_empty() {
                r.error("provisioning.servers", "needs at least one broker URL");
            }
            if token_file.is_none() {
                r.error("provisioning.token_file", "is required");
            }
            if ca.is_none() {
                r.error("provisioning.ca", "is required (the CA certificate)");
            }
        }
        let bootstrap_command = r.strings(t, p, "bootstrap_command").unwrap_or_default();
        ProvisioningConfig {
            enabled,
            servers,
            token_file,
            ca,
            state_dir: r.path(t, p, "state_dir").unwrap_or(d.state_dir),
            bootstrap_command,
            final_command: r.strings(t, p, "final_command").unwrap_or_default(),
            bootstrap_timeout: r
                .duration(t, p, "bootstrap_timeout")
                .unwrap_or(d.bootstrap_timeout),
            hosts_file: r.path(t, p, "hosts_file").unwrap_or(d.hosts_file),
            splay: r.duration(t, p, "splay").unwrap_or(d.splay),
        }
    }

    /// A file under `state_dir`.
    pub fn state_file(&self, name: &str) -> PathBuf {
        self.state_dir.join(name)
    }

    /// Whether provisioning was disabled for good on this node.
    pub fn is_disabled(&self) -> bool {
        self.state_file(files::DISABLED).exists()
    }

    /// Whether a responder with `security` starts in provisioning mode: not
    /// disabled, and either `enabled = true` or (unset) its certificate or
    /// key file does not exist yet.
    pub fn active(&self, security: &SecurityConfig) -> bool {
        if self.enabled == Some(false) || self.is_disabled() {
            return false;
        }
        self.enabled == Some(true) || !has_file(&security.cert) || !has_file(&security.key)
    }

    /// Reads the token file, trimmed of surrounding whitespace.
    pub fn read_token(&self) -> std::io::Result<String> {
        let path = self.token_file.as_deref().unwrap_or(Path::new(""));
        Ok(std::fs::read_to_string(path)?.trim().to_string())
    }
}

fn has_file(p: &Option<PathBuf>) -> bool {
    p.as_deref().is_some_and(Path::exists)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ResponderConfig;

    #[test]
    fn reads_every_key_and_reports_unknown_ones() {
        let text = r#"
[provisioning]
servers = ["tls://prov:4222"]
token_file = "/etc/mco/token"
ca = "/etc/mco/ca.pem"
state_dir = "/var/lib/x"
bootstrap_command = ["puppet", "agent", "--test"]
final_command = ["puppet", "agent", "--test", "--environment", "production"]
bootstrap_timeout = "5m"
hosts_file = "/tmp/hosts"
splay = "3s"
"#;
        let cfg = ResponderConfig::from_toml(Path::new("r.toml"), text).unwrap();
        let p = cfg.provisioning.unwrap();
        assert_eq!(p.enabled, None);
        assert_eq!(p.servers, vec!["tls://prov:4222"]);
        assert_eq!(p.bootstrap_command, vec!["puppet", "agent", "--test"]);
        assert_eq!(p.final_command.len(), 5);
        assert_eq!(p.bootstrap_timeout, Duration::from_secs(300));
        assert_eq!(p.splay, Duration::from_secs(3));
        assert_eq!(p.hosts_file, PathBuf::from("/tmp/hosts"));

        let bad = "[provisioning]\nenabled = true\nservrs = []\n";
        let err = ResponderConfig::from_toml(Path::new("r.toml"), bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("provisioning.servrs: unknown key"), "{err}");
        assert!(err.contains("provisioning.servers: needs"), "{err}");
        assert!(
            err.contains("provisioning.token_file: is required"),
            "{err}"
        );
    }

    #[test]
    fn active_follows_enabled_files_and_the_disabled_marker() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("node.pem");
        let sec = SecurityConfig {
            cert: Some(cert.clone()),
            key: Some(cert.clone()),
            ..Default::default()
        };
        let mut p = ProvisioningConfig {
            state_dir: dir.path().join("state"),
            ..Default::default()
        };
        assert!(p.active(&sec), "no certificate yet");
        std::fs::write(&cert, "x").unwrap();
        assert!(!p.active(&sec), "certificate present");
        p.enabled = Some(true);
        assert!(p.active(&sec));
        std::fs::create_dir_all(&p.state_dir).unwrap();
        std::fs::write(p.state_file(files::DISABLED), "").unwrap();
        assert!(!p.active(&sec), "disabled for good");
    }
}

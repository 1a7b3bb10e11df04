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

/// The longest provisioning lock a node grants, seconds: a lock always
/// expires, so a provisioner that dies (or one that means harm) cannot keep
/// a node for ever.
pub const MAX_LOCK_EXPIRY_S: u64 = 86_400;

/// The NATS user the bootstrap token authenticates as on the provisioning
/// broker (the token is its password).
pub const BROKER_USER: &str = "provisioning";

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
    /// The classes of the node's classification, one per line.
    pub const CLASSES: &str = "classification.classes";
    /// The parameters of the node's classification, as a JSON fact file.
    pub const CLASS_FACTS: &str = "classification.json";
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
    /// Which brokers `configure` may point the node at: patterns of
    /// `HOST[:PORT]` (`*` matches any run of host characters; the port
    /// defaults to 4222). Empty (the default): any `tls://` or `nats://`
    /// broker, which the node reaches only over TLS, checked against the
    /// shipped CA and with its new certificate (see [`check_fleet_servers`]).
    pub allowed_servers: Vec<String>,
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
            allowed_servers: Vec::new(),
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
        "allowed_servers",
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
            // The bootstrap token is the broker's password: it must never
            // travel in clear.
            for url in &servers {
                if !url.starts_with("tls://") {
                    r.error(
                        "provisioning.servers",
                        format!(
                            "{url:?} is not a tls:// URL: the bootstrap token would travel in clear; \
                             the provisioning broker must be reached over TLS"
                        ),
                    );
                }
            }
        }
        let allowed_servers = r.strings(t, p, "allowed_servers").unwrap_or_default();
        for pattern in &allowed_servers {
            if let Err(e) = parse_server_pattern(pattern) {
                r.error("provisioning.allowed_servers", format!("{pattern:?}: {e}"));
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
            allowed_servers,
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

    /// Why a responder with `security` must not start at all: the node was
    /// provisioned before (the `configured` marker is in `state_dir`) but its
    /// certificate or key file is gone. Such a node does not fall back into
    /// provisioning mode on its own — that would hand an established node
    /// to whoever holds the bootstrap token. The operator decides: restore
    /// the files, or remove the marker to provision the node again.
    /// `None` when `enabled` is set either way (an explicit choice), when
    /// provisioning is disabled, or when nothing is missing.
    pub fn lost_certificate(&self, security: &SecurityConfig) -> Option<String> {
        if self.enabled.is_some() || self.is_disabled() {
            return None;
        }
        let marker = self.state_file(files::CONFIGURED);
        if !marker.exists() {
            return None;
        }
        let missing: Vec<String> = [&security.cert, &security.key]
            .into_iter()
            .filter(|p| !has_file(p))
            .map(|p| match p {
                Some(p) => p.display().to_string(),
                None => "(not configured)".to_string(),
            })
            .collect();
        if missing.is_empty() {
            return None;
        }
        Some(format!(
            "this node was provisioned ({} exists) but its certificate or key is missing: {}. \
             It does not fall back into provisioning mode by itself: restore the files, or \
             remove {} to provision this node again",
            marker.display(),
            missing.join(", "),
            marker.display()
        ))
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

/// The port a broker URL without one uses.
pub const DEFAULT_BROKER_PORT: u16 = 4222;

/// Most broker URLs `configure` accepts.
pub const MAX_FLEET_SERVERS: usize = 16;

/// A broker address: host (a DNS name, an IPv4 address or a bracketed IPv6
/// address) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// The host, as written (IPv6 in brackets).
    pub host: String,
    /// The port.
    pub port: u16,
}

fn host_ok(host: &str, wildcard: bool) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !wildcard && inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || (wildcard && c == '*'))
}

fn split_host_port(s: &str, wildcard: bool) -> Result<BrokerAddress, String> {
    let (host, port) = if s.starts_with('[') {
        match s.find(']') {
            Some(end) => match &s[end + 1..] {
                "" => (&s[..=end], None),
                rest => match rest.strip_prefix(':') {
                    Some(p) => (&s[..=end], Some(p)),
                    None => return Err("junk after the IPv6 address".into()),
                },
            },
            None => return Err("an unclosed '['".into()),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if !host_ok(host, wildcard) {
        return Err(format!("{host:?} is not a host name or address"));
    }
    let port = match port {
        None => DEFAULT_BROKER_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("{p:?} is not a port")),
        },
    };
    Ok(BrokerAddress {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// Parses a broker URL a node may be configured with: `tls://HOST[:PORT]`
/// or `nats://HOST[:PORT]` (a node in normal mode always connects over TLS,
/// checks the broker against its CA and presents its certificate, so both
/// schemes mean TLS), with nothing else — no user or password, no path.
pub fn parse_fleet_server(url: &str) -> Result<BrokerAddress, String> {
    let rest = url
        .strip_prefix("tls://")
        .or_else(|| url.strip_prefix("nats://"))
        .ok_or_else(|| format!("{url:?}: only tls:// and nats:// broker URLs are accepted"))?;
    if rest.contains(['@', '/', '?', '#']) {
        return Err(format!(
            "{url:?}: a broker URL carries a host and a port only (no credentials or path)"
        ));
    }
    split_host_port(rest, false).map_err(|e| format!("{url:?}: {e}"))
}

/// Parses an `allowed_servers` pattern: `HOST[:PORT]`, `*` in the host
/// matching any run of host characters (an optional `tls://` or `nats://`
/// prefix is accepted and ignored: both mean TLS).
pub fn parse_server_pattern(pattern: &str) -> Result<BrokerAddress, String> {
    let rest = pattern
        .strip_prefix("tls://")
        .or_else(|| pattern.strip_prefix("nats://"))
        .unwrap_or(pattern);
    split_host_port(rest, true)
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters
/// (iterative, linear in practice; no recursion).
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Checks the broker URLs `configure` was given against `allowed` (the
/// `allowed_servers` patterns; empty allows any well-formed URL): each URL
/// must parse with [`parse_fleet_server`] and, when patterns are set,
/// match one of them by host and port. At least one, at most
/// [`MAX_FLEET_SERVERS`].
pub fn check_fleet_servers(servers: &[String], allowed: &[String]) -> Result<(), String> {
    if servers.is_empty() {
        return Err("no broker URL given".into());
    }
    if servers.len() > MAX_FLEET_SERVERS {
        return Err(format!(
            "{} broker URLs given; at most {MAX_FLEET_SERVERS} are accepted",
            servers.len()
        ));
    }
    let patterns: Vec<BrokerAddress> = allowed
        .iter()
        .filter_map(|p| parse_server_pattern(p).ok())
        .collect();
    for url in servers {
        let a = parse_fleet_server(url)?;
        if !allowed.is_empty()
            && !patterns
                .iter()
                .any(|p| p.port == a.port && wildcard(&p.host, &a.host))
        {
            return Err(format!(
                "{url:?} is not a broker this node may use (provisioning.allowed_servers)"
            ));
        }
    }
    Ok(())
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

    #[test]
    fn a_clear_provisioning_broker_is_refused() {
        let text = "[provisioning]\nservers = [\"tls://p:4222\", \"nats://p:4222\"]\ntoken_file = \"/t\"\nca = \"/ca.pem\"\n";
        let err = ResponderConfig::from_toml(Path::new("r.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("provisioning.servers") && err.contains("in clear"),
            "{err}"
        );
        assert!(!err.contains("tls://p:4222\" is not"), "{err}");
        // Disabled for good, the table is not used and not checked.
        let off = "[provisioning]\nenabled = false\nservers = [\"nats://p:4222\"]\n";
        assert!(ResponderConfig::from_toml(Path::new("r.toml"), off).is_ok());
        let bad = "[provisioning]\nenabled = false\nallowed_servers = [\"a b\"]\n";
        let err = ResponderConfig::from_toml(Path::new("r.toml"), bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("provisioning.allowed_servers"), "{err}");
    }

    #[test]
    fn fleet_servers_are_tls_brokers_the_image_allows() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(check_fleet_servers(&s(&["tls://b1.example.com:4222"]), &[]).is_ok());
        assert!(check_fleet_servers(&s(&["nats://[::1]:4222", "tls://10.0.0.1"]), &[]).is_ok());
        for bad in [
            "ws://b:443",
            "tls://user:pw@b:4222",
            "tls://b:4222/x",
            "tls://b:0",
            "tls://b:99999",
            "tls://",
            "tls://b c",
            "b:4222",
        ] {
            assert!(check_fleet_servers(&s(&[bad]), &[]).is_err(), "{bad}");
        }
        assert!(check_fleet_servers(&[], &[]).is_err());
        let many = vec!["tls://b:1".to_string(); MAX_FLEET_SERVERS + 1];
        assert!(check_fleet_servers(&many, &[]).is_err());

        let allowed = s(&["*.fleet.example.com:4222", "tls://10.0.0.9"]);
        assert!(check_fleet_servers(&s(&["tls://n1.fleet.example.com:4222"]), &allowed).is_ok());
        assert!(check_fleet_servers(&s(&["nats://10.0.0.9"]), &allowed).is_ok());
        assert!(check_fleet_servers(&s(&["tls://10.0.0.9:4223"]), &allowed).is_err());
        let e = check_fleet_servers(&s(&["tls://evil.example.net:4222"]), &allowed).unwrap_err();
        assert!(e.contains("allowed_servers"), "{e}");
        assert!(
            check_fleet_servers(&s(&["tls://n1.fleet.example.com.evil.net:4222"]), &allowed)
                .is_err()
        );
        // Patterns that do not parse allow nothing.
        assert!(check_fleet_servers(&s(&["tls://b:1"]), &s(&["a b"])).is_err());
        assert!(wildcard("a*b*c", "aXXbYc"));
        assert!(!wildcard("a*b", "aXXbY"));
        assert!(wildcard("*", ""));
    }

    #[test]
    fn a_provisioned_node_that_lost_its_certificate_is_not_provisioned_again() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("node.pem");
        let key = dir.path().join("node.key");
        let sec = SecurityConfig {
            cert: Some(cert.clone()),
            key: Some(key.clone()),
            ..Default::default()
        };
        let p = ProvisioningConfig {
            state_dir: dir.path().join("state"),
            ..Default::default()
        };
        assert_eq!(p.lost_certificate(&sec), None, "never provisioned");
        std::fs::create_dir_all(&p.state_dir).unwrap();
        std::fs::write(p.state_file(files::CONFIGURED), "").unwrap();
        std::fs::write(&key, "k").unwrap();
        let msg = p.lost_certificate(&sec).expect("lost");
        assert!(
            msg.contains("node.pem") && msg.contains("configured"),
            "{msg}"
        );
        std::fs::write(&cert, "c").unwrap();
        assert_eq!(p.lost_certificate(&sec), None, "restored");
        std::fs::remove_file(&cert).unwrap();
        let explicit = ProvisioningConfig {
            enabled: Some(true),
            ..p.clone()
        };
        assert_eq!(explicit.lost_certificate(&sec), None, "an explicit choice");
    }
}

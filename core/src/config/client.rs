//! The client's config file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// The client's configuration (`~/.config/mco/client.toml`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    /// Caller name; the caller is `user:<identity>`.
    pub identity: String,
    /// Default collective.
    pub collective: String,
    /// Broker connection.
    pub nats: NatsConfig,
    /// Security.
    pub security: SecurityConfig,
    /// Extra DDL directories.
    pub ddl_dirs: Vec<PathBuf>,
    /// Discovery timeout.
    pub discovery_timeout: Duration,
    /// Quiet window that ends discovery early.
    pub discovery_window: Duration,
    /// Request TTL.
    pub ttl: Duration,
    /// `[inventory]`: the registry bucket inventory discovery reads.
    pub inventory: crate::inventory::InventoryConfig,
    /// `[discovery] method = "inventory"`: discover from the registry unless told otherwise.
    pub discover_from_inventory: bool,
}

impl ClientConfig {
    /// The configuration used when no file exists.
    pub fn defaults() -> ClientConfig {
        ClientConfig {
            file: None,
            identity: default_user(),
            collective: "mcollective".into(),
            nats: NatsConfig::default(),
            security: SecurityConfig {
                default_policy: "deny".into(),
                ..Default::default()
            },
            ddl_dirs: Vec::new(),
            discovery_timeout: Duration::from_secs(2),
            discovery_window: Duration::from_millis(300),
            ttl: Duration::from_secs(u64::from(crate::wire::DEFAULT_TTL_S)),
            inventory: crate::inventory::InventoryConfig::default(),
            discover_from_inventory: false,
        }
    }

    /// Loads and checks a client config file.
    pub fn load(path: &Path) -> Result<ClientConfig, ConfigErrors> {
        let text = read_file(path)?;
        ClientConfig::from_toml(path, &text)
    }

    /// Parses and checks client config text.
    pub fn from_toml(path: &Path, text: &str) -> Result<ClientConfig, ConfigErrors> {
        let (mut r, t) = Reader::parse(path, text);
        r.unknown(
            &t,
            "",
            &[
                "identity",
                "collective",
                "nats",
                "security",
                "ddl_dirs",
                "discovery",
                "ttl",
                "inventory",
            ],
        );
        let mut c = ClientConfig::defaults();
        c.file = Some(path.to_path_buf());
        if let Some(id) = r.string(&t, "", "identity") {
            if id.is_empty() || id.contains(char::is_whitespace) {
                r.error("identity", format!("{id:?} is not a valid caller name"));
            }
            c.identity = id;
        }
        if let Some(col) = r.string(&t, "", "collective") {
            check_token(&mut r, "collective", &col);
            c.collective = col;
        }
        if let Some(n) = r.table(&t, "", "nats") {
            c.nats = NatsConfig::read(&mut r, n);
        }
        c.ddl_dirs = r.paths(&t, "", "ddl_dirs").unwrap_or_default();
        if let Some(s) = r.table(&t, "", "security") {
            c.security = SecurityConfig::read(&mut r, s, false);
            c.ddl_dirs
                .extend(r.paths(s, "security", "ddl_dirs").unwrap_or_default());
        }
        if let Some(d) = r.table(&t, "", "discovery") {
            r.unknown(d, "discovery", &["timeout", "window", "method"]);
            match r.string(d, "discovery", "method").as_deref() {
                None | Some("broadcast") => {}
                Some("inventory") => c.discover_from_inventory = true,
                Some(other) => r.error(
                    "discovery.method",
                    format!("{other:?} is not broadcast or inventory"),
                ),
            }
            if let Some(v) = r.duration(d, "discovery", "timeout") {
                c.discovery_timeout = v;
            }
            if let Some(v) = r.duration(d, "discovery", "window") {
                c.discovery_window = v;
            }
        }
        if let Some(i) = r.table(&t, "", "inventory") {
            c.inventory = crate::inventory::InventoryConfig::read(&mut r, i);
        }
        if let Some(v) = r.duration(&t, "", "ttl") {
            if v < Duration::from_secs(1) {
                r.error("ttl", "must be at least 1s");
            }
            c.ttl = v;
        }
        r.finish()?;
        Ok(c)
    }
}

fn default_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "operator".into())
}

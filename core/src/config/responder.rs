//! The responder's config file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use super::*;

/// The responder's configuration (`/etc/mco/responder.toml`).
#[derive(Debug, Clone, PartialEq)]
pub struct ResponderConfig {
    /// The file it came from, for messages.
    pub file: PathBuf,
    /// Node identity; `None` means the FQDN.
    pub identity: Option<String>,
    /// Collectives served; the first is the main one.
    pub collectives: Vec<String>,
    /// Broker connection.
    pub nats: NatsConfig,
    /// Fact and class sources.
    pub facts: FactsConfig,
    /// Agents.
    pub agents: AgentsConfig,
    /// Security.
    pub security: SecurityConfig,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Default log level (`error`, `warn`, `info`, `debug`, `trace`).
    pub log_level: String,
    /// `[plugin.NAME]` tables, owned by each agent.
    pub plugin: BTreeMap<String, Table>,
    /// `[provisioning]`, if present.
    pub provisioning: Option<crate::provisioning::ProvisioningConfig>,
    /// `[inventory]`: the node's entry in the inventory registry.
    pub inventory: crate::inventory::InventoryConfig,
}

/// `[facts]`.
///
/// Sources merge in this order, later ones over earlier ones: system facts,
/// `files`, `keyvalue_files`, `value_files`, `userdata_files`, `commands`.
#[derive(Debug, Clone, PartialEq)]
pub struct FactsConfig {
    /// YAML or JSON fact files, merged in order.
    pub files: Vec<PathBuf>,
    /// `key=value` files (one string fact a line, as written from cloud user
    /// data, e.g. `/etc/facts.txt`), merged in order after `files`.
    pub keyvalue_files: Vec<PathBuf>,
    /// Fact name to a file whose whole (trimmed, one-line) content is that
    /// fact's string value, e.g. `role` to `/etc/role`; after `keyvalue_files`.
    pub value_files: BTreeMap<String, PathBuf>,
    /// Cloud user-data documents whose top-level `facts:` (or `:facts:`)
    /// mapping holds facts; merged in order after `value_files`.
    pub userdata_files: Vec<PathBuf>,
    /// Commands that print a JSON object, merged after every file.
    pub commands: Vec<String>,
    /// Puppet-style classes file, one class per line.
    pub classes_file: Option<PathBuf>,
    /// More classes files, whose classes are added to `classes_file`'s (the
    /// classification the provisioner gave the node is one).
    pub classes_files: Vec<PathBuf>,
    /// How often facts are re-read.
    pub refresh: Duration,
    /// Whether built-in system facts are gathered.
    pub system: bool,
}

impl Default for FactsConfig {
    fn default() -> Self {
        FactsConfig {
            files: Vec::new(),
            keyvalue_files: Vec::new(),
            value_files: BTreeMap::new(),
            userdata_files: Vec::new(),
            commands: Vec::new(),
            classes_file: None,
            classes_files: Vec::new(),
            refresh: Duration::from_secs(300),
            system: true,
        }
    }
}

/// `[agents]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentsConfig {
    /// Agents to host; `None` means every built-in one.
    pub enabled: Option<Vec<String>>,
    /// Extra DDL directories.
    pub ddl_dirs: Vec<PathBuf>,
    /// Actions running at once; more get a `busy` reply.
    pub max_concurrent: usize,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            enabled: None,
            ddl_dirs: Vec::new(),
            max_concurrent: 64,
        }
    }
}

pub(super) fn check_token(r: &mut Reader, key: &str, value: &str) {
    if !crate::subject::valid_token(value) {
        r.error(
            key,
            format!("{value:?} cannot be used in a subject (no spaces, '.', '*' or '>')"),
        );
    }
}

impl ResponderConfig {
    /// Loads and checks a responder config file.
    pub fn load(path: &Path) -> Result<ResponderConfig, ConfigErrors> {
        let text = read_file(path)?;
        ResponderConfig::from_toml(path, &text)
    }

    /// Parses and checks responder config text; `path` names it in errors.
    pub fn from_toml(path: &Path, text: &str) -> Result<ResponderConfig, ConfigErrors> {
        let (mut r, t) = Reader::parse(path, text);
        r.unknown(
            &t,
            "",
            &[
                "identity",
                "collectives",
                "nats",
                "facts",
                "agents",
                "security",
                "shutdown_grace",
                "log_level",
                "plugin",
                "provisioning",
                "inventory",
            ],
        );
        let identity = r.string(&t, "", "identity");
        if let Some(id) = &identity {
            if id.is_empty() || id.contains(|c: char| c.is_whitespace() || c == '*' || c == '>') {
                r.error("identity", format!("{id:?} is not a valid identity"));
            }
        }
        let collectives = r
            .strings(&t, "", "collectives")
            .unwrap_or_else(|| vec!["mcollective".into()]);
        if collectives.is_empty() {
            r.error("collectives", "needs at least one collective");
        }
        for c in &collectives {
            check_token(&mut r, "collectives", c);
        }
        let nats = r
            .table(&t, "", "nats")
            .map(|n| NatsConfig::read(&mut r, n))
            .unwrap_or_default();
        let facts = match r.table(&t, "", "facts") {
            Some(f) => {
                let p = "facts";
                r.unknown(
                    f,
                    p,
                    &[
                        "files",
                        "keyvalue_files",
                        "value_files",
                        "userdata_files",
                        "commands",
                        "classes_file",
                        "classes_files",
                        "refresh",
                        "system",
                    ],
                );
                let d = FactsConfig::default();
                let refresh = r.duration(f, p, "refresh").unwrap_or(d.refresh);
                if refresh < Duration::from_secs(1) {
                    r.error("facts.refresh", "must be at least 1s");
                }
                let files = r.paths(f, p, "files").unwrap_or_default();
                let keyvalue_files = r.paths(f, p, "keyvalue_files").unwrap_or_default();
                let value_files = r
                    .path_table(
                        f,
                        p,
                        "value_files",
                        "a table of fact names to paths, like { role = \"/etc/role\" }",
                    )
                    .unwrap_or_default();
                for name in value_files.keys() {
                    if let Err(why) = crate::facts::check_fact_name(name) {
                        r.error(&format!("facts.value_files.{name}"), why);
                    }
                }
                FactsConfig {
                    files,
                    keyvalue_files,
                    value_files,
                    userdata_files: r.paths(f, p, "userdata_files").unwrap_or_default(),
                    commands: r.strings(f, p, "commands").unwrap_or_default(),
                    classes_file: r.path(f, p, "classes_file"),
                    classes_files: r.paths(f, p, "classes_files").unwrap_or_default(),
                    refresh,
                    system: r.boolean(f, p, "system").unwrap_or(true),
                }
            }
            None => FactsConfig::default(),
        };
        let agents = match r.table(&t, "", "agents") {
            Some(a) => {
                let p = "agents";
                r.unknown(a, p, &["enabled", "ddl_dirs", "max_concurrent"]);
                let max = r.unsigned(a, p, "max_concurrent").unwrap_or(64);
                if max == 0 {
                    r.error("agents.max_concurrent", "must be at least 1");
                }
                AgentsConfig {
                    enabled: r.strings(a, p, "enabled"),
                    ddl_dirs: r.paths(a, p, "ddl_dirs").unwrap_or_default(),
                    max_concurrent: max as usize,
                }
            }
            None => AgentsConfig::default(),
        };
        let security = r
            .table(&t, "", "security")
            .map(|s| SecurityConfig::read(&mut r, s, true))
            .unwrap_or_default();
        let shutdown_grace = r
            .duration(&t, "", "shutdown_grace")
            .unwrap_or(Duration::from_secs(10));
        let log_level = r
            .string(&t, "", "log_level")
            .unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            r.error(
                "log_level",
                "must be one of error, warn, info, debug, trace",
            );
        }
        let mut plugin = BTreeMap::new();
        if let Some(p) = r.table(&t, "", "plugin") {
            for (name, v) in p {
                match v {
                    Value::Table(tbl) => {
                        plugin.insert(name.clone(), tbl.clone());
                    }
                    other => r.error(
                        &format!("plugin.{name}"),
                        format!("expected a table, found {}", other.type_str()),
                    ),
                }
            }
        }
        let provisioning = r
            .table(&t, "", "provisioning")
            .map(|p| crate::provisioning::ProvisioningConfig::read(&mut r, p));
        let inventory = r
            .table(&t, "", "inventory")
            .map(|i| crate::inventory::InventoryConfig::read(&mut r, i))
            // Without an `[inventory]` table the node keeps no entry: the broker must keep
            // the bucket first (`mco pki broker-config --inventory`).
            .unwrap_or(crate::inventory::InventoryConfig {
                enabled: false,
                ..Default::default()
            });
        r.finish()?;
        Ok(ResponderConfig {
            file: path.to_path_buf(),
            identity,
            collectives,
            nats,
            facts,
            agents,
            security,
            shutdown_grace,
            log_level,
            plugin,
            provisioning,
            inventory,
        })
    }
}

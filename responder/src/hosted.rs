//! The agents a responder hosts, with their DDLs.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::provisioning::RestartSwitch;

use mco_core::agent::AgentSummary;
use mco_core::config::ResponderConfig;
use mco_core::{Agent, Ddl};

/// Why the agent set could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HostedError {
    /// `[agents] enabled` names an agent this build does not have.
    #[error("agents.enabled: unknown agent {0:?} (this build has: {1})")]
    UnknownAgent(String, String),
    /// An agent's `[plugin.NAME]` settings are wrong.
    #[error("{file}: plugin.{agent}: {message}")]
    Plugin {
        /// The config file.
        file: String,
        /// The agent.
        agent: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A DDL in a configured directory did not load.
    #[error(transparent)]
    Ddl(#[from] mco_core::ddl::DdlError),
}

/// One hosted agent: its implementation and the DDL requests are checked against.
#[derive(Clone)]
pub struct Hosted {
    /// The implementation.
    pub agent: Arc<dyn Agent>,
    /// The DDL in force (the built-in one, or an operator's from `ddl_dirs`).
    pub ddl: Arc<Ddl>,
}

/// The agents of this responder, by name.
#[derive(Clone, Default)]
pub struct HostedAgents {
    agents: BTreeMap<String, Hosted>,
    /// In provisioning mode, where the `provision` agent's restart goes.
    restart: Option<RestartSwitch>,
}

/// The names of every agent this build can host.
pub const BUILTIN: &[&str] = &["rpcutil", "resource", "nrpe", "ca"];

/// Agents hosted only when `[agents] enabled` names them (they need settings).
const OPT_IN: &[&str] = &["ca"];

/// Builds one built-in agent from its `[plugin.NAME]` table (empty when the
/// config has none).
fn build(name: &str, cfg: &ResponderConfig) -> Result<Arc<dyn Agent>, HostedError> {
    let empty = toml::Table::new();
    let table = cfg.plugin.get(name).unwrap_or(&empty);
    let fail = |message: String| HostedError::Plugin {
        file: cfg.file.display().to_string(),
        agent: name.to_string(),
        message,
    };
    match name {
        "rpcutil" => Ok(Arc::new(mco_plugin_rpcutil::Rpcutil::new())),
        "resource" => Ok(Arc::new(
            mco_plugin_resource::ResourceAgent::from_config(table).map_err(fail)?,
        )),
        "nrpe" => {
            // Relative paths are relative to the config file's directory.
            let base = cfg.file.parent().unwrap_or(std::path::Path::new("."));
            let nrpe = mco_plugin_nrpe::NrpeConfig::from_table(table, base).map_err(|errs| {
                let all: Vec<String> = errs.iter().map(ToString::to_string).collect();
                fail(all.join("; "))
            })?;
            Ok(Arc::new(mco_plugin_nrpe::Nrpe::new(nrpe)))
        }
        "ca" => {
            let base = cfg.file.parent().unwrap_or(std::path::Path::new("."));
            let ca = mco_plugin_ca::CaSettings::from_table(table, base)
                .map_err(|errs| fail(errs.join("; ")))?;
            Ok(Arc::new(mco_plugin_ca::CaAgent::new(ca)))
        }
        other => unreachable!("{other} is not in BUILTIN"),
    }
}

impl HostedAgents {
    /// Builds the registry from the config: the enabled built-in agents
    /// (rpcutil always), with DDLs from `ddl_dirs` replacing built-in ones of
    /// the same name. Returns warnings for DDLs that have no implementation here.
    pub fn from_config(
        config: &ResponderConfig,
    ) -> Result<(HostedAgents, Vec<String>), HostedError> {
        let cfg = &config.agents;
        let names = BUILTIN;
        let enabled: Vec<String> = match &cfg.enabled {
            Some(list) => {
                for n in list {
                    if !names.contains(&n.as_str()) {
                        return Err(HostedError::UnknownAgent(n.clone(), names.join(", ")));
                    }
                }
                list.clone()
            }
            None => names
                .iter()
                .filter(|n| !OPT_IN.contains(n))
                .map(|s| s.to_string())
                .collect(),
        };
        let mut reg = HostedAgents::default();
        for name in names {
            if *name == "rpcutil" || enabled.iter().any(|e| e == name) {
                let agent = build(name, config)?;
                let ddl = Arc::new(agent.ddl().clone());
                reg.agents.insert(name.to_string(), Hosted { agent, ddl });
            }
        }
        let mut warnings = Vec::new();
        for dir in &cfg.ddl_dirs {
            for ddl in Ddl::load_dir(dir)? {
                match reg.agents.get_mut(&ddl.metadata.name) {
                    Some(h) => h.ddl = Arc::new(ddl),
                    None => warnings.push(format!(
                        "{}: DDL for agent {:?} has no implementation on this node; ignored",
                        dir.display(),
                        ddl.metadata.name
                    )),
                }
            }
        }
        Ok((reg, warnings))
    }

    /// The agents of provisioning mode: `rpcutil` and `provision`, nothing
    /// else. `per_node_config` when the daemon serves a `--fleet` of
    /// virtual nodes, each of which gets its own config file from
    /// `configure` (see [`mco_plugin_provision::ProvisionSettings`]). What
    /// `provision restart` does is set later, on
    /// [`restart_switch`](Self::restart_switch).
    pub fn provisioning(config: &ResponderConfig, per_node_config: bool) -> HostedAgents {
        let switch = RestartSwitch::default();
        let mut reg = HostedAgents::default();
        reg.add(Arc::new(mco_plugin_rpcutil::Rpcutil::new()));
        let settings = mco_plugin_provision::ProvisionSettings {
            provisioning: config.provisioning.clone().unwrap_or_default(),
            security: config.security.clone(),
            config_file: config.file.clone(),
            active: true,
            restart: Some(switch.hook()),
            per_node_config,
        };
        reg.add(Arc::new(mco_plugin_provision::Provision::new(settings)));
        reg.restart = Some(switch);
        reg
    }

    /// Where `provision restart` goes, for the agents of provisioning mode.
    pub fn restart_switch(&self) -> Option<&RestartSwitch> {
        self.restart.as_ref()
    }

    /// Hosts one more agent (or replaces one of the same name): how a
    /// responder built as a library serves agents of its own.
    pub fn add(&mut self, agent: Arc<dyn Agent>) {
        let ddl = Arc::new(agent.ddl().clone());
        self.agents
            .insert(agent.name().to_string(), Hosted { agent, ddl });
    }

    /// An agent by name.
    pub fn get(&self, name: &str) -> Option<&Hosted> {
        self.agents.get(name)
    }

    /// Agent names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.agents.keys().map(String::as_str)
    }

    /// Summaries for `rpcutil agent_inventory`.
    pub fn summaries(&self) -> Vec<AgentSummary> {
        self.agents
            .values()
            .map(|h| AgentSummary {
                name: h.ddl.metadata.name.clone(),
                version: h.ddl.metadata.version.clone(),
                description: h.ddl.metadata.description.clone(),
            })
            .collect()
    }
}

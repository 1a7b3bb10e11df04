//! The agents a responder hosts, with their DDLs.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::provisioning::RestartSwitch;

use mco_core::agent::AgentSummary;
use mco_core::config::{ConfigErrors, ResponderConfig};
use mco_core::{Agent, Ddl};

/// Why the agent set could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HostedError {
    /// `[agents] enabled` names an agent this build does not have.
    #[error("agents.enabled: unknown agent {0:?} (this build has: {1})")]
    UnknownAgent(String, String),
    /// Agents' `[plugin.NAME]` settings are wrong: every problem of every
    /// enabled agent's table, each naming its file and full key, as a bad
    /// config file is reported.
    #[error("bad configuration:\n{0}")]
    Plugin(mco_core::config::ConfigErrors),
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
/// config has none); relative paths in it are relative to the config file.
fn build(name: &str, cfg: &ResponderConfig) -> Result<Arc<dyn Agent>, ConfigErrors> {
    let empty = toml::Table::new();
    let table = cfg.plugin.get(name).unwrap_or(&empty);
    let file = cfg.file.as_path();
    Ok(match name {
        "rpcutil" => Arc::new(mco_plugin_rpcutil::Rpcutil::new()),
        "resource" => Arc::new(mco_plugin_resource::ResourceAgent::from_config(
            table, file,
        )?),
        "nrpe" => Arc::new(mco_plugin_nrpe::Nrpe::new(
            mco_plugin_nrpe::NrpeConfig::from_table(table, file)?,
        )),
        "ca" => Arc::new(mco_plugin_ca::CaAgent::new(
            mco_plugin_ca::CaSettings::from_table(table, file)?,
        )),
        other => unreachable!("{other} is not in BUILTIN"),
    })
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
        let mut problems = Vec::new();
        for name in names {
            if *name == "rpcutil" || enabled.iter().any(|e| e == name) {
                match build(name, config) {
                    Ok(agent) => {
                        let ddl = Arc::new(agent.ddl().clone());
                        reg.agents.insert(name.to_string(), Hosted { agent, ddl });
                    }
                    // Every agent's table is read before giving up, so that
                    // one start-up lists every problem.
                    Err(ConfigErrors(errs)) => problems.extend(errs),
                }
            }
        }
        if !problems.is_empty() {
            return Err(HostedError::Plugin(ConfigErrors(problems)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_key_of_every_plugin_is_reported_at_once() {
        let cfg = ResponderConfig::from_toml(
            std::path::Path::new("/etc/mco/responder.toml"),
            "identity = \"n1\"\n[agents]\nenabled = [\"resource\", \"nrpe\"]\n\
             [plugin.resource]\nnoop = 1\ncolour = 2\n[plugin.nrpe]\ntimeout = \"soon\"\n",
        )
        .expect("the file itself is fine");
        let Err(HostedError::Plugin(errs)) = HostedAgents::from_config(&cfg) else {
            panic!("bad plugin tables must stop the responder");
        };
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "plugin.resource.colour",
                "plugin.resource.noop",
                "plugin.nrpe.timeout"
            ]
        );
        let text = HostedError::Plugin(errs).to_string();
        assert!(
            text.starts_with(
                "bad configuration:\n/etc/mco/responder.toml: plugin.resource.colour: unknown key"
            ),
            "{text}"
        );
    }
}

//! Choosing for a node: whether it is expected (and what it is), whether
//! its name is one never to sign, and its master among the configured ones.

use std::sync::Arc;

use mco_client::error::ClientError;
use mco_core::{Filter, Status as WireStatus};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::classify::Classification;
use crate::expected::Registries;
use crate::masters::{Master, Reason};
use crate::service::Provisioner;
use crate::step::Outcome;

/// Names never signed nor cleaned by any provisioner: the CA's and the broker's.
pub const RESERVED_NAMES: &[&str] = &["ca", "broker"];

impl Provisioner {
    /// The expected check: listed in `[expected]` identities, a registry or
    /// an address range; its classification, if a registry gives one.
    pub(crate) async fn check_expected(
        &self,
        node: &str,
        facts: Option<&Map<String, Value>>,
    ) -> Result<Option<Classification>, Outcome> {
        let registries = Registries {
            cfg: &self.cfg.expected,
            bucket: self.expected_kv.as_ref(),
        };
        match registries.lookup(node, facts).await {
            Ok(Some(known)) => Ok(known.classification),
            Ok(None) => Err(Outcome::NotExpected(format!(
                "not expected: {node} is in neither expected.identities, a registry nor expected.networks"
            ))),
            Err(e) => Err(Outcome::Failed(e)),
        }
    }

    /// Refuses a name that must never be cleaned or signed: `ca`, `broker`,
    /// `[expected] reserved`, the provisioner's own, the CA node's and the
    /// masters' (configured patterns and those discovered).
    pub(crate) async fn check_not_reserved(&self, node: &str) -> Result<(), Outcome> {
        let lower = node.to_ascii_lowercase();
        let glob = |p: &str| crate::expected::glob(p, node);
        let own = self.main_cfg.identity.eq_ignore_ascii_case(node);
        let configured = self
            .cfg
            .expected
            .reserved
            .iter()
            .chain(&self.cfg.masters.filter.identity)
            .chain(&self.cfg.ca_identities)
            .any(|p| glob(p))
            || self
                .cfg
                .ca_identity
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(node));
        let reserved = RESERVED_NAMES.contains(&lower.as_str()) || own || configured;
        let discovered = if reserved {
            false
        } else {
            // Without the masters' names, nothing is signed (fail closed).
            let (masters, ca) = self.masters_now().await?;
            masters
                .iter()
                .any(|m| m.identity.eq_ignore_ascii_case(node))
                || ca.is_some_and(|c| c.eq_ignore_ascii_case(node))
        };
        if reserved || discovered {
            return Err(Outcome::Refused(format!(
                "{node:?} is a reserved name (the CA's, a broker's, a master's or the \
                 provisioner's own): never cleaned nor signed"
            )));
        }
        Ok(())
    }

    /// Picks a master for a node with `facts`.
    pub(crate) async fn pick(
        &self,
        facts: &Map<String, Value>,
    ) -> Result<(Master, Reason), Outcome> {
        let (list, _) = self.masters_now().await?;
        let mut picker = self.picker.lock().unwrap_or_else(|e| e.into_inner());
        match picker.pick(facts, &list) {
            Some((m, reason)) => Ok((m.clone(), reason)),
            None => Err(Outcome::Waiting(format!(
                "no master answers in the {} collective",
                self.main_cfg.collective
            ))),
        }
    }

    /// The name the node is given for its master.
    pub(crate) fn master_name(&self, m: &Master) -> String {
        self.cfg
            .masters
            .name_fact
            .as_ref()
            .and_then(|f| m.facts.get(f))
            .and_then(Value::as_str)
            .unwrap_or(&m.identity)
            .to_string()
    }

    /// The brokers a node with master `m` is given.
    pub(crate) fn servers_for(&self, m: &Master) -> Vec<String> {
        let from_fact = self
            .cfg
            .masters
            .servers_fact
            .as_ref()
            .and_then(|f| m.facts.get(f))
            .map(|v| match v {
                Value::String(s) => mco_core::agent::split_list(s),
                Value::Array(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                _ => Vec::new(),
            })
            .unwrap_or_default();
        if !from_fact.is_empty() {
            from_fact
        } else if !self.cfg.node_servers.is_empty() {
            self.cfg.node_servers.clone()
        } else {
            self.main_cfg.nats.servers.clone()
        }
    }

    /// The masters (and the CA node) as last discovered, re-discovered when
    /// older than the refresh interval.
    pub(crate) async fn masters_now(&self) -> Result<(Arc<Vec<Master>>, Option<String>), Outcome> {
        let mut cache = self.masters.lock().await;
        let fresh = cache
            .at
            .is_some_and(|at| at.elapsed() < self.masters_refresh && !cache.list.is_empty());
        if !fresh {
            match self.discover_masters().await {
                Ok((list, ca)) => {
                    info!(
                        masters = list.len(),
                        ca = ca.as_deref().unwrap_or("-"),
                        "masters discovered"
                    );
                    cache.list = Arc::new(list);
                    cache.ca = ca;
                    cache.at = Some(Instant::now());
                }
                Err(e) if cache.list.is_empty() => {
                    return Err(Outcome::Failed(format!("master discovery: {e}")))
                }
                Err(e) => warn!("master discovery failed, using the last list: {e}"),
            }
        }
        Ok((cache.list.clone(), cache.ca.clone()))
    }

    async fn discover_masters(&self) -> Result<(Vec<Master>, Option<String>), ClientError> {
        let found = self
            .main
            .ping(
                &self.main_cfg.collective,
                self.cfg.masters.filter.clone(),
                self.main_cfg.discovery_timeout,
                self.main_cfg.discovery_window,
            )
            .await?;
        let names: Vec<String> = found.into_iter().map(|(n, _)| n).collect();
        let mut list = Vec::new();
        if !names.is_empty() {
            let got = self
                .main
                .call(
                    &self.call(
                        &self.main_cfg.collective,
                        "rpcutil",
                        "inventory",
                        Map::new(),
                        None,
                    ),
                    &names,
                    &self.wait(self.cfg.request_timeout),
                )
                .await?;
            for r in got.replies {
                if r.status != WireStatus::Ok {
                    continue;
                }
                let facts = r
                    .data
                    .get("facts")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let agents = r
                    .data
                    .get("agents")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                list.push(Master {
                    identity: r.sender,
                    facts,
                    agents,
                });
            }
        }
        let ca = match &self.cfg.ca_identity {
            Some(c) => Some(c.clone()),
            None => {
                let filter = Filter {
                    agent: vec!["ca".into()],
                    identity: self.cfg.ca_identities.clone(),
                    ..Filter::default()
                };
                let cas = self
                    .main
                    .ping(
                        &self.main_cfg.collective,
                        filter,
                        self.main_cfg.discovery_timeout,
                        self.main_cfg.discovery_window,
                    )
                    .await?;
                if cas.len() > 1 {
                    warn!(
                        "{} nodes host the ca agent; using {} (set [ca] identity to choose)",
                        cas.len(),
                        cas[0].0
                    );
                }
                cas.into_iter().next().map(|(n, _)| n)
            }
        };
        Ok((list, ca))
    }
}

//! One node's state: identity, collectives, facts, classes, counters.
//!
//! A responder normally serves one node; with `--fleet N` it serves N virtual
//! nodes, each with its own state and connection, sharing the agents.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use mco_core::agent::{AgentSummary, NodeInfo};
use mco_core::facts::{lookup, FactMap};
use mco_core::filter::FilterTarget;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::hosted::HostedAgents;
use crate::stats::Stats;

/// Facts and classes as one snapshot, swapped whole on refresh.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Facts.
    pub facts: Arc<FactMap>,
    /// Classes.
    pub classes: Arc<Vec<String>>,
}

/// What every node of one process shares.
pub struct Shared {
    /// Collectives served.
    pub collectives: Vec<String>,
    /// Hosted agents.
    pub registry: Arc<HostedAgents>,
    /// Action slots per node.
    pub max_concurrent: usize,
    /// Authorization.
    pub authz: Arc<mco_security::policy::Authorizer>,
    /// The audit log, if configured.
    pub audit: Option<crate::audit::AuditLog>,
    /// The inventory registry each node keeps its entry in; `None` when off.
    pub inventory: Option<Arc<mco_core::inventory::InventoryConfig>>,
}

/// One node served by this process.
pub struct NodeState {
    /// Identity.
    pub identity: String,
    /// Collectives; the first is the main one.
    pub collectives: Vec<String>,
    /// Hosted agents.
    pub registry: Arc<HostedAgents>,
    /// Counters.
    pub stats: Stats,
    /// Caps concurrent actions.
    pub slots: Arc<Semaphore>,
    /// Slots in all.
    pub max_concurrent: usize,
    started: Instant,
    snapshot: RwLock<Arc<Snapshot>>,
    fleet_index: Option<usize>,
    /// Signing and verification; `None` in insecure mode.
    pub security: Option<crate::security::NodeSecurity>,
    /// Who may call what (shared by every node of the process).
    pub authz: Arc<mco_security::policy::Authorizer>,
    /// Where handled requests are recorded.
    pub audit: Option<crate::audit::AuditLog>,
    /// The registry this node keeps its entry in; `None` when off.
    pub inventory: Option<Arc<mco_core::inventory::InventoryConfig>>,
    /// The node's connection, once it has one: `daemon_stats` says which server it is on.
    bus: RwLock<Option<async_nats::Client>>,
}

impl NodeState {
    /// A node with no facts yet; `fleet_index` is set for a virtual node.
    pub fn new(
        identity: String,
        fleet_index: Option<usize>,
        security: Option<crate::security::NodeSecurity>,
        shared: &Shared,
    ) -> NodeState {
        NodeState {
            identity,
            collectives: shared.collectives.clone(),
            registry: shared.registry.clone(),
            stats: Stats::default(),
            slots: Arc::new(Semaphore::new(shared.max_concurrent)),
            max_concurrent: shared.max_concurrent,
            started: Instant::now(),
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            fleet_index,
            security,
            authz: shared.authz.clone(),
            audit: shared.audit.clone(),
            inventory: shared.inventory.clone(),
            bus: RwLock::new(None),
        }
    }

    /// Records the connection the node is served on.
    pub fn attach_bus(&self, client: &async_nats::Client) {
        *self.bus.write().unwrap_or_else(|e| e.into_inner()) = Some(client.clone());
    }

    /// Which broker the node is on: the server's name and id as it announced them, its
    /// cluster, whether the connection is up now, and how many times it was made.
    pub fn broker(&self) -> Option<Value> {
        let guard = self.bus.read().unwrap_or_else(|e| e.into_inner());
        let client = guard.as_ref()?;
        let info = client.server_info();
        let connected = matches!(
            client.connection_state(),
            async_nats::connection::State::Connected
        );
        Some(serde_json::json!({
            "server_name": info.server_name,
            "server_id": info.server_id,
            "address": format!("{}:{}", info.host, info.port),
            "cluster": info.cluster,
            "connected": connected,
            "connects": client.statistics().connects.load(std::sync::atomic::Ordering::Relaxed),
        }))
    }

    /// Installs freshly gathered facts and classes (adding `fleet_index` for a virtual node).
    pub fn set_facts(&self, facts: &FactMap, classes: &Arc<Vec<String>>) {
        let facts = match self.fleet_index {
            Some(i) => {
                let mut f = facts.clone();
                f.insert("fleet_index".into(), Value::from(i));
                Arc::new(f)
            }
            None => Arc::new(facts.clone()),
        };
        let snap = Arc::new(Snapshot {
            facts,
            classes: classes.clone(),
        });
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snap;
    }

    /// The node's place in a `--fleet`; `None` for a single node.
    pub fn fleet_index(&self) -> Option<usize> {
        self.fleet_index
    }

    /// The current facts and classes.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A borrowed view of a node for filter evaluation.
pub struct View<'a> {
    node: &'a NodeState,
    snap: Arc<Snapshot>,
}

impl<'a> View<'a> {
    /// Takes a view of the node's current snapshot.
    pub fn of(node: &'a NodeState) -> View<'a> {
        View {
            node,
            snap: node.snapshot(),
        }
    }
}

impl FilterTarget for View<'_> {
    fn identity(&self) -> &str {
        &self.node.identity
    }
    fn fact(&self, path: &str) -> Option<&Value> {
        lookup(&self.snap.facts, path)
    }
    fn classes(&self) -> &[String] {
        &self.snap.classes
    }
    fn has_agent(&self, agent: &str) -> bool {
        self.node.registry.get(agent).is_some()
    }
    fn agents(&self) -> Vec<&str> {
        self.node.registry.names().collect()
    }
}

impl NodeInfo for NodeState {
    fn identity(&self) -> &str {
        &self.identity
    }
    fn collectives(&self) -> &[String] {
        &self.collectives
    }
    fn facts(&self) -> Arc<FactMap> {
        self.snapshot().facts.clone()
    }
    fn classes(&self) -> Arc<Vec<String>> {
        self.snapshot().classes.clone()
    }
    fn agents(&self) -> Vec<AgentSummary> {
        self.registry.summaries()
    }
    fn stats(&self) -> Map<String, Value> {
        let mut m = self.stats.snapshot();
        let in_flight = self.max_concurrent - self.slots.available_permits();
        m.insert("in_flight".into(), Value::from(in_flight));
        if let Some(p) = self.security.as_ref().and_then(|s| s.signer.presigner()) {
            let (prepared, inline) = p.counts();
            m.insert(
                "signing".into(),
                serde_json::json!({ "prepared": prepared, "inline": inline, "ready": p.ready() }),
            );
        }
        if let Some(crl) = self.security.as_ref().and_then(|s| s.trust.crl_stats()) {
            if let Some(number) = crl.get("number").filter(|n| n.is_string()) {
                m.insert("crl_number".into(), number.clone());
            }
            m.insert("crl".into(), crl);
        }
        if let Some(broker) = self.broker() {
            m.insert("broker".into(), broker);
        }
        m
    }
    fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
    fn publish_crl(&self, crl: Vec<u8>) -> mco_core::agent::BoxFuture<Result<u64, String>> {
        let client = self.bus.read().unwrap_or_else(|e| e.into_inner()).clone();
        let bucket = self.inventory.as_ref().map(|c| c.crl_bucket.clone());
        Box::pin(async move {
            match (client, bucket) {
                (Some(client), Some(bucket)) => {
                    crate::crl_watch::publish(client, bucket, crl).await
                }
                (_, None) => {
                    Err("this node has no [inventory] table, so no CRL bucket to publish in".into())
                }
                (None, _) => Err("this node is not connected to the broker".into()),
            }
        })
    }
}

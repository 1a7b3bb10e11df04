//! The responder as a whole: load agents, gather facts, connect every node,
//! serve until told to stop.

use std::sync::Arc;

use futures::stream::{self, StreamExt};
use mco_core::backoff::Backoff;
use mco_core::config::ResponderConfig;
use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};

use crate::facts;
use crate::node::NodeState;
use crate::registry::{Registry, RegistryError};
use crate::serve::{self, BusOptions};

/// How the daemon runs, beyond its config file.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Serve this many virtual nodes (`<identity>-NNNN`) instead of one.
    pub fleet: Option<usize>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The agents could not be set up.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The config asks for something this build cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// Subscribing failed.
    #[error("subscribing failed: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
}

/// Checks what the daemon needs before anything connects; returns warnings.
pub fn preflight(cfg: &ResponderConfig) -> Result<(Registry, Vec<String>), DaemonError> {
    if !cfg.security.insecure {
        return Err(DaemonError::Unsupported(format!(
            "{}: security.insecure is false, but this build cannot sign or verify messages yet; \
             set `insecure = true` under [security] for a throw-away demo",
            cfg.file.display()
        )));
    }
    Ok(Registry::from_config(&cfg.agents)?)
}

/// Runs the responder until `shutdown` turns true. `reload` re-reads facts
/// (the binary fires it on SIGHUP).
pub async fn run(
    cfg: ResponderConfig,
    registry: Registry,
    opts: Options,
    shutdown: watch::Receiver<bool>,
    reload: Arc<Notify>,
) -> Result<(), DaemonError> {
    warn!("INSECURE MODE: requests and replies are neither signed nor verified, and the broker connection is not authenticated; use this only for throw-away demos");
    let registry = Arc::new(registry);
    let identity = cfg.identity.clone().unwrap_or_else(facts::default_identity);
    let nodes: Vec<Arc<NodeState>> = match opts.fleet {
        None => vec![Arc::new(NodeState::new(
            identity.clone(),
            cfg.collectives.clone(),
            registry.clone(),
            cfg.agents.max_concurrent,
            None,
        ))],
        Some(n) => (0..n)
            .map(|i| {
                Arc::new(NodeState::new(
                    format!("{identity}-{i:04}"),
                    cfg.collectives.clone(),
                    registry.clone(),
                    cfg.agents.max_concurrent,
                    Some(i),
                ))
            })
            .collect(),
    };
    refresh_facts(&cfg, &nodes).await;

    let bus = BusOptions {
        servers: cfg.nats.servers.clone(),
        max_payload: cfg.nats.max_payload,
        backoff: Backoff::default(),
        subscription_capacity: 4096,
        // Requests are small; async-nats' 64 KiB default, touched page by page as
        // messages pass through it, costs ~64 KiB of RSS per connection in the end.
        read_buffer: 8192,
    };
    let clients: Vec<_> = stream::iter(nodes.iter().cloned())
        .map(|node| {
            let bus = bus.clone();
            async move { (serve::connect(&bus, &node.identity).await, node) }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut tasks = Vec::with_capacity(clients.len());
    for (client, node) in clients {
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                error!(node = %node.identity, "cannot set up the broker connection: {e}");
                continue;
            }
        };
        let rx = shutdown.clone();
        let grace = cfg.shutdown_grace;
        let max = bus.max_payload;
        tasks.push(tokio::spawn(async move {
            serve::serve(client, node, max, rx, grace).await
        }));
    }
    info!(
        nodes = nodes.len(),
        agents = %registry.names().collect::<Vec<_>>().join(","),
        collectives = %cfg.collectives.join(","),
        "responder serving {}",
        if nodes.len() == 1 { identity } else { format!("{} virtual nodes", nodes.len()) }
    );

    let refresher = {
        let cfg = cfg.clone();
        let nodes = nodes.clone();
        let mut rx = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(cfg.facts.refresh);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = rx.changed() => break,
                    _ = tick.tick() => refresh_facts(&cfg, &nodes).await,
                    _ = reload.notified() => {
                        info!("reloading facts");
                        refresh_facts(&cfg, &nodes).await;
                    }
                }
            }
        })
    };

    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error!("a node stopped serving: {e}"),
            Err(e) => error!("a node task failed: {e}"),
        }
    }
    refresher.abort();
    info!("responder stopped");
    Ok(())
}

async fn refresh_facts(cfg: &ResponderConfig, nodes: &[Arc<NodeState>]) {
    let g = facts::gather(&cfg.facts).await;
    for w in &g.warnings {
        warn!("facts: {w}");
    }
    let classes = Arc::new(g.classes);
    for n in nodes {
        n.set_facts(&g.facts, &classes);
    }
}

//! The responder as a whole: load agents, gather facts, connect every node,
//! serve until told to stop.

use std::sync::Arc;

use futures::stream::{self, StreamExt};
use mco_core::backoff::Backoff;
use mco_core::config::ResponderConfig;
use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};

use crate::audit::AuditLog;
use crate::facts;
use crate::fleet;
use crate::hosted::{HostedAgents, HostedError};
use crate::node::{NodeState, Shared};
use crate::provisioning;
use crate::security::{self, NodeSecurity, SharedTrust};
use crate::serve::{self, BusOptions};
use mco_core::provisioning::{ProvisioningConfig, PROVISIONING_COLLECTIVE};
use mco_security::policy::Authorizer;

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
    HostedAgents(#[from] HostedError),
    /// The config asks for something this build cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// Subscribing failed.
    #[error("subscribing failed: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// A key, certificate or CRL did not load.
    #[error("{0}")]
    Security(#[from] mco_security::LoadError),
}

/// Checks what the daemon needs before anything connects, and builds the
/// agents it will host (for provisioning mode, `rpcutil` and `provision`
/// alone); returns them with warnings.
pub fn preflight(
    cfg: &ResponderConfig,
    opts: &Options,
) -> Result<(HostedAgents, Vec<String>), DaemonError> {
    provisioning::refuse_lost_certificate(cfg)?;
    if let Some(p) = provisioning::mode(cfg) {
        provisioning::preflight(cfg, p, opts.fleet.is_some())?;
        return Ok((
            HostedAgents::provisioning(cfg, opts.fleet.is_some()),
            Vec::new(),
        ));
    }
    if !cfg.security.insecure {
        if let Some(msg) = security::missing_keys(&cfg.security, &cfg.file) {
            return Err(DaemonError::Unsupported(msg));
        }
    }
    Ok(HostedAgents::from_config(cfg)?)
}

/// The broker connection settings of `cfg`: the provisioning broker with
/// its token when `prov` is given, else the config's brokers, with TLS and
/// the node's certificate when `tls` (secure mode) and `[security]` names
/// them.
pub fn bus_options(
    cfg: &ResponderConfig,
    prov: Option<&ProvisioningConfig>,
    tls: bool,
) -> Result<BusOptions, DaemonError> {
    let token = match (prov, &cfg.nats.token_file) {
        (Some(p), _) => Some(
            p.read_token()
                .map_err(|e| DaemonError::Unsupported(format!("provisioning.token_file: {e}")))?,
        ),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| DaemonError::Unsupported(format!("nats.token_file: {e}")))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    Ok(BusOptions {
        servers: match prov {
            Some(p) => p.servers.clone(),
            None => cfg.nats.servers.clone(),
        },
        max_payload: cfg.nats.max_payload,
        ping_interval: cfg.nats.ping_interval,
        servers_in_order: cfg.nats.servers_in_order,
        backoff: Backoff::default(),
        subscription_capacity: mco_core::limits::responder_queue_len(cfg.nats.max_payload),
        server_ca: prov.and_then(|p| p.ca.clone()),
        token,
        user: prov.map(|_| mco_core::provisioning::BROKER_USER.to_string()),
        tls: match (
            prov.is_none() && tls,
            &cfg.security.ca,
            &cfg.security.cert,
            &cfg.security.key,
        ) {
            (true, Some(ca), Some(cert), Some(key)) => {
                Some((ca.clone(), cert.clone(), key.clone()))
            }
            _ => None,
        },
        // Requests are small; async-nats' 64 KiB default, touched page by page as
        // messages pass through it, costs ~64 KiB of RSS per connection in the end.
        read_buffer: 8192,
    })
}

/// Runs the responder until `shutdown` turns true. `reload` re-reads facts
/// (the binary fires it on SIGHUP). `agents` are what [`preflight`] built.
///
/// In provisioning mode, `provision restart` of a single node stops the
/// daemon as SIGTERM would and re-executes it; with `--fleet`, each virtual
/// node leaves provisioning on its own, in-process (see [`crate::fleet`]).
pub async fn run(
    cfg: ResponderConfig,
    agents: HostedAgents,
    opts: Options,
    shutdown: watch::Receiver<bool>,
    reload: Arc<Notify>,
) -> Result<(), DaemonError> {
    let prov = provisioning::mode(&cfg).cloned();
    let fleet_provisioning = prov.is_some() && opts.fleet.is_some();
    let identity = cfg.identity.clone().unwrap_or_else(facts::default_identity);
    let names = node_names(&identity, opts.fleet);
    let stop = Stop::following(shutdown);
    let restarts = fleet::Restarts::new(names.iter().map(|(n, _)| n.as_str()));
    if prov.is_some() {
        let switch = agents.restart_switch().ok_or_else(|| {
            DaemonError::Unsupported(
                "provisioning mode hosts the agents preflight builds for it".to_string(),
            )
        })?;
        switch.set(if fleet_provisioning {
            restarts.hook()
        } else {
            stop.restart_hook()
        });
    }
    let trust = load_trust(&cfg, prov.as_ref())?;
    let agents = Arc::new(agents);
    let collectives = match &prov {
        Some(_) => vec![PROVISIONING_COLLECTIVE.to_string()],
        None => cfg.collectives.clone(),
    };
    let audit = match &cfg.security.audit_log {
        Some(p) => Some(AuditLog::open(p).map_err(|e| {
            DaemonError::Unsupported(format!("security.audit_log {}: {e}", p.display()))
        })?),
        None => None,
    };
    let shared = Shared {
        collectives: collectives.clone(),
        registry: agents.clone(),
        max_concurrent: cfg.agents.max_concurrent,
        // In provisioning mode the token is required on top of the policy,
        // not instead of it: the policy decides who may provision.
        authz: Arc::new(Authorizer::new(
            cfg.security.policy_dir.clone(),
            cfg.security.default_policy == "allow",
        )),
        audit: audit.clone(),
        inventory: cfg
            .inventory
            .enabled
            .then(|| Arc::new(cfg.inventory.clone())),
    };
    // Replies are signed in secure mode, and by provisioned nodes.
    let presigner =
        if cfg.security.presign && trust.is_some() && (cfg.security.sign || prov.is_some()) {
            security::presigner(names.len())
        } else {
            Arc::new(security::Presigner::inline())
        };
    let mut nodes = Vec::with_capacity(names.len());
    for (name, index) in names {
        let security = match (&trust, &prov) {
            (Some(t), Some(p)) => Some(provisioning::node_security(&cfg, p, &name, t.clone())?),
            (Some(t), None) if cfg.security.sign => Some(
                NodeSecurity::load(&cfg.security, &name, t.clone(), &presigner)?
                    .bounded_by(&cfg.security),
            ),
            _ => None,
        };
        nodes.push(Arc::new(NodeState::new(name, index, security, &shared)));
    }
    refresh_facts(&cfg, &nodes).await;
    let bus = bus_options(&cfg, prov.as_ref(), trust.is_some())?;
    let life = Arc::new(fleet::LifeContext {
        // In a provisioning fleet, nodes provisioned by an earlier run start
        // in normal mode and never connect to the provisioning broker.
        state_dir: prov
            .as_ref()
            .map(|p| p.state_dir.clone())
            .unwrap_or_default(),
        provisioning_bus: bus.clone(),
        grace: cfg.shutdown_grace,
        slots: Arc::new(
            nodes
                .iter()
                .map(|n| std::sync::RwLock::new(n.clone()))
                .collect(),
        ),
        restarts,
        resources: fleet::Resources::new(audit, presigner),
    });
    let tasks = start_nodes(&life, &nodes, &bus, fleet_provisioning, &stop.rx).await;
    info!(
        nodes = nodes.len(),
        agents = %agents.names().collect::<Vec<_>>().join(","),
        collectives = %collectives.join(","),
        "responder serving {}",
        if nodes.len() == 1 { identity } else { format!("{} virtual nodes", nodes.len()) }
    );
    let refresher = spawn_refresher(cfg, life.clone(), trust, stop.rx.clone(), reload);
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error!("a node stopped serving: {e}"),
            Err(e) => error!("a node task failed: {e}"),
        }
    }
    refresher.abort();
    flush_audits(&life).await;
    if stop.restarting() {
        info!("responder stopped; restarting");
        crate::lifecycle::reexec();
        return Err(DaemonError::Unsupported(
            "provision restart: could not re-execute the responder".to_string(),
        ));
    }
    info!("responder stopped");
    Ok(())
}

/// The identity of each node this process serves, with its index in a fleet.
fn node_names(identity: &str, fleet: Option<usize>) -> Vec<(String, Option<usize>)> {
    match fleet {
        None => vec![(identity.to_string(), None)],
        Some(n) => (0..n)
            .map(|i| (format!("{identity}-{i:04}"), Some(i)))
            .collect(),
    }
}

/// How the daemon stops: when told to, or when `provision restart` asks it
/// to stop and re-execute.
struct Stop {
    tx: watch::Sender<bool>,
    rx: watch::Receiver<bool>,
    restart: Arc<std::sync::atomic::AtomicBool>,
}

impl Stop {
    /// A stop that follows `shutdown`.
    fn following(mut shutdown: watch::Receiver<bool>) -> Stop {
        let (tx, rx) = watch::channel(false);
        let follow = tx.clone();
        tokio::spawn(async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    return;
                }
            }
            let _ = follow.send(true);
        });
        Stop {
            tx,
            rx,
            restart: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// What `provision restart` does on a single node: stop as SIGTERM
    /// would, then re-execute.
    fn restart_hook(&self) -> mco_plugin_provision::RestartHook {
        let flag = self.restart.clone();
        let tx = self.tx.clone();
        Arc::new(move |_: &str| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = tx.send(true);
        })
    }

    fn restarting(&self) -> bool {
        self.restart.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The trust a node starts with: the provisioning CA, the collective's CA
/// (secure mode), or none (insecure mode, said on every start).
fn load_trust(
    cfg: &ResponderConfig,
    prov: Option<&ProvisioningConfig>,
) -> Result<Option<Arc<SharedTrust>>, DaemonError> {
    let trust = if let Some(p) = prov {
        Some(Arc::new(provisioning::trust(cfg, p)?))
    } else if cfg.security.insecure {
        warn!("INSECURE MODE: requests and replies are neither signed nor verified, and the broker connection is not authenticated; use this only for throw-away demos");
        None
    } else {
        let ca = cfg
            .security
            .ca
            .as_deref()
            .unwrap_or(std::path::Path::new(""));
        Some(Arc::new(SharedTrust::load(
            ca,
            cfg.security.crl.as_deref(),
        )?))
    };
    if trust.is_some() && !cfg.security.sign && prov.is_none() {
        warn!("UNSIGNED MODE (security.sign = false): TLS to the broker is on, but requests and replies are neither signed nor verified; use this only to measure what signing costs");
    }
    Ok(trust)
}

/// Connects every node (64 at a time) and starts serving it; in a
/// provisioning fleet each node is a supervising task of its own.
async fn start_nodes(
    life: &Arc<fleet::LifeContext>,
    nodes: &[Arc<NodeState>],
    bus: &BusOptions,
    fleet_provisioning: bool,
    shutdown: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Result<(), async_nats::SubscribeError>>> {
    let on_disk = |node: &NodeState| {
        fleet_provisioning && fleet::provisioned_on_disk(&life.state_dir, &node.identity)
    };
    let clients: Vec<_> = stream::iter(nodes.iter().cloned().enumerate())
        .map(|(slot, node)| {
            let bus = bus.clone();
            let skip = on_disk(&node);
            async move {
                let client = if skip {
                    None
                } else {
                    Some(serve::connect(&bus, &node.identity).await)
                };
                (slot, client, node)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut tasks = Vec::with_capacity(clients.len());
    for (slot, client, node) in clients {
        let client = match client.transpose() {
            Ok(c) => c,
            Err(e) => {
                error!(node = %node.identity, "cannot set up the broker connection: {e}");
                continue;
            }
        };
        let rx = shutdown.clone();
        let grace = life.grace;
        let max = bus.max_payload;
        if fleet_provisioning {
            let life = life.clone();
            tasks.push(tokio::spawn(fleet::life(life, slot, node, client, rx)));
        } else if let Some(client) = client {
            tasks.push(tokio::spawn(async move {
                serve::serve(client, node, max, rx, grace).await
            }));
        }
    }
    tasks
}

/// Refreshes facts on their interval and the CRL every 5 s; on `reload`
/// (SIGHUP) re-reads facts and the CRL at once and reopens the audit log.
fn spawn_refresher(
    cfg: ResponderConfig,
    life: Arc<fleet::LifeContext>,
    trust: Option<Arc<SharedTrust>>,
    mut rx: watch::Receiver<bool>,
    reload: Arc<Notify>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(cfg.facts.refresh);
        tick.tick().await;
        let mut crl_tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = rx.changed() => break,
                _ = tick.tick() => refresh_facts(&cfg, &fleet::current(&life.slots)).await,
                _ = crl_tick.tick() => {
                    if let Some(t) = &trust {
                        t.refresh();
                    }
                    life.resources.refresh_trust();
                }
                _ = reload.notified() => {
                    info!("reloading facts and the CRL, and reopening the audit log");
                    if let Some(t) = &trust {
                        t.reload_now();
                    }
                    life.resources.reload_trust_now();
                    for a in life.resources.audits() {
                        a.reopen();
                    }
                    refresh_facts(&cfg, &fleet::current(&life.slots)).await;
                }
            }
        }
    })
}

/// Flushes every audit log, each within 5 s.
async fn flush_audits(life: &fleet::LifeContext) {
    for a in life.resources.audits() {
        let bound = std::time::Duration::from_secs(5);
        match tokio::time::timeout(bound, a.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("could not flush the audit log {}: {e}", a.path().display()),
            Err(_) => warn!(
                "the audit log {} did not flush within {bound:?}",
                a.path().display()
            ),
        }
    }
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

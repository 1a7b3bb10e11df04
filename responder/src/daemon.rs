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
use crate::security::{self, NodeSecurity, SharedTrust};
use crate::serve::{self, BusOptions};
use mco_core::provisioning::{files, ProvisioningConfig, PROVISIONING_COLLECTIVE};
use mco_security::policy::Authorizer;
use mco_security::NodeKey;

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

/// The `[provisioning]` settings if this responder starts in provisioning
/// mode: configured, not disabled, and enabled or without its certificate —
/// but never a node that was provisioned before and lost its certificate
/// (see [`ProvisioningConfig::lost_certificate`]; [`preflight`] refuses it).
pub fn provisioning_mode(cfg: &ResponderConfig) -> Option<&ProvisioningConfig> {
    cfg.provisioning
        .as_ref()
        .filter(|p| p.active(&cfg.security) && p.lost_certificate(&cfg.security).is_none())
}

/// The policy file that names who may drive the `provision` agent.
pub const PROVISION_POLICY: &str = "provision.policy";

/// Checks what the daemon needs before anything connects; returns warnings.
pub fn preflight(cfg: &ResponderConfig) -> Result<(HostedAgents, Vec<String>), DaemonError> {
    if let Some(msg) = cfg
        .provisioning
        .as_ref()
        .and_then(|p| p.lost_certificate(&cfg.security))
    {
        return Err(DaemonError::Unsupported(format!(
            "{}: {msg}",
            cfg.file.display()
        )));
    }
    if let Some(p) = provisioning_mode(cfg) {
        let file = cfg.file.display();
        // The bootstrap token ships in every image, so it cannot be what
        // decides who provisions a node: the policy does, and it denies by
        // default here as everywhere.
        let policy = cfg
            .security
            .policy_dir
            .as_ref()
            .map(|d| d.join(PROVISION_POLICY));
        if cfg.security.default_policy != "allow" && !policy.as_ref().is_some_and(|p| p.is_file()) {
            return Err(DaemonError::Unsupported(format!(
                "{file}: provisioning mode needs {} naming who may provision this node \
                 (for example `allow<TAB>user:provisioner<TAB>*<TAB>*<TAB>*`); without it every \
                 provision action would be denied",
                match &policy {
                    Some(p) => p.display().to_string(),
                    None => format!("security.policy_dir with a {PROVISION_POLICY}"),
                }
            )));
        }
        match &p.ca {
            Some(ca) if ca.exists() => {}
            _ => {
                return Err(DaemonError::Unsupported(format!(
                    "{file}: provisioning.ca must name the CA certificate shipped with the node"
                )))
            }
        }
        if let Err(e) = p.read_token() {
            return Err(DaemonError::Unsupported(format!(
                "{file}: provisioning.token_file cannot be read: {e}"
            )));
        }
        return Ok((HostedAgents::provisioning(cfg, true), Vec::new()));
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
        backoff: Backoff::default(),
        subscription_capacity: mco_core::limits::responder_queue_len(cfg.nats.max_payload),
        server_ca: prov.and_then(|p| p.ca.clone()),
        token,
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
/// (the binary fires it on SIGHUP).
///
/// In provisioning mode, `provision restart` of a single node stops the
/// daemon as SIGTERM would and re-executes it; with `--fleet`, each virtual
/// node leaves provisioning on its own, in-process (see [`crate::fleet`]).
pub async fn run(
    cfg: ResponderConfig,
    registry: HostedAgents,
    opts: Options,
    shutdown: watch::Receiver<bool>,
    reload: Arc<Notify>,
) -> Result<(), DaemonError> {
    let prov = provisioning_mode(&cfg).cloned();
    let fleet_provisioning = prov.is_some() && opts.fleet.is_some();
    let identity = cfg.identity.clone().unwrap_or_else(facts::default_identity);
    let names: Vec<(String, Option<usize>)> = match opts.fleet {
        None => vec![(identity.clone(), None)],
        Some(n) => (0..n)
            .map(|i| (format!("{identity}-{i:04}"), Some(i)))
            .collect(),
    };
    // `provision restart` stops the daemon as SIGTERM would, then re-executes it.
    let (stop_tx, stop_rx) = watch::channel(false);
    // Held to the end, so that `stop_rx` only ever changes by a stop.
    let _stop_held = stop_tx.clone();
    let restart = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let mut outer = shutdown.clone();
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            while !*outer.borrow_and_update() {
                if outer.changed().await.is_err() {
                    return;
                }
            }
            let _ = stop_tx.send(true);
        });
    }
    let restarts = fleet::Restarts::new(names.iter().map(|(n, _)| n.as_str()));
    let mut registry = registry;
    if prov.is_some() {
        let hook: mco_plugin_provision::RestartHook = if fleet_provisioning {
            restarts.hook()
        } else {
            let flag = restart.clone();
            Arc::new(move |_: &str| {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = stop_tx.send(true);
            })
        };
        registry = HostedAgents::provisioning_with(&cfg, true, Some(hook), fleet_provisioning);
    }
    let shutdown = stop_rx;
    let trust = if let Some(p) = &prov {
        warn!(
            servers = %p.servers.join(","),
            "PROVISIONING MODE: this node has no certificate yet; it joins only the {PROVISIONING_COLLECTIVE:?} collective and hosts only rpcutil and provision until it is provisioned"
        );
        if opts.fleet.is_some() && !p.state_dir.to_string_lossy().contains("{identity}") {
            return Err(DaemonError::Unsupported(format!(
                "{}: --fleet in provisioning mode needs {{identity}} in provisioning.state_dir, so that each virtual node has its own key and state",
                cfg.file.display()
            )));
        }
        let ca = p.ca.as_deref().unwrap_or(std::path::Path::new(""));
        // A CRL already in place (shipped, or left by an earlier configure) still applies;
        // one written later applies from then on.
        Some(Arc::new(SharedTrust::load_provisioning(
            ca,
            cfg.security.crl.as_deref(),
        )?))
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
    if prov.is_some() && cfg.security.default_policy == "allow" {
        warn!("PROVISIONING MODE WITH security.default_policy = \"allow\": every holder of a user certificate and the bootstrap token may provision this node; ship a provision.policy instead");
    }
    let registry = Arc::new(registry);
    // In provisioning mode the token is required on top of the policy, not
    // instead of it: the policy decides who may provision (fail closed).
    let authz = Arc::new(Authorizer::new(
        cfg.security.policy_dir.clone(),
        cfg.security.default_policy == "allow",
    ));
    let audit = match &cfg.security.audit_log {
        Some(p) => Some(AuditLog::open(p).map_err(|e| {
            DaemonError::Unsupported(format!("security.audit_log {}: {e}", p.display()))
        })?),
        None => None,
    };
    let collectives = match &prov {
        Some(_) => vec![PROVISIONING_COLLECTIVE.to_string()],
        None => cfg.collectives.clone(),
    };
    let shared = Shared {
        collectives: collectives.clone(),
        registry: registry.clone(),
        max_concurrent: cfg.agents.max_concurrent,
        authz,
        audit: audit.clone(),
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
            (Some(t), Some(p)) => {
                let dir = security::for_identity(&p.state_dir, &name);
                let key = NodeKey::load_or_create(&dir.join(files::NODE_KEY))?;
                info!(node = %name, key = %key.public_hex(), "provisioning key");
                Some(NodeSecurity::provisioning(key, t.clone()).bounded_by(&cfg.security))
            }
            (Some(t), None) if cfg.security.sign => Some(
                NodeSecurity::load(&cfg.security, &name, t.clone(), &presigner)?
                    .bounded_by(&cfg.security),
            ),
            _ => None,
        };
        nodes.push(Arc::new(NodeState::new(name, index, security, &shared)));
    }
    refresh_facts(&cfg, &nodes).await;

    let slots: fleet::NodeSlots = Arc::new(
        nodes
            .iter()
            .map(|n| std::sync::RwLock::new(n.clone()))
            .collect(),
    );
    let bus = bus_options(&cfg, prov.as_ref(), trust.is_some())?;
    let resources = fleet::Resources::new(audit.clone(), presigner);
    // In a provisioning fleet, nodes provisioned by an earlier run start in
    // normal mode and never connect to the provisioning broker.
    let state_dir = prov
        .as_ref()
        .map(|p| p.state_dir.clone())
        .unwrap_or_default();
    let on_disk = |node: &NodeState| {
        fleet_provisioning && fleet::provisioned_on_disk(&state_dir, &node.identity)
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
    let life = Arc::new(fleet::LifeContext {
        state_dir: state_dir.clone(),
        provisioning_bus: bus.clone(),
        grace: cfg.shutdown_grace,
        slots: slots.clone(),
        restarts,
        resources,
    });
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
        let grace = cfg.shutdown_grace;
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
    info!(
        nodes = nodes.len(),
        agents = %registry.names().collect::<Vec<_>>().join(","),
        collectives = %collectives.join(","),
        "responder serving {}",
        if nodes.len() == 1 { identity } else { format!("{} virtual nodes", nodes.len()) }
    );

    let refresher = {
        let cfg = cfg.clone();
        let slots = slots.clone();
        let life = life.clone();
        let mut rx = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(cfg.facts.refresh);
            tick.tick().await;
            let mut crl_tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = rx.changed() => break,
                    _ = tick.tick() => refresh_facts(&cfg, &fleet::current(&slots)).await,
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
                        refresh_facts(&cfg, &fleet::current(&slots)).await;
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
    if restart.load(std::sync::atomic::Ordering::SeqCst) {
        info!("responder stopped; restarting");
        crate::lifecycle::reexec();
        return Err(DaemonError::Unsupported(
            "provision restart: could not re-execute the responder".to_string(),
        ));
    }
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

//! The virtual nodes of a `--fleet` responder in provisioning mode, each
//! leaving provisioning on its own.
//!
//! One process serves N virtual nodes sharing one config file, so neither
//! half of a single node's provisioning fits: `configure` cannot rewrite the
//! shared file, and `restart` cannot re-execute the process. Instead
//! `configure` writes node X's normal-mode config to
//! `<state_dir of X>/responder.toml`, and `restart` asks the daemon (through
//! a [`Restarts`] table) to restart X alone: X's provisioning connection is
//! stopped gracefully and drained, X's own file is loaded, and X comes back
//! in normal mode with its own certificate, collectives, brokers and agents,
//! keeping the facts the fleet shares. At start-up a node whose file and
//! `configured` marker are already there starts in normal mode directly.
//!
//! The key decision is that each virtual node is one supervising task
//! ([`life`]) that owns its mode; the daemon never rebuilds the fleet. What
//! normal-mode nodes share — trust stores, authorizers, audit logs, agent
//! registries — is built once per distinct setting ([`Resources`]), so a
//! thousand nodes configured alike cost one of each.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_nats::Client;
use mco_core::config::{AgentsConfig, ResponderConfig};
use mco_core::provisioning::files;
use mco_security::policy::Authorizer;
use tokio::sync::{watch, Notify, Semaphore};
use tracing::{error, info, warn};

use crate::audit::AuditLog;
use crate::hosted::HostedAgents;
use crate::node::{NodeState, Shared};
use crate::security::{NodeSecurity, SharedTrust};
use crate::serve::{self, BusOptions};

/// Normal-mode connections set up at once when many nodes start together.
pub const CONNECT_CONCURRENCY: usize = 64;

/// How long draining a connection may take before it is dropped.
const DRAIN_BOUND: Duration = Duration::from_secs(2);

/// One slot per virtual node, holding the state it serves with now (the
/// provisioning one, then the normal one): what the fact refresher updates.
pub type NodeSlots = Arc<Vec<RwLock<Arc<NodeState>>>>;

/// The nodes currently in the slots.
pub fn current(slots: &NodeSlots) -> Vec<Arc<NodeState>> {
    slots
        .iter()
        .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).clone())
        .collect()
}

fn put(slots: &NodeSlots, slot: usize, node: Arc<NodeState>) {
    if let Some(s) = slots.get(slot) {
        *s.write().unwrap_or_else(|e| e.into_inner()) = node;
    }
}

/// Restart requests by identity: the `provision` agent's restart hook
/// notifies the node's entry; the node's [`life`] task waits on it.
#[derive(Default, Clone)]
pub struct Restarts {
    by_name: Arc<HashMap<String, Arc<Notify>>>,
}

impl Restarts {
    /// A table for these identities.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Restarts {
        Restarts {
            by_name: Arc::new(
                names
                    .into_iter()
                    .map(|n| (n.to_string(), Arc::new(Notify::new())))
                    .collect(),
            ),
        }
    }

    /// Asks node `identity` to restart into normal mode. A request made
    /// before the node waits for one is kept (one per node).
    pub fn request(&self, identity: &str) {
        match self.by_name.get(identity) {
            Some(n) => n.notify_one(),
            None => warn!(node = %identity, "restart asked for a node this process does not serve"),
        }
    }

    /// The hook the `provision` agent calls.
    pub fn hook(&self) -> mco_plugin_provision::RestartHook {
        let me = self.clone();
        Arc::new(move |identity: &str| me.request(identity))
    }

    fn of(&self, identity: &str) -> Arc<Notify> {
        self.by_name.get(identity).cloned().unwrap_or_default()
    }
}

/// Why a virtual node could not start in normal mode.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Its config file is missing, does not load, or is not for it.
    #[error("{0}")]
    Config(String),
    /// Its certificate, key, CA or CRL did not load.
    #[error(transparent)]
    Security(#[from] mco_security::LoadError),
    /// Its agents could not be set up.
    #[error(transparent)]
    HostedAgents(#[from] crate::hosted::HostedError),
    /// The broker connection could not be set up.
    #[error("cannot connect: {0}")]
    Connect(#[from] async_nats::ConnectError),
}

/// Node `identity`'s own config, written by `configure`:
/// `<state_dir of identity>/responder.toml`.
pub fn node_config_file(state_dir: &Path, identity: &str) -> PathBuf {
    mco_plugin_provision::node_config_file(state_dir, identity)
}

/// Whether node `identity` was provisioned already: its own config and the
/// `configured` marker are in its state directory.
pub fn provisioned_on_disk(state_dir: &Path, identity: &str) -> bool {
    let dir = mco_core::config::for_identity(state_dir, identity);
    dir.join(files::NODE_CONFIG).is_file() && dir.join(files::CONFIGURED).exists()
}

/// Why node `identity` must stay down: it was provisioned (its own config
/// and the `configured` marker are there) but the certificate or key its
/// config names is missing. Such a node does not go back into provisioning
/// mode by itself; the operator restores the files or removes the marker.
pub fn lost_certificate(state_dir: &Path, identity: &str) -> Option<String> {
    if !provisioned_on_disk(state_dir, identity) {
        return None;
    }
    let cfg = ResponderConfig::load(&node_config_file(state_dir, identity)).ok()?;
    let missing: Vec<String> = [&cfg.security.cert, &cfg.security.key]
        .into_iter()
        .flatten()
        .map(|p| crate::security::for_identity(p, identity))
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return None;
    }
    let marker = mco_core::config::for_identity(state_dir, identity).join(files::CONFIGURED);
    Some(format!(
        "it was provisioned ({} exists) but its certificate or key is missing: {}; it does not fall back into provisioning mode by itself: restore the files, or remove {} to provision it again",
        marker.display(),
        missing.join(", "),
        marker.display()
    ))
}

/// Loads node `identity`'s own config and checks that it brings the node up
/// in normal mode: for this identity, with its certificate and key in place.
pub fn load_node_config(state_dir: &Path, identity: &str) -> Result<ResponderConfig, StartError> {
    let file = node_config_file(state_dir, identity);
    let cfg = ResponderConfig::load(&file).map_err(|e| StartError::Config(e.to_string()))?;
    if cfg.identity.as_deref() != Some(identity) {
        return Err(StartError::Config(format!(
            "{}: identity is {:?}, not {identity:?}",
            file.display(),
            cfg.identity
        )));
    }
    if crate::provisioning::mode(&cfg).is_some() {
        return Err(StartError::Config(format!(
            "{}: it still starts in provisioning mode (certificate or key missing, or provisioning.enabled = true)",
            file.display()
        )));
    }
    if !cfg.security.insecure {
        if let Some(msg) = crate::security::missing_keys(&cfg.security, &file) {
            return Err(StartError::Config(msg));
        }
    }
    Ok(cfg)
}

/// One value per distinct key, made on first use. Few distinct keys are
/// expected (nodes configured alike share one), so a list is enough.
struct Memo<K, V>(Mutex<Vec<(K, V)>>);

impl<K: PartialEq, V: Clone> Memo<K, V> {
    fn new() -> Self {
        Memo(Mutex::new(Vec::new()))
    }

    fn get_or_try<E>(&self, key: K, make: impl FnOnce(&K) -> Result<V, E>) -> Result<V, E> {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, v)) = all.iter().find(|(k, _)| *k == key) {
            return Ok(v.clone());
        }
        let v = make(&key)?;
        all.push((key, v.clone()));
        Ok(v)
    }

    fn values(&self) -> Vec<V> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().map(|(_, v)| v.clone()).collect()
    }

    /// The value for `key`, if made.
    fn get(&self, key: &K) -> Option<V> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    /// Keeps `v` for `key` unless a value was made meanwhile; the one kept.
    fn keep(&self, key: K, v: V) -> V {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, kept)) = all.iter().find(|(k, _)| *k == key) {
            return kept.clone();
        }
        all.push((key, v.clone()));
        v
    }
}

/// What an agent registry is built from: agents, plugin tables, and the
/// directory relative plugin paths resolve against.
type HostedKey = (
    AgentsConfig,
    std::collections::BTreeMap<String, toml::Table>,
    PathBuf,
);

/// What normal-mode virtual nodes share, built once per distinct setting.
pub struct Resources {
    trusts: Memo<(PathBuf, Option<PathBuf>), Arc<SharedTrust>>,
    authz: Memo<(Option<PathBuf>, bool), Arc<Authorizer>>,
    audits: Memo<PathBuf, AuditLog>,
    registries: Memo<HostedKey, Arc<HostedAgents>>,
    connects: Semaphore,
    presigner: Arc<crate::security::Presigner>,
    /// A presigner with a pool, started when the first node whose own
    /// config asks for prepared nonces needs one and the process's has none.
    prepared: std::sync::OnceLock<Arc<crate::security::Presigner>>,
    /// Signs the RFC 8032 way, for nodes that do not ask for prepared nonces.
    inline: Arc<crate::security::Presigner>,
}

impl Resources {
    /// Empty, except for the audit log the daemon already opened (nodes
    /// naming the same file write through it) and the process's presigner.
    pub fn new(audit: Option<AuditLog>, presigner: Arc<crate::security::Presigner>) -> Resources {
        let audits = Memo::new();
        if let Some(a) = audit {
            let Ok(_) = audits.get_or_try(a.path().to_path_buf(), |_| Ok::<_, Infallible>(a));
        }
        Resources {
            trusts: Memo::new(),
            authz: Memo::new(),
            audits,
            registries: Memo::new(),
            connects: Semaphore::new(CONNECT_CONCURRENCY),
            presigner,
            prepared: std::sync::OnceLock::new(),
            inline: Arc::new(crate::security::Presigner::inline()),
        }
    }

    /// The presigner a node signs with under its own `[security] presign`:
    /// prepared nonces only for a node whose config asks for them.
    fn presigner_for(&self, cfg: &ResponderConfig) -> Arc<crate::security::Presigner> {
        if !cfg.security.presign {
            return self.inline.clone();
        }
        if self.presigner.capacity() > 0 {
            return self.presigner.clone();
        }
        self.prepared
            .get_or_init(|| crate::security::presigner(1))
            .clone()
    }

    /// The trust store of a CA and CRL, shared by the nodes that name the
    /// same files. A new one is read and checked on a blocking thread, and
    /// outside the memo's lock: with a CRL per node, nodes starting together
    /// do not wait for each other's.
    async fn trust(&self, ca: &Path, crl: Option<&Path>) -> Result<Arc<SharedTrust>, StartError> {
        let key = (ca.to_path_buf(), crl.map(Path::to_path_buf));
        if let Some(t) = self.trusts.get(&key) {
            return Ok(t);
        }
        let (ca, crl) = key.clone();
        let loaded = tokio::task::spawn_blocking(move || SharedTrust::load(&ca, crl.as_deref()))
            .await
            .map_err(|e| StartError::Config(format!("loading the trust store: {e}")))??;
        Ok(self.trusts.keep(key, Arc::new(loaded)))
    }

    fn authorizer(&self, cfg: &ResponderConfig) -> Arc<Authorizer> {
        let key = (
            cfg.security.policy_dir.clone(),
            cfg.security.default_policy == "allow",
        );
        let Ok(a) = self.authz.get_or_try(key, |(dir, allow)| {
            Ok::<_, Infallible>(Arc::new(Authorizer::new(dir.clone(), *allow)))
        });
        a
    }

    fn audit(&self, cfg: &ResponderConfig) -> Result<Option<AuditLog>, StartError> {
        let Some(path) = &cfg.security.audit_log else {
            return Ok(None);
        };
        self.audits
            .get_or_try(path.clone(), |path| {
                AuditLog::open(path).map_err(|e| {
                    StartError::Config(format!("security.audit_log {}: {e}", path.display()))
                })
            })
            .map(Some)
    }

    fn registry(&self, cfg: &ResponderConfig) -> Result<Arc<HostedAgents>, StartError> {
        // Relative plugin paths resolve against the config file's directory.
        let base = cfg.file.parent().unwrap_or(Path::new("")).to_path_buf();
        let key = (cfg.agents.clone(), cfg.plugin.clone(), base);
        self.registries.get_or_try(key, |_| {
            let (reg, warnings) = HostedAgents::from_config(cfg)?;
            for w in warnings {
                warn!("{w}");
            }
            Ok(Arc::new(reg))
        })
    }

    /// Re-reads every CRL that changed.
    pub fn refresh_trust(&self) {
        for t in self.trusts.values() {
            t.refresh();
        }
    }

    /// Re-reads every CRL, changed or not (SIGHUP).
    pub fn reload_trust_now(&self) {
        for t in self.trusts.values() {
            t.reload_now();
        }
    }

    /// Every audit log in use.
    pub fn audits(&self) -> Vec<AuditLog> {
        self.audits.values()
    }

    /// Node `identity` in normal mode from `cfg`, connected; `index` is its
    /// place in the fleet and `like` the node whose facts it takes over.
    async fn start(
        &self,
        cfg: &ResponderConfig,
        identity: &str,
        index: Option<usize>,
        like: &NodeState,
    ) -> Result<(Client, Arc<NodeState>, BusOptions), StartError> {
        let trust = match (&cfg.security.insecure, &cfg.security.ca) {
            (false, Some(ca)) => Some(self.trust(ca, cfg.security.crl.as_deref()).await?),
            _ => None,
        };
        let security = match &trust {
            Some(t) if cfg.security.sign => Some(
                NodeSecurity::load(&cfg.security, identity, t.clone(), &self.presigner_for(cfg))?
                    .bounded_by(&cfg.security),
            ),
            _ => None,
        };
        let shared = Shared {
            collectives: cfg.collectives.clone(),
            registry: self.registry(cfg)?,
            max_concurrent: cfg.agents.max_concurrent,
            authz: self.authorizer(cfg),
            audit: self.audit(cfg)?,
            inventory: cfg
                .inventory
                .enabled
                .then(|| Arc::new(cfg.inventory.clone())),
        };
        let node = Arc::new(NodeState::new(
            identity.to_string(),
            index,
            security,
            &shared,
        ));
        let snap = like.snapshot();
        node.set_facts(&snap.facts, &snap.classes);
        let bus = crate::daemon::bus_options(cfg, None, trust.is_some())
            .map_err(|e| StartError::Config(e.to_string()))?;
        let client = {
            let _permit = self.connects.acquire().await;
            serve::connect(&bus, identity).await?
        };
        Ok((client, node, bus))
    }
}

/// What a virtual node's [`life`] needs besides its own state.
pub struct LifeContext {
    /// The `[provisioning] state_dir` template (with `{identity}`).
    pub state_dir: PathBuf,
    /// The provisioning broker connection settings.
    pub provisioning_bus: BusOptions,
    /// The shared config's grace period, for the provisioning connection.
    pub grace: Duration,
    /// Where the daemon sees each node's current state.
    pub slots: NodeSlots,
    /// Restart requests.
    pub restarts: Restarts,
    /// Shared normal-mode resources.
    pub resources: Resources,
}

/// Resolves once `rx` reads true, or its sender is gone.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Closes a connection: pending messages flushed, subscriptions ended.
async fn close(client: Client) {
    if tokio::time::timeout(DRAIN_BOUND, client.drain())
        .await
        .is_err()
    {
        warn!("a connection did not drain within {DRAIN_BOUND:?}");
    }
}

/// The life of one virtual node until `shutdown`: in provisioning mode on
/// `provisioning` (the node's provisioning state and its connection, or
/// `None` when it was provisioned before this process started) until a
/// restart request, then in normal mode from its own config. A node that
/// cannot start in normal mode says why and serves in provisioning mode
/// again, so that a provisioner can still reach it.
pub async fn life(
    ctx: Arc<LifeContext>,
    slot: usize,
    pnode: Arc<NodeState>,
    mut provisioning: Option<Client>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), async_nats::SubscribeError> {
    let identity = pnode.identity.clone();
    let restart = ctx.restarts.of(&identity);
    let mut normal = provisioning.is_none();
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        if normal {
            let started = match load_node_config(&ctx.state_dir, &identity) {
                Ok(cfg) => ctx
                    .resources
                    .start(&cfg, &identity, pnode.fleet_index(), &pnode)
                    .await
                    .map(|(c, n, b)| (c, n, b, cfg.shutdown_grace)),
                Err(e) => Err(e),
            };
            match started {
                Ok((client, node, bus, grace)) => {
                    put(&ctx.slots, slot, node.clone());
                    info!(node = %identity, collectives = %node.collectives.join(","), "provisioned: now serving the main collective");
                    let r =
                        serve::serve(client.clone(), node, bus.max_payload, shutdown, grace).await;
                    close(client).await;
                    return r;
                }
                Err(e) => {
                    if let Some(msg) = lost_certificate(&ctx.state_dir, &identity) {
                        // Never back into provisioning by itself: that would
                        // hand a provisioned node to any token holder.
                        error!(node = %identity, "cannot start in normal mode: {e}; {msg}; this node stays down");
                        return Ok(());
                    }
                    error!(node = %identity, "cannot start in normal mode: {e}; serving in provisioning mode");
                    normal = false;
                    continue;
                }
            }
        }
        let client = match provisioning.take() {
            Some(c) => c,
            None => match serve::connect(&ctx.provisioning_bus, &identity).await {
                Ok(c) => c,
                Err(e) => {
                    error!(node = %identity, "cannot set up the provisioning connection: {e}");
                    return Ok(());
                }
            },
        };
        put(&ctx.slots, slot, pnode.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut task = tokio::spawn(serve::serve(
            client.clone(),
            pnode.clone(),
            ctx.provisioning_bus.max_payload,
            stop_rx,
            ctx.grace,
        ));
        let mut outer = shutdown.clone();
        let restarting = tokio::select! {
            r = &mut task => {
                close(client).await;
                return r.unwrap_or(Ok(()));
            }
            _ = restart.notified() => true,
            _ = stopped(&mut outer) => false,
        };
        let _ = stop_tx.send(true);
        let r = task.await;
        close(client).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(node = %identity, "the provisioning connection ended badly: {e}"),
            Err(e) => warn!(node = %identity, "the provisioning task failed: {e}"),
        }
        if !restarting {
            return Ok(());
        }
        info!(node = %identity, "restarting into normal mode");
        normal = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_node_is_provisioned_on_disk_with_its_config_and_the_marker() {
        let tmp = tempfile::tempdir().unwrap();
        let template = tmp.path().join("state/{identity}");
        let dir = tmp.path().join("state/n-0001");
        assert!(!provisioned_on_disk(&template, "n-0001"));
        write(&dir.join(files::NODE_CONFIG), "identity = \"n-0001\"\n");
        assert!(!provisioned_on_disk(&template, "n-0001"), "no marker yet");
        write(&dir.join(files::CONFIGURED), "");
        assert!(provisioned_on_disk(&template, "n-0001"));
        assert!(!provisioned_on_disk(&template, "n-0002"));
        assert_eq!(
            node_config_file(&template, "n-0001"),
            dir.join("responder.toml")
        );
    }

    #[test]
    fn a_node_config_must_be_for_the_node_and_bring_it_up_in_normal_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let template = tmp.path().join("state/{identity}");
        let dir = tmp.path().join("state/n-0001");
        let cert = dir.join("ssl/node.pem");
        let key = dir.join("ssl/node.key");
        let text = |identity: &str| {
            format!(
                "identity = {identity:?}\n[security]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n[provisioning]\nservers = [\"tls://p:1\"]\ntoken_file = \"/t\"\nca = \"/ca.pem\"\n",
                ca = dir.join("ssl/ca.pem").display().to_string(),
                cert = cert.display().to_string(),
                key = key.display().to_string(),
            )
        };
        let err = load_node_config(&template, "n-0001").unwrap_err();
        assert!(err.to_string().contains("responder.toml"), "{err}");

        write(&dir.join(files::NODE_CONFIG), &text("n-0002"));
        let err = load_node_config(&template, "n-0001").unwrap_err();
        assert!(err.to_string().contains("not \"n-0001\""), "{err}");

        write(&dir.join(files::NODE_CONFIG), &text("n-0001"));
        let err = load_node_config(&template, "n-0001").unwrap_err();
        assert!(err.to_string().contains("provisioning mode"), "{err}");

        // Configured without its certificate: it stays down rather than
        // going back into provisioning mode.
        assert_eq!(lost_certificate(&template, "n-0001"), None, "no marker");
        write(&dir.join(files::CONFIGURED), "");
        let lost = lost_certificate(&template, "n-0001").expect("lost");
        assert!(
            lost.contains("node.pem") && lost.contains("configured"),
            "{lost}"
        );

        write(&cert, "certificate");
        write(&key, "key");
        assert_eq!(lost_certificate(&template, "n-0001"), None);
        let cfg = load_node_config(&template, "n-0001").unwrap();
        assert_eq!(cfg.identity.as_deref(), Some("n-0001"));
    }

    #[test]
    fn a_restart_asked_before_the_node_waits_is_kept() {
        use futures::FutureExt;
        let r = Restarts::new(["a", "b"]);
        r.request("a");
        r.request("nobody");
        assert!(r.of("a").notified().now_or_never().is_some(), "a was asked");
        assert!(r.of("a").notified().now_or_never().is_none(), "once");
        assert!(r.of("b").notified().now_or_never().is_none(), "b was not");
        (r.hook())("b");
        assert!(
            r.of("b").notified().now_or_never().is_some(),
            "the hook asks b"
        );
    }
}

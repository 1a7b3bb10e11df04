//! The provisioner service: its state, its main loop, and how nodes are
//! taken up (`mco-provisioner run`).
//!
//! Every `interval`, and at once when a node announces itself on
//! `provisioning.registration.>`, the nodes of the `provisioning`
//! collective are considered; each is worked on by one of `workers` tasks:
//!
//! 1. `provision lock` (a node locked by another provisioner is left to it),
//!    `rpcutil inventory` for its facts;
//! 2. the expected check — an unexpected node stays locked, is reported and
//!    is never signed;
//! 3. a master picked among the masters discovered in the main collective
//!    (none → the node waits and the operator is told);
//! 4. `provision set_master`;
//! 5. `provision gencsr` — the CSR must be for `node:IDENTITY` and carry the
//!    key the node reports; old certificates of the name are cleaned on the
//!    CA and on every master hosting the `ca` agent, unless this journal
//!    already holds an attempt for that very key;
//! 6. `ca sign` (the CA returns the certificate it already issued for the
//!    same key, so a resumed run never signs twice); the certificate is
//!    fsynced into the journal before it is used;
//! 7. `provision configure` with the certificate, CA, CRL, broker URLs and
//!    collectives;
//! 8. `provision run`, then `run phase=final` if configured;
//! 9. `provision restart`, then `rpcutil ping` in the main collective until
//!    the node answers with its new certificate;
//! 10. every outcome goes to the notifiers.
//!
//! A failed attempt is retried with exponential backoff until `retries`;
//! its lock is shortened to the backoff, so the node is free again exactly
//! when it is due.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use mco_client::error::ClientError;
use mco_client::pins::KeyPins;
use mco_client::session::{Session, Warnings};
use mco_core::config::ClientConfig;
use mco_core::provisioning::PROVISIONING_COLLECTIVE;
use mco_core::wire::now_ms;
use mco_core::Filter;
use serde_json::{Map, Value};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::announce::{announced_at, pending_max, ANNOUNCED_FACTS_MAX};
use crate::config::ProvisionerConfig;
use crate::masters::{Master, Picker};
use crate::metrics::Metrics;
use crate::registry::ExpectedNodes;
use crate::state::{Journal, Record};
use crate::step::due;

/// The masters and the CA node as last discovered.
#[derive(Default)]
pub(crate) struct MastersCache {
    pub(crate) list: Arc<Vec<Master>>,
    pub(crate) ca: Option<String>,
    pub(crate) at: Option<Instant>,
}

/// The running provisioner.
pub struct Provisioner {
    pub(crate) cfg: ProvisionerConfig,
    pub(crate) prov: Session,
    pub(crate) main: Session,
    pub(crate) main_cfg: ClientConfig,
    pub(crate) prov_cfg: ClientConfig,
    pub(crate) token: String,
    pub(crate) ca_pem: String,
    pub(crate) journal: Arc<Mutex<Journal>>,
    pub(crate) pins: Arc<KeyPins>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    pub(crate) picker: Mutex<Picker>,
    pub(crate) masters: tokio::sync::Mutex<MastersCache>,
    pub(crate) masters_refresh: Duration,
    /// Nodes taken up and not finished; a task each.
    inflight: Mutex<HashSet<String>>,
    /// Told whenever a node leaves `inflight`.
    finished: Notify,
    /// Set at shutdown: no node is taken up, no new step starts.
    pub(crate) closing: AtomicBool,
    pub(crate) workers: Arc<Semaphore>,
    pub(crate) ca_slots: Semaphore,
    pub(crate) expected_kv: Option<ExpectedNodes>,
}

/// Milliseconds since the epoch.
pub(crate) fn now() -> u64 {
    now_ms()
}

impl Provisioner {
    /// Loads both client configs, the token, the CA, the journal (locking
    /// it) and the pins, and connects to both brokers.
    pub async fn start(cfg: ProvisionerConfig) -> Result<Arc<Provisioner>, ClientError> {
        let main_cfg = mco_client::config::load(Some(&cfg.main_config), &[])?;
        let prov_cfg = mco_client::config::load(Some(&cfg.provisioning_config), &[])?;
        let token_file = cfg
            .token_file
            .clone()
            .or_else(|| prov_cfg.nats.token_file.clone())
            .ok_or_else(|| {
                ClientError::Usage(format!(
                    "{}: no token_file, and {} has no nats.token_file",
                    cfg.file.display(),
                    cfg.provisioning_config.display()
                ))
            })?;
        let token = std::fs::read_to_string(&token_file)
            .map_err(|e| ClientError::file(format!("token_file {}", token_file.display()), e))?
            .trim()
            .to_string();
        if token.is_empty() {
            return Err(ClientError::Usage(format!(
                "token_file {} is empty",
                token_file.display()
            )));
        }
        let ca_path = main_cfg
            .security
            .ca
            .clone()
            .unwrap_or_else(|| mco_core::config::expand_home("~/.config/mco/pki/ca.pem"));
        let ca_pem = std::fs::read_to_string(&ca_path).map_err(|e| {
            ClientError::file(format!("the CA certificate {}", ca_path.display()), e)
        })?;
        let path = cfg.state_file.clone();
        let journal = tokio::task::spawn_blocking(move || Journal::open(&path))
            .await
            .map_err(|e| ClientError::Io(e.to_string()))?
            .map_err(|e| ClientError::Io(e.to_string()))?;
        let pins = Arc::new(
            KeyPins::load(&cfg.pins_file).map_err(|e| ClientError::Verification(e.to_string()))?,
        );
        let mut prov_client = prov_cfg.clone();
        prov_client.collective = PROVISIONING_COLLECTIVE.to_string();
        // The bootstrap token is the password of the provisioning broker's one user.
        if prov_client.nats.user.is_none() {
            prov_client.nats.user = Some(mco_core::provisioning::BROKER_USER.to_string());
        }
        let prov = Session::connect(&prov_client, Warnings::Log)
            .await?
            .with_pins(pins.clone());
        let main = Session::connect(&main_cfg, Warnings::Log).await?;
        let expected_kv = match &cfg.expected.kv_bucket {
            Some(bucket) => Some(
                ExpectedNodes::open(main.bus().client.clone(), bucket, cfg.request_timeout)
                    .await
                    .map_err(|e| {
                        ClientError::bus("opening expected.kv_bucket", std::io::Error::other(e))
                    })?,
            ),
            None => None,
        };
        let picker = Picker::new(
            cfg.masters.criteria.clone(),
            cfg.masters.load_fact.clone(),
            cfg.masters.per_node,
        );
        Ok(Arc::new(Provisioner {
            workers: Arc::new(Semaphore::new(cfg.workers)),
            ca_slots: Semaphore::new(cfg.ca_concurrency),
            expected_kv,
            masters_refresh: cfg.masters.refresh,
            cfg,
            prov,
            main,
            main_cfg,
            prov_cfg,
            token,
            ca_pem,
            journal: Arc::new(Mutex::new(journal)),
            pins,
            metrics: Arc::new(Metrics::default()),
            picker: Mutex::new(picker),
            masters: tokio::sync::Mutex::new(MastersCache::default()),
            inflight: Mutex::new(HashSet::new()),
            finished: Notify::new(),
            closing: AtomicBool::new(false),
        }))
    }

    /// Serves until `shutdown` resolves: discovery every interval,
    /// announcements as they come. Then it takes up no node and starts no
    /// step, and waits up to `shutdown_grace` for the steps in flight; an
    /// attempt cut short resumes from the journal at the next start.
    pub async fn serve(self: &Arc<Self>, shutdown: impl Future<Output = ()>) {
        if let Some(addr) = self.cfg.metrics_listen {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    // Port 0 picks a free port; the log says which.
                    let bound = l.local_addr().unwrap_or(addr);
                    info!("serving counters on http://{bound}/metrics");
                    tokio::spawn(super::metrics::serve(l, self.metrics.clone()));
                }
                Err(e) => warn!("metrics_listen {addr}: {e}; counters are not served"),
            }
        }
        let mut announcements = if self.cfg.registration {
            match self
                .prov
                .bus()
                .client
                .subscribe(format!("{PROVISIONING_COLLECTIVE}.registration.>"))
                .await
            {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!("cannot subscribe to announcements: {e}; relying on discovery");
                    None
                }
            }
        } else {
            None
        };
        self.confirm_restarted();
        // A revocation published while the provisioner runs reaches both of its trust stores.
        let crl_watch = self.main_cfg.inventory.watch_crl.then(|| {
            let stores: Vec<_> = [&self.main, &self.prov]
                .iter()
                .filter_map(|s| s.bus().opener.trust.clone())
                .collect();
            (!stores.is_empty()).then(|| {
                tokio::spawn(mco_client::crl_watch::watch(
                    self.main.bus().client.clone(),
                    stores,
                    self.main_cfg.inventory.crl_bucket.clone(),
                ))
            })
        });
        info!(
            workers = self.cfg.workers,
            interval = ?self.cfg.interval,
            state = %self.cfg.state_file.display(),
            "provisioner started"
        );
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {
                    let me = self.clone();
                    // A pass never holds up announcements.
                    tokio::spawn(async move { me.pass().await });
                }
                msg = next(&mut announcements) => {
                    match msg {
                        Some(m) => self.announced(&m.payload),
                        None => announcements = None,
                    }
                }
            }
        }
        if let Some(task) = crl_watch.flatten() {
            task.abort();
        }
        self.closing.store(true, Ordering::SeqCst);
        let left = self.drain(self.cfg.shutdown_grace).await;
        self.save_pins();
        // Both sessions live as long as the provisioner (it is shared by its
        // tasks), so what they learnt is saved here, explicitly.
        self.prov.save_caches();
        self.main.save_caches();
        if left.is_empty() {
            info!("provisioner stopped; every step in flight finished");
        } else {
            warn!(
                nodes = ?left,
                "provisioner stopped with steps still in flight after {:?}; they resume from the journal",
                self.cfg.shutdown_grace
            );
        }
    }

    /// Waits until no node is in flight or `grace` has passed; the nodes
    /// still in flight then.
    async fn drain(&self, grace: Duration) -> Vec<String> {
        let deadline = Instant::now() + grace;
        loop {
            // Registered before looking, so a node finishing in between is not missed.
            let told = self.finished.notified();
            let left: Vec<String> = {
                let inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
                inflight.iter().cloned().collect()
            };
            if left.is_empty() {
                return left;
            }
            info!(count = left.len(), "waiting for the steps in flight");
            if tokio::time::timeout_at(deadline, told).await.is_err() {
                let mut left = left;
                left.sort();
                return left;
            }
        }
    }

    /// Whether shutdown has begun.
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    fn announced(self: &Arc<Self>, payload: &[u8]) {
        match self.prov.bus().opener.open(payload) {
            Ok(reply) => {
                let Some(seen_ms) = announced_at(reply.time_ms, now()) else {
                    warn!(node = %reply.sender, "ignored an announcement that is not fresh (a replay, or a clock far off)");
                    return;
                };
                let facts = reply
                    .data
                    .get("facts")
                    .and_then(Value::as_object)
                    .filter(|f| serde_json::to_vec(f).map_or(0, |b| b.len()) <= ANNOUNCED_FACTS_MAX)
                    .cloned();
                debug!(node = %reply.sender, "announced");
                self.consider(reply.sender, facts, seen_ms);
            }
            Err(e) => warn!("ignored an announcement: {e:?}"),
        }
    }

    /// One discovery of the provisioning collective.
    pub async fn pass(self: &Arc<Self>) {
        let asked = now();
        let found = self
            .prov
            .ping(
                PROVISIONING_COLLECTIVE,
                Filter::default(),
                self.prov_cfg.discovery_timeout,
                self.prov_cfg.discovery_window,
            )
            .await;
        match found {
            Ok(nodes) => {
                debug!(count = nodes.len(), "discovered unprovisioned nodes");
                for (node, _) in nodes {
                    self.consider(node, None, asked);
                }
            }
            Err(e) => warn!("discovery in the provisioning collective failed: {e}"),
        }
        self.save_pins();
    }

    fn save_pins(&self) {
        if let Err(e) = self.pins.save() {
            warn!("key pins not saved: {e}");
        }
    }

    /// Starts work on `node` unless it is being worked on, given up, or not due.
    /// `seen_ms` is when the node was known to be in the provisioning
    /// collective: a sighting older than its provisioning is stale.
    fn consider(self: &Arc<Self>, node: String, facts: Option<Map<String, Value>>, seen_ms: u64) {
        if self.closing() {
            return;
        }
        if !mco_core::subject::valid_token(&node) || mco_pki::check_name(&node).is_err() {
            warn!("ignored a node with an unusable identity {node:?}");
            return;
        }
        let due = {
            let j = self.journal.lock().unwrap_or_else(|e| e.into_inner());
            due(j.get(&node), seen_ms, now())
        };
        if !due {
            return;
        }
        {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            if inflight.contains(&node) {
                return;
            }
            // Nodes past the bound wait for the next discovery pass, not in
            // tasks of ours: however many identities are announced, the
            // provisioner holds at most this many.
            if inflight.len() >= pending_max(self.cfg.workers) {
                debug!(node = %node, "all {} places are taken; left for a later pass", inflight.len());
                return;
            }
            inflight.insert(node.clone());
        }
        let me = self.clone();
        tokio::spawn(async move {
            let permit = me.workers.clone().acquire_owned().await;
            if permit.is_ok() && !me.closing() {
                me.work(&node, facts).await;
            }
            me.inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&node);
            me.finished.notify_waiters();
        });
    }

    /// Writes `node`'s record (fsynced when `durable`).
    pub(crate) async fn save(&self, node: &str, rec: &Record, durable: bool) -> Result<(), String> {
        let j = self.journal.clone();
        let (node, rec) = (node.to_string(), rec.clone());
        tokio::task::spawn_blocking(move || {
            j.lock()
                .unwrap_or_else(|e| e.into_inner())
                .put(&node, rec, durable)
        })
        .await
        .map_err(|e| format!("journal: {e}"))?
        .map_err(|e| format!("journal: {e}"))
    }
}

async fn next(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

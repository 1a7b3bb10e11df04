//! The provisioner service (`mco provision run`).
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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use mco_core::config::ClientConfig;
use mco_core::provisioning::{MAX_LOCK_EXPIRY_S, PROVISIONING_COLLECTIVE};
use mco_core::wire::now_ms;
use mco_core::{Filter, Status as WireStatus};
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::announce::{announced_at, pending_max, ANNOUNCED_FACTS_MAX};
use super::config::ProvisionerConfig;
use super::masters::{Master, Picker, Reason};
use super::metrics::Metrics;
use super::notify::Event;
use super::state::{Journal, Record, Status};
use crate::error::ClientError;
use crate::pins::KeyPins;
use crate::rpc::{Call, Wait};
use crate::session::{Session, Warnings};

/// How a step ended badly.
#[derive(Debug)]
enum Stop {
    /// Another provisioner holds the node.
    Busy(String),
    /// Not expected, or its CSR is not acceptable: never signed.
    Refused(String),
    /// No master to give it.
    Waiting(String),
    /// The step failed; retried later.
    Failed(String),
}

/// A request that got no good answer.
#[derive(Debug)]
enum Fail {
    /// The node said no.
    Status(String),
    /// Silence, or the bus failed.
    NoReply(String),
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Status(m) | Fail::NoReply(m) => f.write_str(m),
        }
    }
}

impl From<Fail> for Stop {
    fn from(f: Fail) -> Stop {
        Stop::Failed(f.to_string())
    }
}

#[derive(Default)]
struct MastersCache {
    list: Arc<Vec<Master>>,
    ca: Option<String>,
    at: Option<Instant>,
}

/// The running provisioner.
pub struct Provisioner {
    cfg: ProvisionerConfig,
    prov: Session,
    main: Session,
    main_cfg: ClientConfig,
    prov_cfg: ClientConfig,
    token: String,
    ca_pem: String,
    journal: Arc<Mutex<Journal>>,
    pins: Arc<KeyPins>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    picker: Mutex<Picker>,
    masters: tokio::sync::Mutex<MastersCache>,
    masters_refresh: Duration,
    inflight: Mutex<HashSet<String>>,
    workers: Arc<Semaphore>,
    ca_slots: Semaphore,
    expected_kv: Option<super::registry::ExpectedNodes>,
}

fn now() -> u64 {
    now_ms()
}

impl Provisioner {
    /// Loads both client configs, the token, the CA, the journal (locking
    /// it) and the pins, and connects to both brokers.
    pub async fn start(cfg: ProvisionerConfig) -> Result<Arc<Provisioner>, ClientError> {
        let main_cfg = crate::config::load(Some(&cfg.main_config), &[])?;
        let prov_cfg = crate::config::load(Some(&cfg.provisioning_config), &[])?;
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
        let prov = Session::connect(&prov_client, Warnings::Log)
            .await?
            .with_pins(pins.clone());
        let main = Session::connect(&main_cfg, Warnings::Log).await?;
        let expected_kv = match &cfg.expected.kv_bucket {
            Some(bucket) => Some(
                super::registry::ExpectedNodes::open(
                    prov.bus().client.clone(),
                    bucket,
                    cfg.request_timeout,
                )
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
        }))
    }

    /// Runs until `stop` resolves: discovery every interval, announcements
    /// as they come.
    pub async fn run(self: &Arc<Self>, stop: impl std::future::Future<Output = ()>) {
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
        info!(
            workers = self.cfg.workers,
            interval = ?self.cfg.interval,
            state = %self.cfg.state_file.display(),
            "provisioner started"
        );
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(self.cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
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
        self.save_pins();
        // Both sessions live as long as the provisioner (it is shared by its
        // tasks), so what they learnt is saved here, explicitly.
        self.prov.save_caches();
        self.main.save_caches();
        info!("provisioner stopped; unfinished nodes resume from the journal");
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
        if !mco_core::subject::valid_token(&node) {
            warn!("ignored a node with an unusable identity {node:?}");
            return;
        }
        let due = {
            let j = self.journal.lock().unwrap_or_else(|e| e.into_inner());
            match j.get(&node) {
                None => true,
                Some(r) => match r.status {
                    Status::GaveUp => false,
                    Status::Failed => now() >= r.retry_at_ms,
                    // Looked at again each interval if it was not expected,
                    // after the longest backoff if its CSR was refused.
                    Status::Refused => now() >= r.retry_at_ms,
                    // Back in provisioning after it was provisioned (re-imaged),
                    // unless the sighting predates the provisioning.
                    Status::Provisioned => seen_ms > r.updated_ms,
                    _ => true,
                },
            }
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
            if permit.is_ok() {
                me.work(&node, facts).await;
            }
            me.inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&node);
        });
    }

    async fn save(&self, node: &str, rec: &Record, durable: bool) -> Result<(), Stop> {
        let j = self.journal.clone();
        let (node, rec) = (node.to_string(), rec.clone());
        tokio::task::spawn_blocking(move || {
            j.lock()
                .unwrap_or_else(|e| e.into_inner())
                .put(&node, rec, durable)
        })
        .await
        .map_err(|e| Stop::Failed(format!("journal: {e}")))?
        .map_err(|e| Stop::Failed(format!("journal: {e}")))
    }

    /// One attempt at one node, start to finish.
    async fn work(self: &Arc<Self>, node: &str, facts: Option<Map<String, Value>>) {
        let started = Instant::now();
        let previous = self
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .cloned();
        let mut rec = previous.clone().unwrap_or_else(|| Record::new(now()));
        if rec.status == Status::Refused
            && rec
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("not expected"))
        {
            // Still locked out by us: only the expected check can change.
            if let Err(e) = self.check_expected(node).await {
                rec.retry_at_ms = now() + self.cfg.interval.as_millis() as u64;
                if let Stop::Refused(msg) | Stop::Failed(msg) = e {
                    rec.error = Some(msg);
                }
                let _ = self.save(node, &rec, false).await;
                return;
            }
        }
        if rec.status == Status::Provisioned {
            // Back in the provisioning collective: re-imaged. Start over,
            // keeping the certificate in case the key is the same.
            rec.attempts = 0;
        }
        // The lock comes first: a node someone else holds is not ours to count.
        let lock = self.lock(node, self.cfg.lock_expiry).await;
        if let Err(Fail::Status(msg)) = &lock {
            if msg.contains("locked by") {
                debug!(node, "skipped: {msg}");
                Metrics::bump(&self.metrics.busy);
                return;
            }
        }
        Metrics::bump_gauge(&self.metrics.in_progress, 1);
        rec.attempts += 1;
        rec.status = Status::InProgress;
        rec.error = None;
        rec.step = None;
        rec.updated_ms = now();
        let outcome = match lock {
            Err(f) => Err(("lock", Stop::from(f))),
            Ok(()) => match self.save(node, &rec, false).await {
                Err(e) => Err(("journal", e)),
                Ok(()) => self.steps(node, facts, &mut rec).await,
            },
        };
        Metrics::bump_gauge(&self.metrics.in_progress, -1);
        let took = started.elapsed();
        let was = previous.map(|p| p.status);
        rec.updated_ms = now();
        let (word, step, error) = match outcome {
            Ok(()) => {
                rec.status = Status::Provisioned;
                rec.error = None;
                Metrics::bump(&self.metrics.provisioned);
                info!(node, master = ?rec.master, ms = took.as_millis() as u64, "provisioned");
                ("provisioned", None, None)
            }
            Err((step, Stop::Busy(msg))) => {
                debug!(node, step, "left to another provisioner: {msg}");
                rec.attempts = rec.attempts.saturating_sub(1);
                rec.status = was.unwrap_or(Status::Failed);
                let _ = self.save(node, &rec, false).await;
                return;
            }
            Err((step, Stop::Refused(msg))) => {
                rec.status = Status::Refused;
                rec.attempts = rec.attempts.saturating_sub(1);
                rec.error = Some(msg.clone());
                let wait = if msg.starts_with("not expected") {
                    self.cfg.interval
                } else {
                    self.cfg.max_backoff
                };
                rec.retry_at_ms = now() + wait.as_millis() as u64;
                // Locked out: no one else provisions it meanwhile.
                let _ = self
                    .lock(node, self.cfg.max_backoff.max(self.cfg.lock_expiry))
                    .await;
                warn!(node, "refused: {msg}");
                if was == Some(Status::Refused) {
                    let _ = self.save(node, &rec, false).await;
                    return;
                }
                Metrics::bump(&self.metrics.refused);
                ("refused", Some(step), Some(msg))
            }
            Err((step, Stop::Waiting(msg))) => {
                rec.status = Status::Waiting;
                rec.attempts = rec.attempts.saturating_sub(1);
                rec.error = Some(msg.clone());
                let _ = self.unlock(node).await;
                if was == Some(Status::Waiting) {
                    let _ = self.save(node, &rec, false).await;
                    return;
                }
                warn!(node, "waiting: {msg}");
                ("waiting", Some(step), Some(msg))
            }
            Err((step, Stop::Failed(msg))) => {
                Metrics::bump(&self.metrics.failed);
                rec.error = Some(format!("{step}: {msg}"));
                if rec.attempts >= self.cfg.retries {
                    rec.status = Status::GaveUp;
                    warn!(node, step, attempts = rec.attempts, "gave up: {msg}");
                    ("gave_up", Some(step), Some(msg))
                } else {
                    let delay = self.cfg.delay_after(rec.attempts);
                    rec.status = Status::Failed;
                    rec.retry_at_ms = now() + delay.as_millis() as u64;
                    // Free exactly when due: the lock ends with the backoff.
                    let _ = self.lock(node, delay.max(Duration::from_secs(1))).await;
                    warn!(node, step, attempts = rec.attempts, retry_in = ?delay, "failed: {msg}");
                    ("failed", Some(step), Some(msg))
                }
            }
        };
        if let Err(Stop::Failed(e)) = self.save(node, &rec, true).await {
            warn!(node, "{e}");
        }
        self.refresh_waiting_gauge();
        self.notify(Event {
            node: node.to_string(),
            outcome: word.to_string(),
            master: rec.master.clone(),
            step: step.map(str::to_string),
            error,
            duration_ms: took.as_millis() as u64,
            attempts: rec.attempts,
            time_ms: now(),
        })
        .await;
    }

    async fn notify(&self, ev: Event) {
        for n in &self.cfg.notify {
            if let Err(e) = n.send(&ev).await {
                warn!(node = %ev.node, "notifier failed: {e}");
            }
        }
    }

    /// Nodes a killed provisioner had already restarted are no longer in
    /// the provisioning collective; those that answer in the main one are
    /// recorded as provisioned.
    fn confirm_restarted(self: &Arc<Self>) {
        let restarted: Vec<(String, Record)> = {
            let j = self.journal.lock().unwrap_or_else(|e| e.into_inner());
            j.all()
                .iter()
                .filter(|(_, r)| {
                    r.status == Status::InProgress && r.step.as_deref() == Some("restart")
                })
                .map(|(n, r)| (n.clone(), r.clone()))
                .collect()
        };
        for (node, mut rec) in restarted {
            let me = self.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                if me.confirm(&node).await.is_err() {
                    // Still restarting or back in provisioning: discovery decides.
                    return;
                }
                rec.status = Status::Provisioned;
                rec.step = Some("confirm".into());
                rec.updated_ms = now();
                if let Err(Stop::Failed(e)) = me.save(&node, &rec, true).await {
                    warn!(node, "{e}");
                }
                Metrics::bump(&me.metrics.provisioned);
                info!(node, "provisioned (confirmed after a restart)");
                me.notify(Event {
                    node: node.clone(),
                    outcome: "provisioned".into(),
                    master: rec.master.clone(),
                    step: None,
                    error: None,
                    duration_ms: t.elapsed().as_millis() as u64,
                    attempts: rec.attempts,
                    time_ms: now(),
                })
                .await;
            });
        }
    }

    fn refresh_waiting_gauge(&self) {
        let j = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        let waiting = j
            .all()
            .values()
            .filter(|r| r.status == Status::Waiting)
            .count();
        self.metrics
            .waiting
            .store(waiting as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Steps 1 (after the lock) to 9.
    async fn steps(
        &self,
        node: &str,
        facts: Option<Map<String, Value>>,
        rec: &mut Record,
    ) -> Result<(), (&'static str, Stop)> {
        let t = Instant::now();
        let facts = match facts {
            Some(f) => f,
            None => {
                let inv = self
                    .ask(
                        On::Provisioning,
                        node,
                        "rpcutil",
                        "inventory",
                        Map::new(),
                        None,
                    )
                    .await
                    .map_err(|f| ("inventory", Stop::from(f)))?;
                inv.get("facts")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default()
            }
        };
        self.metrics.step("inventory", t.elapsed());

        let t = Instant::now();
        self.check_expected(node)
            .await
            .map_err(|e| ("expected", e))?;
        self.metrics.step("expected", t.elapsed());

        let t = Instant::now();
        let (master, reason) = self.pick(&facts).await.map_err(|e| ("master", e))?;
        let master_name = self.master_name(&master);
        debug!(node, master = %master.identity, ?reason, "master picked");
        rec.master = Some(master_name.clone());
        self.metrics.step("pick_master", t.elapsed());

        if self.cfg.steps.set_master {
            let t = Instant::now();
            let address = master
                .facts
                .get(&self.cfg.masters.address_fact)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if address.is_empty() {
                return Err((
                    "set_master",
                    Stop::Failed(format!(
                        "master {} has no {} fact for the hosts file",
                        master.identity, self.cfg.masters.address_fact
                    )),
                ));
            }
            self.provision(
                node,
                "set_master",
                json!({"name": master_name, "address": address}),
            )
            .await
            .map_err(|f| ("set_master", f.into()))?;
            self.step_done(node, rec, "set_master", t).await?;
        }

        if self.cfg.steps.sign {
            let t = Instant::now();
            self.sign(node, rec).await.map_err(|e| ("sign", e))?;
            self.step_done(node, rec, "sign", t).await?;
        }

        if self.cfg.steps.configure {
            let t = Instant::now();
            let crl = self
                .ca_call("crl", Map::new())
                .await
                .ok()
                .and_then(|d| d.get("crl").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_default();
            let servers = self.servers_for(&master);
            let collectives = if self.cfg.node_collectives.is_empty() {
                vec![self.main_cfg.collective.clone()]
            } else {
                self.cfg.node_collectives.clone()
            };
            let mut input = json!({
                "certificate": rec.certificate.clone().unwrap_or_default(),
                "ca": self.ca_pem,
                "servers": servers.join(","),
                "collectives": collectives.join(","),
                "identity": node,
            });
            if !crl.is_empty() {
                input["crl"] = Value::String(crl);
            }
            self.provision(node, "configure", input)
                .await
                .map_err(|f| ("configure", f.into()))?;
            self.step_done(node, rec, "configure", t).await?;
        }

        if self.cfg.steps.bootstrap {
            // The lock must outlast the run.
            self.lock(node, self.cfg.run_timeout + self.cfg.lock_expiry)
                .await
                .map_err(|f| match f {
                    Fail::Status(m) if m.contains("locked by") => ("bootstrap", Stop::Busy(m)),
                    f => ("bootstrap", f.into()),
                })?;
            for (step, phase) in [("bootstrap", None), ("final_run", Some("final"))] {
                if phase.is_some() && !self.cfg.steps.final_run {
                    continue;
                }
                let t = Instant::now();
                let mut input = json!({});
                if let Some(p) = phase {
                    input["phase"] = Value::String(p.into());
                }
                self.run_bootstrap(node, input)
                    .await
                    .map_err(|e| (step, Stop::Failed(e)))?;
                self.step_done(node, rec, step, t).await?;
            }
        }

        let mut delay = Duration::ZERO;
        if self.cfg.steps.restart {
            let t = Instant::now();
            let r = self
                .provision(node, "restart", json!({}))
                .await
                .map_err(|f| ("restart", f.into()))?;
            delay = Duration::from_millis(r.get("delay_ms").and_then(Value::as_u64).unwrap_or(0))
                .min(self.cfg.confirm_timeout);
            self.step_done(node, rec, "restart", t).await?;
        }
        if self.cfg.steps.confirm {
            let t = Instant::now();
            // Not before the node's own splay is over.
            tokio::time::sleep(delay).await;
            self.confirm(node).await.map_err(|e| ("confirm", e))?;
            self.step_done(node, rec, "confirm", t).await?;
        }
        Ok(())
    }

    async fn step_done(
        &self,
        node: &str,
        rec: &mut Record,
        step: &'static str,
        t: Instant,
    ) -> Result<(), (&'static str, Stop)> {
        self.metrics.step(step, t.elapsed());
        rec.step = Some(step.to_string());
        rec.updated_ms = now();
        self.save(node, rec, false).await.map_err(|e| (step, e))
    }

    /// Step 5 and 6: a CSR from the node, old certificates cleaned, a certificate signed once.
    async fn sign(&self, node: &str, rec: &mut Record) -> Result<(), Stop> {
        let g = self.provision(node, "gencsr", json!({})).await?;
        let csr = g.get("csr").and_then(Value::as_str).unwrap_or_default();
        let key = g
            .get("public_key")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let want = format!("node:{node}");
        let (cn, csr_key) = mco_pki::inspect_csr(csr)
            .map_err(|e| Stop::Refused(format!("its CSR does not parse: {e}")))?;
        if cn != want {
            return Err(Stop::Refused(format!(
                "its CSR asks for {cn:?}, not {want}; not signed"
            )));
        }
        // The certificate is for the key the node signs its replies with,
        // pinned when it was first heard from; no other key is signed.
        let pinned = self.pins.get(node).map(hex::encode).unwrap_or_default();
        if csr_key != pinned || csr_key != key {
            return Err(Stop::Refused(format!(
                "its CSR carries key {csr_key}, not the key {pinned} its replies are signed with; not signed"
            )));
        }
        let ours = rec.csr_key.as_deref() == Some(key);
        if ours && rec.certificate.is_some() {
            // Signed in an earlier attempt: reused, never signed again.
            return Ok(());
        }
        if !ours {
            rec.certificate = None;
            if self.cfg.steps.clean {
                self.clean(node).await?;
            }
            // From here on a certificate for this key is ours; recorded
            // before asking, so that a resumed run does not clean it away.
            rec.csr_key = Some(key.to_string());
            rec.step = Some("signing".into());
            self.save(node, rec, true).await?;
        }
        let signed = self
            .ca_call(
                "sign",
                json!({"name": want, "csr": csr})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )
            .await?;
        let cert = signed
            .get("certificate")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if cert.is_empty() {
            return Err(Stop::Failed("the CA returned no certificate".into()));
        }
        rec.certificate = Some(cert);
        self.save(node, rec, true).await
    }

    /// Cleans `node`'s old certificates on the CA and every master hosting `ca`.
    async fn clean(&self, node: &str) -> Result<(), Stop> {
        let input = json!({"name": node})
            .as_object()
            .cloned()
            .unwrap_or_default();
        self.ca_call("clean", input.clone()).await?;
        let (masters, ca) = {
            let m = self.masters_now().await?;
            (m.0, m.1)
        };
        for m in masters.iter() {
            if Some(&m.identity) == ca.as_ref() || !m.agents.iter().any(|a| a == "ca") {
                continue;
            }
            self.ask(On::Main, &m.identity, "ca", "clean", input.clone(), None)
                .await
                .map_err(|f| Stop::Failed(format!("clean on {}: {f}", m.identity)))?;
        }
        Ok(())
    }

    async fn run_bootstrap(&self, node: &str, input: Value) -> Result<(), String> {
        let mut data = input.as_object().cloned().unwrap_or_default();
        data.insert("token".into(), Value::String(self.token.clone()));
        let reply = self
            .reply(
                &self.prov,
                PROVISIONING_COLLECTIVE,
                node,
                "provision",
                "run",
                data,
                self.cfg.run_timeout,
            )
            .await
            .map_err(|f| f.to_string())?;
        let summary = reply
            .data
            .get("summary")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if reply.data.get("skipped").and_then(Value::as_bool) == Some(true) {
            return Ok(());
        }
        if reply.status == WireStatus::Ok
            && reply.data.get("success").and_then(Value::as_bool) == Some(true)
        {
            return Ok(());
        }
        let output = reply
            .data
            .get("output")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let tail: String = {
            let lines: Vec<&str> = output.lines().collect();
            lines[lines.len().saturating_sub(5)..].join(" | ")
        };
        Err(format!(
            "{} (exit code {}): {tail}",
            if summary.is_empty() {
                reply.message.as_str()
            } else {
                summary
            },
            reply.data.get("exitcode").cloned().unwrap_or(Value::Null)
        ))
    }

    /// Waits for the node to answer in the main collective.
    async fn confirm(&self, node: &str) -> Result<(), Stop> {
        let deadline = Instant::now() + self.cfg.confirm_timeout;
        let mut last = String::from("no reply");
        while Instant::now() < deadline {
            let left = deadline - Instant::now();
            match self
                .ask(
                    On::Main,
                    node,
                    "rpcutil",
                    "ping",
                    Map::new(),
                    Some(left.min(Duration::from_secs(1))),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(f) => last = f.to_string(),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(Duration::from_millis(100).min(left)).await;
        }
        Err(Stop::Failed(format!(
            "it did not answer in the {} collective within {:?} ({last})",
            self.main_cfg.collective, self.cfg.confirm_timeout
        )))
    }

    /// Step 2: listed in `[expected]` identities, the registry file or the
    /// registry bucket. A registry that cannot be read is a failure to retry,
    /// not a refusal.
    async fn check_expected(&self, node: &str) -> Result<(), Stop> {
        let e = &self.cfg.expected;
        let glob = |p: &str| {
            mco_core::filter::Pattern::parse(p)
                .map(|pat| pat.matches(node))
                .unwrap_or(false)
        };
        if e.identities.iter().any(|p| glob(p)) {
            return Ok(());
        }
        if let Some(file) = &e.registry_file {
            let text = tokio::fs::read_to_string(file).await.map_err(|err| {
                Stop::Failed(format!(
                    "the registry {} cannot be read: {err}",
                    file.display()
                ))
            })?;
            if text
                .lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .any(|l| !l.is_empty() && glob(l))
            {
                return Ok(());
            }
        }
        if let (Some(kv), Some(bucket)) = (&self.expected_kv, &e.kv_bucket) {
            let got = kv.get(node).await.map_err(|err| {
                Stop::Failed(format!(
                    "the registry bucket {bucket} cannot be read: {err}"
                ))
            })?;
            if let Some(v) = got {
                let v = String::from_utf8_lossy(&v).trim().to_ascii_lowercase();
                if !matches!(v.as_str(), "0" | "false" | "no") {
                    return Ok(());
                }
            }
        }
        Err(Stop::Refused(format!(
            "not expected: {node} is in neither expected.identities nor a registry"
        )))
    }

    /// Step 3.
    async fn pick(&self, facts: &Map<String, Value>) -> Result<(Master, Reason), Stop> {
        let (list, _) = self.masters_now().await?;
        let mut picker = self.picker.lock().unwrap_or_else(|e| e.into_inner());
        match picker.pick(facts, &list) {
            Some((m, reason)) => Ok((m.clone(), reason)),
            None => Err(Stop::Waiting(format!(
                "no master answers in the {} collective",
                self.main_cfg.collective
            ))),
        }
    }

    fn master_name(&self, m: &Master) -> String {
        self.cfg
            .masters
            .name_fact
            .as_ref()
            .and_then(|f| m.facts.get(f))
            .and_then(Value::as_str)
            .unwrap_or(&m.identity)
            .to_string()
    }

    fn servers_for(&self, m: &Master) -> Vec<String> {
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
    async fn masters_now(&self) -> Result<(Arc<Vec<Master>>, Option<String>), Stop> {
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
                    return Err(Stop::Failed(format!("master discovery: {e}")))
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

    async fn ca_call(
        &self,
        action: &str,
        input: Map<String, Value>,
    ) -> Result<Map<String, Value>, Stop> {
        let (_, ca) = self.masters_now().await?;
        let ca = ca.ok_or_else(|| {
            Stop::Failed(format!(
                "no CA: no node hosting the ca agent answers in the {} collective",
                self.main_cfg.collective
            ))
        })?;
        let _slot = self
            .ca_slots
            .acquire()
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?;
        self.ask(On::Main, &ca, "ca", action, input, None)
            .await
            .map_err(|f| Stop::Failed(format!("ca {action} on {ca}: {f}")))
    }

    async fn lock(&self, node: &str, expiry: Duration) -> Result<(), Fail> {
        // A node's lock lasts at most a day (the provision agent refuses more).
        let secs = expiry.as_secs().clamp(1, MAX_LOCK_EXPIRY_S);
        self.provision(node, "lock", json!({"expiry": secs}))
            .await
            .map(|_| ())
    }

    async fn unlock(&self, node: &str) -> Result<(), Fail> {
        self.provision(node, "unlock", json!({})).await.map(|_| ())
    }

    /// A `provision` action on a node, with the token.
    async fn provision(
        &self,
        node: &str,
        action: &str,
        input: Value,
    ) -> Result<Map<String, Value>, Fail> {
        let mut data = input.as_object().cloned().unwrap_or_default();
        data.insert("token".into(), Value::String(self.token.clone()));
        self.ask(On::Provisioning, node, "provision", action, data, None)
            .await
    }

    /// `agent action` on `node` in the provisioning collective or the main
    /// one, within `timeout` (default `request_timeout`): its outputs, or why
    /// there are none.
    async fn ask(
        &self,
        on: On,
        node: &str,
        agent: &str,
        action: &str,
        data: Map<String, Value>,
        timeout: Option<Duration>,
    ) -> Result<Map<String, Value>, Fail> {
        let (bus, collective) = match on {
            On::Provisioning => (&self.prov, PROVISIONING_COLLECTIVE),
            On::Main => (&self.main, self.main_cfg.collective.as_str()),
        };
        let timeout = timeout.unwrap_or(self.cfg.request_timeout);
        ok(self
            .reply(bus, collective, node, agent, action, data, timeout)
            .await?)
    }

    fn call(
        &self,
        collective: &str,
        agent: &str,
        action: &str,
        data: Map<String, Value>,
        node: Option<&str>,
    ) -> Call {
        Call {
            collective: collective.to_string(),
            agent: agent.to_string(),
            action: action.to_string(),
            data,
            filter: Filter {
                identity: node.map(|n| vec![n.to_string()]).unwrap_or_default(),
                ..Filter::default()
            },
        }
    }

    fn wait(&self, timeout: Duration) -> Wait {
        Wait {
            timeout,
            batch: None,
            progress: false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn reply(
        &self,
        bus: &Session,
        collective: &str,
        node: &str,
        agent: &str,
        action: &str,
        data: Map<String, Value>,
        timeout: Duration,
    ) -> Result<crate::output::NodeReply, Fail> {
        let call = self.call(collective, agent, action, data, Some(node));
        bus.ask(&call, node, timeout)
            .await
            .map_err(|e| Fail::NoReply(e.to_string()))
    }
}

/// Which collective a node is asked in.
#[derive(Debug, Clone, Copy)]
enum On {
    /// The provisioning collective, on its own broker.
    Provisioning,
    /// The main collective.
    Main,
}

fn ok(r: crate::output::NodeReply) -> Result<Map<String, Value>, Fail> {
    if r.status == WireStatus::Ok {
        Ok(r.data)
    } else {
        Err(Fail::Status(r.message))
    }
}

async fn next(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Counts of a journal's records by status, for `mco provision status`.
pub fn counts(records: &std::collections::BTreeMap<String, Record>) -> HashMap<Status, usize> {
    let mut out = HashMap::new();
    for r in records.values() {
        *out.entry(r.status).or_insert(0) += 1;
    }
    out
}

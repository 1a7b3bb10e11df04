//! Keeps each node's entry in the inventory registry (ARCHITECTURE.md §11): written at start,
//! when the facts or classes change, and every `[inventory] interval` so that its age tells
//! whether the node is alive. The entry is signed like a reply; the broker lets the node write
//! its own key only.
//!
//! A registry that cannot be reached (no JetStream on the broker, no bucket yet, a broker going
//! away) costs the node nothing but a warning once per process; it tries again at the next
//! interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::Store;
use async_nats::Client;
use mco_core::inventory::{valid_key, InventoryBody, InventoryConfig};
use mco_core::wire::{now_ms, Envelope, Kind};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::node::NodeState;

/// How often a node looks whether its facts or classes changed.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Whether this process has said that the registry is out of reach.
static WARNED: AtomicBool = AtomicBool::new(false);

/// What `node` says about itself now.
pub fn body(node: &NodeState, interval: Duration) -> InventoryBody {
    let snap = node.snapshot();
    let crl = node
        .security
        .as_ref()
        .and_then(|s| s.trust.get().crl().and_then(|c| c.number()));
    InventoryBody {
        identity: node.identity.clone(),
        collectives: node.collectives.clone(),
        facts: (*snap.facts).clone(),
        classes: (*snap.classes).clone(),
        agents: node.registry.names().map(str::to_string).collect(),
        version: mco_core::VERSION.to_string(),
        time_ms: now_ms(),
        interval_s: interval.as_secs().max(1),
        crl,
    }
}

/// The entry's bytes: the body sealed as the node signs its replies (unsigned in insecure
/// mode).
pub fn seal(node: &NodeState, body: &InventoryBody) -> Vec<u8> {
    let bytes = body.encode();
    match &node.security {
        Some(s) => s.signer.seal(Kind::Inventory, bytes).encode(),
        None => Envelope::unsigned(Kind::Inventory, bytes).encode(),
    }
}

/// Keeps `node`'s entry until `shutdown` turns true.
pub async fn keep(
    client: Client,
    node: Arc<NodeState>,
    cfg: Arc<InventoryConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    if !valid_key(&node.identity) {
        warn!(node = %node.identity, "this identity cannot be a registry key; the node is not registered");
        return;
    }
    let js = async_nats::jetstream::new(client);
    let mut store: Option<Store> = None;
    // What the last entry was made from, not the entry: a fleet keeps thousands of these, and
    // the facts and classes are shared with the node's snapshot. With it, when the entry is to
    // be written again even if nothing changed.
    let mut written: Option<(Made, tokio::time::Instant)> = None;
    let mut first = true;
    let mut tick = tokio::time::interval(CHECK_EVERY.min(cfg.interval));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        let made = Made::of(&node);
        let due = match &written {
            None => true,
            Some((last, again)) => !last.same_as(&made) || tokio::time::Instant::now() >= *again,
        };
        if !due {
            continue;
        }
        let now = body(&node, cfg.interval);
        if store.is_none() {
            match js.get_key_value(cfg.bucket.as_str()).await {
                Ok(s) => store = Some(s),
                Err(e) => {
                    unreachable_registry(&node.identity, &cfg.bucket, &e.to_string());
                    // Try again at the next interval, not every few seconds.
                    written = Some((made, next_write(&node.identity, cfg.interval, false)));
                    continue;
                }
            }
        }
        let Some(s) = &store else { continue };
        let bytes = seal(&node, &now);
        match s.put(&node.identity, bytes.into()).await {
            Ok(revision) => {
                debug!(node = %node.identity, revision, "registry entry written");
                written = Some((made, next_write(&node.identity, cfg.interval, first)));
                first = false;
            }
            Err(e) => {
                unreachable_registry(&node.identity, &cfg.bucket, &e.to_string());
                store = None;
                written = Some((made, next_write(&node.identity, cfg.interval, false)));
            }
        }
    }
}

/// When an entry written now is to be written again: after `interval`, except that the first
/// rewrite comes after between half and all of it, by identity, so that the nodes of a fleet
/// started together (or of one `--fleet` process) do not all rewrite in the same second.
fn next_write(identity: &str, interval: Duration, first: bool) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    if !first {
        return now + interval;
    }
    let h = crate::serve::identity_seed(identity);
    now + interval.mul_f64(0.5 + (h % 1000) as f64 / 2000.0)
}

/// What a node's entry is made from that can change while it runs: its snapshot (facts and
/// classes, shared) and the number of the CRL in force.
struct Made {
    snapshot: Arc<crate::node::Snapshot>,
    crl: Option<String>,
}

impl Made {
    fn of(node: &NodeState) -> Made {
        Made {
            snapshot: node.snapshot(),
            crl: node
                .security
                .as_ref()
                .and_then(|s| s.trust.get().crl().and_then(|c| c.number())),
        }
    }

    /// Whether an entry made from `other` would say the same, but for its time.
    fn same_as(&self, other: &Made) -> bool {
        let (a, b) = (&self.snapshot, &other.snapshot);
        self.crl == other.crl
            && (Arc::ptr_eq(a, b) || (a.facts == b.facts && a.classes == b.classes))
    }
}

fn unreachable_registry(identity: &str, bucket: &str, why: &str) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        warn!(node = %identity, "the inventory registry (bucket {bucket}) is out of reach: {why}; trying again every interval (set [inventory] enabled = false to stop)");
    } else {
        debug!(node = %identity, "inventory registry out of reach: {why}");
    }
}

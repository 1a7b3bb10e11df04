//! Reading the inventory registry (ARCHITECTURE.md §11): every node's signed entry, checked as
//! replies are, so that discovery knows who *should* answer without asking the bus, and
//! `mco find --stale` knows who stopped registering.
//!
//! An entry counts only if its envelope decodes within [`MAX_ENTRY`], is of kind `inventory`,
//! its signature verifies against a certificate of the collective's CA that is neither expired
//! nor revoked, the certificate's name is `node:KEY`, and the body names the same identity. Any
//! other entry is left out and counted in a warning. Its age is taken from the later of the
//! time the node wrote in it and the time the broker stored it, never from the node alone: a
//! node whose clock runs ahead cannot look alive for longer.

use std::time::Duration;

use futures::StreamExt;
use mco_core::inventory::{InventoryBody, MAX_ENTRIES, MAX_ENTRY};
use mco_core::wire::{now_ms, Envelope, Kind};

use crate::bus::Bus;
use crate::error::ClientError;

/// One node's entry, checked.
#[derive(Debug, Clone)]
pub struct Entry {
    /// What the node said.
    pub body: InventoryBody,
    /// When it was written, Unix milliseconds: the earlier of the node's word and the
    /// broker's.
    pub written_ms: u64,
}

impl Entry {
    /// The entry's age at `now`, milliseconds.
    pub fn age_ms(&self, now: u64) -> u64 {
        now.saturating_sub(self.written_ms)
    }
}

/// Every checked entry of the registry, and what was left out.
#[derive(Debug, Default)]
pub struct Registry {
    /// The entries, sorted by identity.
    pub entries: Vec<Entry>,
    /// Why entries were left out, one line each.
    pub warnings: Vec<String>,
}

/// Reads every entry of `bucket`, within `timeout`.
pub async fn read(bus: &Bus, bucket: &str, timeout: Duration) -> Result<Registry, ClientError> {
    match tokio::time::timeout(timeout, read_all(bus, bucket)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout(format!(
            "reading the inventory registry (bucket {bucket}) took longer than {timeout:?}"
        ))),
    }
}

async fn read_all(bus: &Bus, bucket: &str) -> Result<Registry, ClientError> {
    let unreachable = |what: &str, e: &dyn std::fmt::Display| ClientError::Bus {
        what: format!(
            "{what} the inventory registry (bucket {bucket}; is JetStream on, the bucket made \
             with `mco registry init`, and this user allowed to read it? see \
             `mco pki broker-config --inventory`)"
        ),
        source: e.to_string().into(),
    };
    let js = async_nats::jetstream::new(bus.client.clone());
    let store = js
        .get_key_value(bucket)
        .await
        .map_err(|e| unreachable("opening", &e))?;
    let status = store
        .status()
        .await
        .map_err(|e| unreachable("reading the state of", &e))?;
    // By key: nodes rewrite their entries while the registry is read, and the watch then
    // delivers a key again; the latest value of each key is the one that counts, and a key
    // deleted or purged since is gone.
    let mut latest: std::collections::HashMap<String, (bytes::Bytes, u64)> =
        std::collections::HashMap::new();
    if status.values() > 0 {
        let mut watch = store
            .watch_with_history(">")
            .await
            .map_err(|e| unreachable("watching", &e))?;
        while let Some(entry) = watch.next().await {
            let entry = entry.map_err(|e| unreachable("reading the entries of", &e))?;
            let last = entry.delta == 0;
            if matches!(entry.operation, async_nats::jetstream::kv::Operation::Put) {
                let stored_ms =
                    u64::try_from(entry.created.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
                if latest.len() >= MAX_ENTRIES && !latest.contains_key(&entry.key) {
                    return Err(ClientError::Io(format!(
                        "the inventory registry holds more than {MAX_ENTRIES} entries"
                    )));
                }
                latest.insert(entry.key, (entry.value, stored_ms));
            } else {
                latest.remove(&entry.key);
            }
            if last {
                break;
            }
        }
    }
    let raw: Vec<(String, bytes::Bytes, u64)> = latest
        .into_iter()
        .map(|(key, (value, stored))| (key, value, stored))
        .collect();
    let trust = bus.opener.trust.as_deref();
    let remembered = match (trust, &bus.creds) {
        (Some(t), Some(c)) => Some((t, c.derive_secret(VERIFIED_PURPOSE))),
        _ => None,
    };
    let path = verified_path(&bus.sender);
    if let Some((t, secret)) = &remembered {
        if let Ok(bytes) = std::fs::read(&path) {
            if let Err(why) = t.import_verified(&bytes, secret) {
                tracing::debug!("{}: ignored: {why}", path.display());
            }
        }
    }
    let registry = check(trust, raw);
    if let Some(bytes) = remembered.and_then(|(t, secret)| t.export_verified(&secret)) {
        if let Err(e) = mco_pki::write_private(&path, &bytes) {
            tracing::debug!("{}: not saved: {e}", path.display());
        }
    }
    Ok(registry)
}

const VERIFIED_PURPOSE: &str = "verified registry entries";

/// Where the digests of registry entries verified before are kept, beside the known
/// certificates (`IDENTITY.verified`): a discovery then verifies only the entries that changed.
pub fn verified_path(identity: &str) -> std::path::PathBuf {
    crate::bus::known_path(identity).with_extension("verified")
}

/// Checks raw entries `(key, value, stored at)`: decoded, verified in one batch against
/// `trust` (none in insecure mode), named right.
pub fn check(
    trust: Option<&mco_security::TrustStore>,
    raw: Vec<(String, bytes::Bytes, u64)>,
) -> Registry {
    let mut out = Registry::default();
    let mut bad = 0usize;
    let mut first_bad: Vec<String> = Vec::new();
    let mut refuse = |key: &str, why: String| {
        bad += 1;
        if first_bad.len() < 3 {
            first_bad.push(format!("{key}: {why}"));
        }
    };
    let mut decoded = Vec::with_capacity(raw.len());
    for (key, value, stored) in raw {
        match Envelope::decode(&value, MAX_ENTRY + 4096, Kind::Inventory) {
            Ok(env) => decoded.push((key, env, stored)),
            Err(e) => refuse(&key, e.to_string()),
        }
    }
    let now_s = (now_ms() / 1000) as i64;
    let verdicts: Vec<Result<(), String>> = match trust {
        Some(trust) => {
            let envs: Vec<&Envelope> = decoded.iter().map(|(_, e, _)| e).collect();
            verify_parallel(trust, &envs, now_s)
                .into_iter()
                .zip(&decoded)
                .map(|(v, (key, _, _))| match v {
                    Ok(name) if name.strip_prefix("node:") == Some(key.as_str()) => Ok(()),
                    Ok(name) => Err(format!("signed by {name}, not node:{key}")),
                    Err(e) => Err(e.to_string()),
                })
                .collect()
        }
        None => decoded.iter().map(|_| Ok(())).collect(),
    };
    for ((key, env, stored), verdict) in decoded.into_iter().zip(verdicts) {
        if let Err(why) = verdict {
            refuse(&key, why);
            continue;
        }
        match InventoryBody::decode(&env.body) {
            Ok(body) if body.identity == key => {
                let written_ms = body.time_ms.min(stored.max(1));
                out.entries.push(Entry { body, written_ms });
            }
            Ok(body) => refuse(&key, format!("the entry names {:?}", body.identity)),
            Err(e) => refuse(&key, e),
        }
    }
    out.entries
        .sort_by(|a, b| a.body.identity.cmp(&b.body.identity));
    if bad > 0 {
        out.warnings.push(format!(
            "left out {bad} registry entr{} that failed verification: {}",
            if bad == 1 { "y" } else { "ies" },
            first_bad.join("; ")
        ));
    }
    out
}

/// Verifies `envs` in batches, one per core, on scoped threads: a fleet's entries are
/// thousands of signatures (those verified before are only looked up: see
/// [`mco_security::TrustStore::verify_entries`]). Returns each signer's name.
fn verify_parallel(
    trust: &mco_security::TrustStore,
    envs: &[&Envelope],
    now_s: i64,
) -> Vec<Result<String, mco_security::SecurityError>> {
    const WORTH_A_THREAD: usize = 256;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 || envs.len() < 2 * WORTH_A_THREAD {
        return trust.verify_entries(envs, now_s);
    }
    let chunk = envs.len().div_ceil(cores);
    std::thread::scope(|scope| {
        let handles: Vec<_> = envs
            .chunks(chunk)
            .map(|part| scope.spawn(move || trust.verify_entries(part, now_s)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// The entries whose node matches `filter` in `collective`, as each node itself would decide.
pub fn select<'a>(
    registry: &'a Registry,
    filter: &mco_core::Filter,
    collective: &str,
) -> Result<Vec<&'a Entry>, ClientError> {
    let compiled = filter
        .compile()
        .map_err(|e| ClientError::Usage(format!("bad filter: {e}")))?;
    Ok(registry
        .entries
        .iter()
        .filter(|e| e.body.collectives.iter().any(|c| c == collective))
        .filter(|e| compiled.matches(&Target { body: &e.body }))
        .collect())
}

struct Target<'a> {
    body: &'a InventoryBody,
}

impl mco_core::filter::FilterTarget for Target<'_> {
    fn identity(&self) -> &str {
        &self.body.identity
    }
    fn fact(&self, path: &str) -> Option<&serde_json::Value> {
        mco_core::facts::lookup(&self.body.facts, path)
    }
    fn classes(&self) -> &[String] {
        &self.body.classes
    }
    fn has_agent(&self, agent: &str) -> bool {
        self.body.agents.iter().any(|a| a == agent)
    }
    fn agents(&self) -> Vec<&str> {
        self.body.agents.iter().map(String::as_str).collect()
    }
}

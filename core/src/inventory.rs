//! The inventory registry (ARCHITECTURE.md §11): every responder keeps its own entry in a
//! JetStream key-value bucket, so that a client knows who *should* answer without asking the
//! bus.
//!
//! An entry is an [`Envelope`](crate::wire::Envelope) of kind
//! [`Inventory`](crate::wire::Kind::Inventory) whose body is an [`InventoryBody`], signed by the
//! node like its replies, stored under the node's identity as key. A reader trusts an entry only
//! if its signature verifies, its certificate is the node's (`node:KEY`), and the body names the
//! same identity; the broker lets a node write its own key only.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Reader;
use crate::facts::FactMap;

/// The bucket's name unless configured.
pub const DEFAULT_BUCKET: &str = "mco_inventory";

/// How often a responder rewrites its entry unless configured.
pub const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Largest entry written or read, bytes: facts beyond it are the node's to trim.
pub const MAX_ENTRY: usize = 256 * 1024;

/// The CA's CRL's bucket unless configured.
pub const DEFAULT_CRL_BUCKET: &str = "mco_crl";

/// The key the CA's CRL is published under.
pub const CRL_KEY: &str = "ca.crl";

/// Largest published CRL taken, bytes.
pub const MAX_CRL: usize = 4 << 20;

/// Most entries one read of the bucket takes.
pub const MAX_ENTRIES: usize = 1_000_000;

/// What a node says about itself in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryBody {
    /// The node's identity (the entry's key).
    pub identity: String,
    /// Its collectives, the main one first.
    pub collectives: Vec<String>,
    /// Its facts.
    pub facts: FactMap,
    /// Its classes.
    pub classes: Vec<String>,
    /// The agents it hosts.
    pub agents: Vec<String>,
    /// The responder's version.
    pub version: String,
    /// When the entry was written, Unix milliseconds.
    pub time_ms: u64,
    /// How often the node rewrites it, seconds: an entry older than a few intervals is stale.
    pub interval_s: u64,
    /// The number of the CRL the node holds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<String>,
}

impl InventoryBody {
    /// The body's msgpack bytes.
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    /// Reads a body, bounded by [`MAX_ENTRY`].
    pub fn decode(bytes: &[u8]) -> Result<InventoryBody, String> {
        if bytes.len() > MAX_ENTRY {
            return Err(format!("{} bytes, over {MAX_ENTRY}", bytes.len()));
        }
        rmp_serde::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// Whether two bodies say the same thing but for when they were written.
    pub fn same_as(&self, other: &InventoryBody) -> bool {
        self.identity == other.identity
            && self.collectives == other.collectives
            && self.facts == other.facts
            && self.classes == other.classes
            && self.agents == other.agents
            && self.version == other.version
            && self.interval_s == other.interval_s
            && self.crl == other.crl
    }

    /// The entry's age at `now_ms`, milliseconds (0 if written in the future).
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.time_ms)
    }

    /// Facts, classes, agents and identity as the filter language sees them.
    pub fn facts_value(&self) -> Value {
        Value::Object(self.facts.clone())
    }
}

/// Whether `identity` can be a key of the bucket (NATS key-value keys: letters, digits and
/// `-_=./`, not starting or ending with a dot).
pub fn valid_key(identity: &str) -> bool {
    !identity.is_empty()
        && !identity.starts_with('.')
        && !identity.ends_with('.')
        && !identity.contains("..")
        && identity
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=' | '.' | '/'))
}

/// `[inventory]`, in both configs.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryConfig {
    /// Whether the responder keeps its entry: on when the config has an `[inventory]` table,
    /// unless it says `enabled = false`.
    pub enabled: bool,
    /// The bucket.
    pub bucket: String,
    /// How often the entry is rewritten when nothing changed.
    pub interval: std::time::Duration,
    /// The bucket the CA's CRL is published in.
    pub crl_bucket: String,
    /// Whether the responder watches the published CRL and puts a newer one in force.
    pub watch_crl: bool,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            enabled: true,
            bucket: DEFAULT_BUCKET.to_string(),
            interval: DEFAULT_INTERVAL,
            crl_bucket: DEFAULT_CRL_BUCKET.to_string(),
            watch_crl: true,
        }
    }
}

impl InventoryConfig {
    pub(crate) fn read(r: &mut Reader, t: &toml::Table) -> InventoryConfig {
        let p = "inventory";
        r.unknown(
            t,
            p,
            &["enabled", "bucket", "interval", "crl_bucket", "watch_crl"],
        );
        let mut c = InventoryConfig::default();
        if let Some(b) = r.boolean(t, p, "watch_crl") {
            c.watch_crl = b;
        }
        if let Some(b) = r.string(t, p, "crl_bucket") {
            if !valid_bucket(&b) {
                r.error(
                    "inventory.crl_bucket",
                    format!("{b:?} is not a bucket name"),
                );
            }
            c.crl_bucket = b;
        }
        if let Some(b) = r.boolean(t, p, "enabled") {
            c.enabled = b;
        }
        if let Some(b) = r.string(t, p, "bucket") {
            if !valid_bucket(&b) {
                r.error("inventory.bucket", format!("{b:?} is not a bucket name"));
            }
            c.bucket = b;
        }
        if let Some(d) = r.duration(t, p, "interval") {
            if d < std::time::Duration::from_secs(1) {
                r.error("inventory.interval", "must be at least 1s");
            } else {
                c.interval = d;
            }
        }
        c
    }
}

/// Whether `b` can name a key-value bucket: letters, digits, `_` and `-`.
pub fn valid_bucket(b: &str) -> bool {
    !b.is_empty()
        && b.len() <= 64
        && b.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> InventoryBody {
        InventoryBody {
            identity: "web1".into(),
            collectives: vec!["mcollective".into()],
            facts: serde_json::from_value(serde_json::json!({"role": "web"})).unwrap(),
            classes: vec!["nginx".into()],
            agents: vec!["rpcutil".into()],
            version: "0.1.0".into(),
            time_ms: 1_000,
            interval_s: 60,
            crl: Some("3".into()),
        }
    }

    #[test]
    fn a_body_round_trips_and_compares_without_its_time() {
        let b = body();
        assert_eq!(InventoryBody::decode(&b.encode()).unwrap(), b);
        let later = InventoryBody {
            time_ms: 9_000,
            ..b.clone()
        };
        assert!(b.same_as(&later));
        let changed = InventoryBody {
            classes: vec![],
            ..b.clone()
        };
        assert!(!b.same_as(&changed));
        assert_eq!(later.age_ms(10_000), 1_000);
        assert_eq!(later.age_ms(1), 0);
    }

    #[test]
    fn oversized_and_malformed_bodies_are_refused() {
        assert!(InventoryBody::decode(&vec![0x90; MAX_ENTRY + 1]).is_err());
        assert!(InventoryBody::decode(b"\xc1").is_err());
        assert!(InventoryBody::decode(&[]).is_err());
    }

    #[test]
    fn keys_are_what_the_bucket_takes() {
        for ok in ["web1", "web1.example.com", "a-b_c"] {
            assert!(valid_key(ok), "{ok}");
        }
        for bad in ["", ".web", "web.", "a..b", "a b", "a*", "a>"] {
            assert!(!valid_key(bad), "{bad}");
        }
    }
}

//! Replay protection: request ids remembered for their TTL window.
//!
//! MCollective and Choria rely on the TTL alone; a captured request could be
//! replayed for as long as it is fresh. We remember every id until its TTL
//! has passed, with a hard bound on entries so a flood cannot exhaust memory
//! (when full, the entries closest to expiry are dropped first).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Ids seen, with the time (ms) until which each must be remembered.
pub struct ReplayCache {
    inner: Mutex<Inner>,
    limit: usize,
}

#[derive(Default)]
struct Inner {
    ids: HashMap<String, u64>,
    by_expiry: BTreeMap<(u64, String), ()>,
}

impl ReplayCache {
    /// A cache holding at most `limit` ids.
    pub fn new(limit: usize) -> ReplayCache {
        ReplayCache {
            inner: Mutex::new(Inner::default()),
            limit: limit.max(1),
        }
    }

    /// Records `id` until `expires_ms`; false if it was already recorded and
    /// has not expired at `now_ms`.
    pub fn check_and_insert(&self, id: &str, expires_ms: u64, now_ms: u64) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Forget what has expired.
        while let Some((k, _)) = g.by_expiry.first_key_value() {
            if k.0 > now_ms {
                break;
            }
            let k = k.clone();
            g.by_expiry.remove(&k);
            g.ids.remove(&k.1);
        }
        if g.ids.contains_key(id) {
            return false;
        }
        while g.ids.len() >= self.limit {
            let Some((k, _)) = g.by_expiry.pop_first() else {
                break;
            };
            g.ids.remove(&k.1);
        }
        g.ids.insert(id.to_string(), expires_ms);
        g.by_expiry.insert((expires_ms, id.to_string()), ());
        true
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ids
            .len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_expiry_and_stays_bounded() {
        let c = ReplayCache::new(3);
        assert!(c.check_and_insert("a", 1_000, 0));
        assert!(!c.check_and_insert("a", 1_000, 500), "replay within TTL");
        assert!(
            c.check_and_insert("a", 3_000, 1_001),
            "forgotten after expiry"
        );
        assert!(c.check_and_insert("b", 2_000, 1_001));
        assert!(c.check_and_insert("c", 2_500, 1_001));
        assert!(c.check_and_insert("d", 2_600, 1_001));
        assert_eq!(c.len(), 3, "bounded");
    }
}

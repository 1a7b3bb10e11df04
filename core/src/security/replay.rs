//! Replay protection: request ids remembered for their TTL window.
//!
//! MCollective and Choria rely on the TTL alone; a captured request could be
//! replayed for as long as it is fresh. We remember every id until its TTL
//! has passed. The cache is bounded, and when it is full it fails closed: a
//! new id is refused ([`Seen::Full`]) rather than a live one forgotten, so no
//! flood of requests can make an earlier one replayable. Callers bound the
//! TTL they accept (`[security] max_ttl`), which bounds how long a flood can
//! keep the cache full. Ids are remembered by a 128-bit digest, so an entry
//! costs the same whatever the id.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Ids seen, with the time (ms) until which each must be remembered.
pub struct ReplayCache {
    inner: Mutex<Inner>,
    limit: usize,
}

/// An id's digest.
type Key = [u8; 16];

#[derive(Default)]
struct Inner {
    ids: HashMap<Key, u64>,
    by_expiry: BTreeSet<(u64, Key)>,
}

/// What [`ReplayCache::check_and_insert`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A new id, now remembered.
    New,
    /// Seen before and not yet expired: a replay.
    Replay,
    /// A new id, but the cache is full of live ids: refused, not remembered.
    Full,
}

fn key(id: &str) -> Key {
    let d = Sha256::digest(id.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

impl ReplayCache {
    /// A cache holding at most `limit` ids.
    pub fn new(limit: usize) -> ReplayCache {
        ReplayCache {
            inner: Mutex::new(Inner::default()),
            limit: limit.max(1),
        }
    }

    /// Records `id` until `expires_ms`, unless it was already recorded and
    /// has not expired at `now_ms`, or the cache is full of live ids.
    pub fn check_and_insert(&self, id: &str, expires_ms: u64, now_ms: u64) -> Seen {
        let k = key(id);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Forget what has expired.
        while let Some(first) = g.by_expiry.first().copied() {
            if first.0 > now_ms {
                break;
            }
            g.by_expiry.remove(&first);
            g.ids.remove(&first.1);
        }
        if g.ids.contains_key(&k) {
            return Seen::Replay;
        }
        if g.ids.len() >= self.limit {
            return Seen::Full;
        }
        g.ids.insert(k, expires_ms);
        g.by_expiry.insert((expires_ms, k));
        Seen::New
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
    fn remembers_until_expiry() {
        let c = ReplayCache::new(3);
        assert_eq!(c.check_and_insert("a", 1_000, 0), Seen::New);
        assert_eq!(
            c.check_and_insert("a", 1_000, 500),
            Seen::Replay,
            "replay within TTL"
        );
        assert_eq!(
            c.check_and_insert("a", 3_000, 1_001),
            Seen::New,
            "forgotten after expiry"
        );
    }

    #[test]
    fn full_of_live_ids_refuses_and_forgets_none() {
        let c = ReplayCache::new(3);
        assert_eq!(c.check_and_insert("a", 10_000, 0), Seen::New);
        // A flood of far-future ids fills the cache...
        assert_eq!(c.check_and_insert("f1", u64::MAX, 0), Seen::New);
        assert_eq!(c.check_and_insert("f2", u64::MAX, 0), Seen::New);
        // ...so new ids are refused, and the live one is still remembered.
        assert_eq!(c.check_and_insert("f3", u64::MAX, 1), Seen::Full);
        assert_eq!(c.check_and_insert("a", 10_000, 2), Seen::Replay);
        assert_eq!(c.len(), 3, "bounded");
        // Once "a" expires there is room again.
        assert_eq!(c.check_and_insert("b", 20_000, 10_001), Seen::New);
        assert_eq!(c.check_and_insert("a", 30_000, 10_002), Seen::Full);
    }
}

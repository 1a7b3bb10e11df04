//! Replay protection: request ids remembered for their TTL window.
//!
//! MCollective and Choria rely on the TTL alone; a captured request could be
//! replayed for as long as it is fresh. We remember every id until its TTL
//! has passed. The cache is bounded, and when it is full it fails closed: a
//! new id is refused ([`Seen::Full`]) rather than a live one forgotten, so no
//! flood of requests can make an earlier one replayable. Callers bound the
//! TTL they accept (`[security] max_ttl`), which bounds how long a flood can
//! keep the cache full. Each caller may hold at most a quarter of the cache,
//! so one caller's flood fills only its own share: others are refused only
//! if several flood at once. Ids are remembered by a 128-bit digest, so an
//! entry costs the same whatever the id.

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
    /// Each id's expiry and caller.
    ids: HashMap<Key, (u64, Key)>,
    by_expiry: BTreeSet<(u64, Key)>,
    /// Ids held per caller.
    held: HashMap<Key, usize>,
}

/// What [`ReplayCache::check_and_insert`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A new id, now remembered.
    New,
    /// Seen before and not yet expired: a replay.
    Replay,
    /// A new id, but the cache, or its caller's share of it, is full of
    /// live ids: refused, not remembered.
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

    /// The most ids one caller may hold: a quarter of the cache.
    pub fn share(&self) -> usize {
        (self.limit / 4).max(1)
    }

    /// Records `caller`'s `id` until `expires_ms`, unless it was already
    /// recorded and has not expired at `now_ms`, or the cache or the
    /// caller's share of it is full of live ids.
    pub fn check_and_insert(&self, caller: &str, id: &str, expires_ms: u64, now_ms: u64) -> Seen {
        let k = key(id);
        let who = key(caller);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Forget what has expired.
        while let Some(first) = g.by_expiry.first().copied() {
            if first.0 > now_ms {
                break;
            }
            g.by_expiry.remove(&first);
            if let Some((_, owner)) = g.ids.remove(&first.1) {
                if let Some(n) = g.held.get_mut(&owner) {
                    *n -= 1;
                    if *n == 0 {
                        g.held.remove(&owner);
                    }
                }
            }
        }
        if g.ids.contains_key(&k) {
            return Seen::Replay;
        }
        if g.ids.len() >= self.limit || g.held.get(&who).copied().unwrap_or(0) >= self.share() {
            return Seen::Full;
        }
        g.ids.insert(k, (expires_ms, who));
        g.by_expiry.insert((expires_ms, k));
        *g.held.entry(who).or_insert(0) += 1;
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
        let c = ReplayCache::new(8);
        assert_eq!(c.check_and_insert("u", "a", 1_000, 0), Seen::New);
        assert_eq!(
            c.check_and_insert("u", "a", 1_000, 500),
            Seen::Replay,
            "replay within TTL"
        );
        assert_eq!(
            c.check_and_insert("v", "a", 1_000, 500),
            Seen::Replay,
            "whoever sends it"
        );
        assert_eq!(
            c.check_and_insert("u", "a", 3_000, 1_001),
            Seen::New,
            "forgotten after expiry"
        );
    }

    #[test]
    fn full_of_live_ids_refuses_and_forgets_none() {
        let c = ReplayCache::new(12);
        assert_eq!(c.share(), 3);
        assert_eq!(c.check_and_insert("alice", "a", 10_000, 0), Seen::New);
        // One caller's flood of far-future ids fills only its share...
        for i in 0..3 {
            assert_eq!(
                c.check_and_insert("mallory", &format!("f{i}"), u64::MAX, 0),
                Seen::New
            );
        }
        assert_eq!(c.check_and_insert("mallory", "f3", u64::MAX, 1), Seen::Full);
        // ...others go on, and the live ids are all still remembered.
        assert_eq!(c.check_and_insert("alice", "b", 10_000, 2), Seen::New);
        assert_eq!(c.check_and_insert("alice", "a", 10_000, 2), Seen::Replay);
        assert_eq!(c.check_and_insert("x", "f0", u64::MAX, 2), Seen::Replay);
        // Several callers together can fill the whole cache; then everyone
        // is refused, and still nothing is forgotten.
        for who in ["m2", "m3", "m4"] {
            for i in 0..3 {
                c.check_and_insert(who, &format!("{who}{i}"), u64::MAX, 3);
            }
        }
        assert_eq!(c.len(), 12, "bounded");
        assert_eq!(c.check_and_insert("bob", "c", 10_000, 4), Seen::Full);
        assert_eq!(c.check_and_insert("alice", "a", 10_000, 4), Seen::Replay);
        // Once alice's ids expire there is room again, for her share.
        assert_eq!(c.check_and_insert("bob", "c", 20_000, 10_001), Seen::New);
        assert_eq!(c.check_and_insert("alice", "a", 30_000, 10_002), Seen::New);
    }
}

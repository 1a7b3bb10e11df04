//! Ed25519 signatures with their nonces prepared ahead of time.
//!
//! Most of the cost of an Ed25519 signature is one fixed-base scalar
//! multiplication, `R = r·B`, and it depends only on the nonce `r`, not on
//! the key or the message. A [`Presigner`] keeps a pool of `(r, R)` pairs,
//! filled by a thread of its own at idle priority, so that signing a reply
//! is a hash and a multiply-add: the expensive step runs when the node has
//! nothing else to do instead of between a request and its reply.
//!
//! The signatures are ordinary Ed25519 signatures, checked by the same
//! verification equation as RFC 8032's deterministic ones. What changes is
//! how `r` is chosen, which verification cannot see: instead of hashing the
//! key's prefix with the message, each `r` is a SHA-512 of a per-process
//! secret seed, fresh operating-system randomness and a counter. Ed25519's
//! security needs `r` secret, unpredictable and never used for two messages:
//! the seed and the randomness keep it secret (either alone suffices), the
//! counter keeps it unique within the process, and each pair leaves the pool
//! exactly once, under its lock; its slot and the pair itself are wiped once
//! used. When the pool is empty, signing falls back to the deterministic
//! RFC 8032 signature.
//!
//! What this gives up against RFC 8032: a deterministic signature cannot
//! reuse a nonce even if the process's memory is duplicated. A pool can: a
//! responder whose running memory is restored twice from one snapshot, or
//! whose VM is cloned live, would sign different replies with the same
//! nonces in each copy, which reveals its key. Where that can happen, the
//! responder's `[security] presign = false` signs the RFC 8032 way.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use ed25519_dalek::{Signature, VerifyingKey};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha512};
use zeroize::Zeroize;

/// How many nonces the filling thread makes between looks at the pool: few,
/// so that the first are ready soon after a start on a busy machine.
const CHUNK: usize = 8;

/// How long signing must pause before a pool above its low-water mark is
/// topped up, so that refilling never competes with a burst of replies.
const QUIET: Duration = Duration::from_millis(50);

/// Below this the pool is refilled at once, burst or not.
fn low_water(capacity: usize) -> usize {
    capacity / 4
}

/// One prepared nonce: the secret scalar and its compressed point.
struct Nonce {
    r: Scalar,
    big_r: [u8; 32],
}

impl Drop for Nonce {
    fn drop(&mut self) {
        self.r.zeroize();
    }
}

/// What the filling thread is waiting for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// Nothing: it is making nonces.
    No,
    /// The pool to drop below capacity.
    Room,
    /// A pause in signing, or the pool to drop below its low-water mark.
    Quiet,
}

struct Pool {
    ready: Vec<Nonce>,
    waiting: Waiting,
    /// When a nonce was last taken.
    last_take: Option<Instant>,
    stop: bool,
}

struct Inner {
    pool: Mutex<Pool>,
    wake: Condvar,
    capacity: usize,
    prepared: AtomicU64,
    inline: AtomicU64,
}

/// A pool of prepared Ed25519 nonces, shared by every key a process signs
/// with, and the thread that keeps it full. Dropping it stops the thread.
pub struct Presigner {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Presigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presigner")
            .field("capacity", &self.inner.capacity)
            .field("ready", &self.ready())
            .finish()
    }
}

/// Makes nonces: a per-process secret seed, fresh randomness per chunk and
/// a counter, hashed together.
struct NonceMaker {
    seed: [u8; 32],
    counter: u64,
}

impl NonceMaker {
    fn new() -> NonceMaker {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        NonceMaker { seed, counter: 0 }
    }

    fn chunk(&mut self, n: usize) -> Vec<Nonce> {
        let mut fresh = [0u8; 32];
        OsRng.fill_bytes(&mut fresh);
        let out = (0..n)
            .map(|_| {
                self.counter += 1;
                let mut h = Sha512::new();
                h.update(b"mco presigned nonce\0");
                h.update(self.seed);
                h.update(fresh);
                h.update(self.counter.to_le_bytes());
                let r = Scalar::from_hash(h);
                let big_r = EdwardsPoint::mul_base(&r).compress().to_bytes();
                Nonce { r, big_r }
            })
            .collect();
        fresh.zeroize();
        out
    }
}

impl Drop for NonceMaker {
    fn drop(&mut self) {
        self.seed.zeroize();
    }
}

impl Presigner {
    /// A pool of `capacity` nonces and the thread that fills it. The thread
    /// calls `on_start` first: the responder passes one that moves it to
    /// the system's idle scheduling class, so it takes only time no one
    /// else wants. The pool starts empty and fills in the background.
    /// `capacity` 0 is [`Presigner::inline`].
    pub fn start(capacity: usize, on_start: fn()) -> std::io::Result<Presigner> {
        let presigner = Presigner::with_capacity(capacity);
        if capacity > 0 {
            let filler = presigner.inner.clone();
            std::thread::Builder::new()
                .name("mco-presign".into())
                .spawn(move || {
                    on_start();
                    fill(&filler)
                })?;
        }
        Ok(presigner)
    }

    /// A presigner with no pool and no thread: every signature is RFC
    /// 8032's deterministic one.
    pub fn inline() -> Presigner {
        Presigner::with_capacity(0)
    }

    fn with_capacity(capacity: usize) -> Presigner {
        Presigner {
            inner: Arc::new(Inner {
                pool: Mutex::new(Pool {
                    ready: Vec::with_capacity(capacity),
                    waiting: Waiting::No,
                    last_take: None,
                    stop: false,
                }),
                wake: Condvar::new(),
                capacity,
                prepared: AtomicU64::new(0),
                inline: AtomicU64::new(0),
            }),
        }
    }

    /// How many prepared nonces are waiting.
    pub fn ready(&self) -> usize {
        self.lock().ready.len()
    }

    /// Signatures made so far with a prepared nonce, and the RFC 8032 way
    /// because the pool was empty.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.inner.prepared.load(Relaxed),
            self.inner.inline.load(Relaxed),
        )
    }

    /// The most nonces kept ready.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.inner.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Option<Nonce> {
        let mut pool = self.lock();
        let nonce = pool.ready.pop();
        // The vacated slot still holds the nonce's bytes: overwrite them.
        if let Some(slot) = pool.ready.spare_capacity_mut().first_mut() {
            slot.write(Nonce {
                r: Scalar::ZERO,
                big_r: [0; 32],
            });
        }
        pool.last_take = Some(Instant::now());
        let wake = match pool.waiting {
            Waiting::No => false,
            Waiting::Room => true,
            Waiting::Quiet => pool.ready.len() < low_water(self.inner.capacity),
        };
        if wake {
            pool.waiting = Waiting::No;
            self.inner.wake.notify_one();
        }
        nonce
    }

    /// Signs `message` with `key` (whose public half is `public`). Returns
    /// the signature and whether a prepared nonce was used (`false`: the
    /// pool was empty and the signature is RFC 8032's deterministic one).
    pub fn sign(
        &self,
        key: &ExpandedSecretKey,
        public: &VerifyingKey,
        message: &[u8],
    ) -> (Signature, bool) {
        let Some(nonce) = self.take() else {
            self.inner.inline.fetch_add(1, Relaxed);
            return (raw_sign::<Sha512>(key, message, public), false);
        };
        let mut h = Sha512::new();
        h.update(nonce.big_r);
        h.update(public.as_bytes());
        h.update(message);
        let k = Scalar::from_hash(h);
        let s = k * key.scalar + nonce.r;
        self.inner.prepared.fetch_add(1, Relaxed);
        (Signature::from_components(nonce.big_r, s.to_bytes()), true)
    }
}

impl Drop for Presigner {
    fn drop(&mut self) {
        let mut pool = self.lock();
        pool.stop = true;
        pool.ready.clear();
        self.inner.wake.notify_all();
    }
}

/// The filling thread: tops the pool up a chunk at a time, computing
/// outside the lock. It sleeps while the pool is full, and while it is
/// above its low-water mark and signing has not paused for [`QUIET`].
fn fill(inner: &Inner) {
    let mut maker = NonceMaker::new();
    let low = low_water(inner.capacity);
    loop {
        let want = {
            let mut pool = inner.pool.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if pool.stop {
                    return;
                }
                let len = pool.ready.len();
                if len >= inner.capacity {
                    pool.waiting = Waiting::Room;
                    pool = inner.wake.wait(pool).unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                let busy = pool.last_take.map(|t| t.elapsed()).filter(|d| *d < QUIET);
                if let (true, Some(since)) = (len >= low, busy) {
                    pool.waiting = Waiting::Quiet;
                    pool = inner
                        .wake
                        .wait_timeout(pool, QUIET - since)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    continue;
                }
                pool.waiting = Waiting::No;
                break (inner.capacity - len).min(CHUNK);
            }
        };
        let made = maker.chunk(want);
        let mut pool = inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.stop {
            return;
        }
        pool.ready.extend(made);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use std::collections::HashSet;

    fn key(seed: u8) -> (ExpandedSecretKey, VerifyingKey) {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        (ExpandedSecretKey::from(sk.as_bytes()), sk.verifying_key())
    }

    /// Waits, with a deadline, until `done()`.
    fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn full(p: &Presigner) {
        until("the pool to fill", || p.ready() >= p.capacity());
    }

    #[test]
    fn prepared_signatures_verify_strictly_and_never_share_a_nonce() {
        let p = Presigner::start(300, || ()).unwrap();
        full(&p);
        let keys: Vec<_> = (1..=3).map(key).collect();
        let mut seen = HashSet::new();
        for i in 0..300 {
            let (sk, pk) = &keys[i % keys.len()];
            let msg = format!("reply {i}");
            let (sig, prepared) = p.sign(sk, pk, msg.as_bytes());
            assert!(prepared, "signature {i} did not use the pool");
            pk.verify_strict(msg.as_bytes(), &sig).unwrap();
            assert!(pk.verify_strict(b"another body", &sig).is_err());
            assert!(seen.insert(sig.r_bytes().to_owned()), "nonce reused at {i}");
        }
    }

    #[test]
    fn an_empty_pool_signs_the_rfc_8032_way_and_refills() {
        let p = Presigner::start(8, || ()).unwrap();
        full(&p);
        let (sk, pk) = key(7);
        for _ in 0..8 {
            assert!(p.sign(&sk, &pk, b"x").1);
        }
        // Drained, unless the thread has already put some back: sign until
        // one falls back, bounded.
        let mut fell_back = false;
        for _ in 0..10_000 {
            let (sig, prepared) = p.sign(&sk, &pk, b"body");
            if !prepared {
                assert_eq!(sig, raw_sign::<Sha512>(&sk, b"body", &pk));
                fell_back = true;
                break;
            }
        }
        assert!(fell_back, "the pool never ran dry");
        let (prepared, inline) = p.counts();
        assert!(prepared >= 8 && inline == 1, "{prepared} {inline}");
        full(&p);
        assert_eq!(p.ready(), 8);
    }

    #[test]
    fn a_pool_above_its_low_water_mark_is_topped_up_once_signing_pauses() {
        let p = Presigner::start(64, || ()).unwrap();
        full(&p);
        let (sk, pk) = key(5);
        for _ in 0..16 {
            assert!(p.sign(&sk, &pk, b"burst").1);
        }
        assert!(p.ready() >= low_water(64));
        full(&p);
    }

    #[test]
    fn capacity_zero_has_no_pool() {
        let p = Presigner::inline();
        let (sk, pk) = key(9);
        let (sig, prepared) = p.sign(&sk, &pk, b"m");
        assert!(!prepared);
        assert_eq!(p.counts(), (0, 1));
        pk.verify_strict(b"m", &sig).unwrap();
    }

    #[test]
    fn dropping_it_stops_the_thread() {
        let p = Presigner::start(4, || ()).unwrap();
        let weak = Arc::downgrade(&p.inner);
        drop(p);
        until("the filling thread to stop", || weak.upgrade().is_none());
    }
}

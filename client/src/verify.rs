//! Reply intake: decode and verify replies on worker tasks as they arrive.
//!
//! Checking an Ed25519 signature costs tens of microseconds; a thousand
//! replies checked one by one on the receiving task would add tens of
//! milliseconds to every call. Replies are therefore checked in batches on
//! tasks of their own, so all cores share the work, and the caller reads
//! verified replies from a channel in the order the checks finish.
//!
//! At most one batch per core is being checked at a time: while they all
//! are, new replies wait in the subscription and make the next batch larger
//! rather than queueing as many small ones. A batch's signatures are checked
//! together (one Ed25519 batch equation, see `TrustStore::verify_many`),
//! whose cost per signature falls with its size: from 96 signatures up it is
//! solved by Pippenger's method (13.6 µs a signature in a batch of 256,
//! against 16–20 µs in one of 64 and 38–47 µs alone, on the benchmark
//! machine). So while more replies are on their way, fewer than 96 wait up
//! to `LINGER` (25 ms) for company; once all the replies the caller expects
//! are in, what is left is shared among the cores at once. Batches are
//! checked on the blocking pool, not on the async workers that read the bus.
//!
//! Whatever a node sends is held only within a budget: replies taken from
//! the subscription and not yet read by the caller may hold at most
//! [`HELD_BYTES_MAX`] bytes and [`HELD_MAX`] replies; past either, further
//! replies are dropped and counted ([`Intake::dropped`]) until the caller
//! catches up, so a node flooding the reply subject cannot grow the
//! client's memory. The reasons for refusing a reply quote node-chosen
//! names cut to [`QUOTE_MAX`] characters, and the whole text to
//! [`REASON_MAX`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use mco_core::wire::{now_ms, Envelope, Kind, ReplyBody};
use mco_security::TrustStore;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Most replies checked in one batch.
const BATCH_MAX: usize = 256;

/// Fewest replies worth a batch while more are on their way. From 95
/// signatures (191 points) up, the batch equation is solved with
/// Pippenger's method, cheaper per signature than the smaller batches'
/// (`cargo run --release -p mco-security --example crypto_floor` measures it).
const BATCH_MIN: usize = 96;

/// Longest a reply waits for others to make up a batch.
const LINGER: Duration = Duration::from_millis(25);

/// Whether `pending` replies make a batch now: enough for Pippenger's
/// method, or everything expected is in.
fn worth_a_batch(pending: usize, all_in: bool) -> bool {
    pending >= BATCH_MIN || all_in
}

/// How many of `pending` replies the next batch takes. While more are on
/// their way, as many as a batch holds; once all are in, an equal share
/// per core, but at least `BATCH_MIN` (a shorter tail makes one Pippenger
/// batch, and the rest goes beside it to another core) and at most
/// `BATCH_MAX`.
fn batch_size(pending: usize, all_in: bool, cores: usize) -> usize {
    let size = if all_in {
        pending.div_ceil(cores.max(1)).clamp(BATCH_MIN, BATCH_MAX)
    } else {
        BATCH_MAX
    };
    size.min(pending)
}

/// Most bytes of replies held at once: taken from the subscription
/// (counted by their size on the wire) and not yet read by the caller.
pub const HELD_BYTES_MAX: usize = 64 << 20;

/// Most replies held at once.
pub const HELD_MAX: usize = 65_536;

/// What holding one reply costs beyond its bytes (its place in the queues).
const HELD_OVERHEAD: usize = 64;

/// Longest node-chosen name quoted in a reason, in characters.
pub const QUOTE_MAX: usize = 64;

/// Longest reason for refusing a reply, in characters.
pub const REASON_MAX: usize = 256;

/// `s` cut to at most `max` characters, with `…` when it was cut.
pub fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// A node-chosen name as a reason quotes it: cut to [`QUOTE_MAX`]
/// characters, then escaped (`{:?}`), so it can neither grow the text nor
/// reach a terminal with control characters.
pub fn quote(name: &str) -> String {
    format!("{:?}", cut(name, QUOTE_MAX))
}

fn untrusted(why: impl std::fmt::Display) -> Rejected {
    Rejected::Untrusted(cut(&why.to_string(), REASON_MAX))
}

fn undecodable(why: impl std::fmt::Display) -> Rejected {
    Rejected::Undecodable(cut(&why.to_string(), REASON_MAX))
}

/// A reply signed by `signer` that names `sender`.
fn not_its_sender(sender: &str, signer: &str) -> Rejected {
    untrusted(format!(
        "a reply claiming to be from {} is signed by {}",
        quote(sender),
        quote(signer)
    ))
}

/// Refused replies: how many, and the reasons of the first few.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals {
    /// How many replies were refused.
    pub count: usize,
    /// The reasons of the first [`Refusals::KEPT`].
    pub first: Vec<String>,
}

impl Refusals {
    /// How many reasons are kept.
    pub const KEPT: usize = 5;

    /// Counts one refusal, keeping its reason if it is among the first.
    pub fn add(&mut self, why: String) {
        self.count += 1;
        if self.first.len() < Self::KEPT {
            self.first.push(cut(&why, REASON_MAX));
        }
    }

    /// The reasons kept, joined for one line (see [`reasons`]).
    pub fn reasons(&self) -> String {
        reasons(self.count, &self.first)
    }
}

/// The reasons `first` of `count` refusals, joined for one line:
/// `the first 5: a; b; …`, or all of them when there were no more.
pub fn reasons(count: usize, first: &[String]) -> String {
    let joined = first.join("; ");
    if count > first.len() {
        format!("the first {}: {joined}", first.len())
    } else {
        joined
    }
}

/// Why a reply was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// Not a valid reply envelope or body.
    Undecodable(String),
    /// Signed badly, by an untrusted party, or not by the node it names.
    Untrusted(String),
}

/// Opens reply envelopes: decode, and verify when a trust store is set.
#[derive(Clone)]
pub struct Opener {
    /// The CA and CRL; `None` in insecure mode.
    pub trust: Option<Arc<TrustStore>>,
    /// Message size bound.
    pub max_payload: usize,
    /// Key pins, for the `provisioning` collective only: with them, a reply
    /// signed by a raw node key (no certificate) is accepted if the key is
    /// the one pinned for its sender, or the sender has none yet. Without
    /// them such a reply is untrusted.
    pub pins: Option<Arc<crate::pins::KeyPins>>,
}

impl Opener {
    /// Decodes and checks many replies, their signatures in one batch.
    pub fn open_many(&self, payloads: &[bytes::Bytes]) -> Vec<Result<ReplyBody, Rejected>> {
        let Some(trust) = self.trust.as_ref().filter(|_| self.pins.is_none()) else {
            return payloads.iter().map(|p| self.open(p)).collect();
        };
        let decoded: Vec<Result<(Envelope, ReplyBody), Rejected>> = payloads
            .iter()
            .map(|p| {
                let env =
                    Envelope::decode(p, self.max_payload, Kind::Reply).map_err(undecodable)?;
                let reply = env.reply().map_err(undecodable)?;
                Ok((env, reply))
            })
            .collect();
        let envs: Vec<&Envelope> = decoded
            .iter()
            .filter_map(|d| d.as_ref().ok().map(|(e, _)| e))
            .collect();
        let mut checked = trust
            .verify_many(&envs, (now_ms() / 1000) as i64)
            .into_iter();
        decoded
            .into_iter()
            .map(|d| {
                let (_, reply) = d?;
                let signer = checked
                    .next()
                    .unwrap_or(Err(mco_security::SecurityError::Unsigned))
                    .map_err(untrusted)?;
                if signer.node_identity() != Some(reply.sender.as_str()) {
                    return Err(not_its_sender(&reply.sender, &signer.name));
                }
                Ok(reply)
            })
            .collect()
    }

    /// Decodes and checks one reply.
    pub fn open(&self, payload: &[u8]) -> Result<ReplyBody, Rejected> {
        let env = Envelope::decode(payload, self.max_payload, Kind::Reply).map_err(undecodable)?;
        let reply = env.reply().map_err(undecodable)?;
        if !env.key.is_empty() {
            return self.open_key_signed(&env, reply);
        }
        if let Some(trust) = &self.trust {
            let signer = trust
                .verify(&env, (now_ms() / 1000) as i64)
                .map_err(untrusted)?;
            if signer.node_identity() != Some(reply.sender.as_str()) {
                return Err(not_its_sender(&reply.sender, &signer.name));
            }
        }
        Ok(reply)
    }

    /// A reply signed by a raw node key: good only against the pins.
    fn open_key_signed(&self, env: &Envelope, reply: ReplyBody) -> Result<ReplyBody, Rejected> {
        let Some(pins) = &self.pins else {
            return Err(untrusted(format!(
                "{} signed with a bare key; only the provisioning collective accepts that",
                quote(&reply.sender)
            )));
        };
        if self.trust.is_none() {
            // Insecure mode: nothing is checked, pins included.
            return Ok(reply);
        }
        let key = mco_security::verify_key_signed(env).map_err(untrusted)?;
        pins.check(&reply.sender, &key).map_err(untrusted)?;
        Ok(reply)
    }
}

/// The budget of replies held by one [`Intake`]: taken from the
/// subscription and not yet read by the caller.
#[derive(Debug)]
struct Held {
    bytes: AtomicUsize,
    count: AtomicUsize,
    dropped: AtomicUsize,
    bytes_max: usize,
    count_max: usize,
}

impl Held {
    fn new(bytes_max: usize, count_max: usize) -> Held {
        Held {
            bytes: AtomicUsize::new(0),
            count: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            bytes_max,
            count_max,
        }
    }

    /// What holding a reply of `len` bytes costs.
    fn cost(len: usize) -> usize {
        len.saturating_add(HELD_OVERHEAD)
    }

    /// Takes a reply of `len` bytes into the budget, or counts it as
    /// dropped when it does not fit. Only the reading task takes, so the
    /// check and the addition need not be one atomic step: the caller only
    /// ever lowers the sums meanwhile.
    fn take(&self, len: usize) -> bool {
        let cost = Self::cost(len);
        let bytes = self.bytes.load(Ordering::Acquire);
        let count = self.count.load(Ordering::Acquire);
        if count >= self.count_max || bytes.saturating_add(cost) > self.bytes_max {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.bytes.fetch_add(cost, Ordering::AcqRel);
        self.count.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Gives back what a reply of `len` bytes took.
    fn release(&self, len: usize) {
        self.bytes.fetch_sub(Self::cost(len), Ordering::AcqRel);
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One checked reply on its way to the caller: its round-trip time, the
/// outcome, and its size on the wire (what it holds of the budget).
type Checked = (Duration, Result<ReplyBody, Rejected>, usize);

/// Replies of one subscription, verified in parallel.
pub struct Intake {
    rx: mpsc::Receiver<Checked>,
    reader: JoinHandle<()>,
    held: Arc<Held>,
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Intake {
    /// Starts reading `sub`; round-trip times are measured from `sent`.
    /// `expected` is how many replies the caller is waiting for, when it
    /// knows: once that many have arrived, nothing more is waited for
    /// before the last checks start.
    pub fn start(
        sub: async_nats::Subscriber,
        opener: Opener,
        sent: Instant,
        expected: Option<usize>,
    ) -> Intake {
        Intake::start_within(
            sub,
            opener,
            sent,
            expected,
            Held::new(HELD_BYTES_MAX, HELD_MAX),
        )
    }

    fn start_within(
        mut sub: async_nats::Subscriber,
        opener: Opener,
        sent: Instant,
        expected: Option<usize>,
        held: Held,
    ) -> Intake {
        let (tx, rx) = mpsc::channel(1024);
        let held = Arc::new(held);
        let budget = held.clone();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let checking = Arc::new(Semaphore::new(cores));
        let reader = tokio::spawn(async move {
            // Replies taken from the subscription (timed as they are taken),
            // not yet handed to a check.
            let mut pending: Vec<(Duration, bytes::Bytes)> = Vec::new();
            // Replies taken so far, checked or not.
            let mut received = 0usize;
            let mut closed = false;
            let take = |pending: &mut Vec<(Duration, bytes::Bytes)>,
                        received: &mut usize,
                        msg: async_nats::Message| {
                // A status message (e.g. "no responders") is the broker talking, not a reply.
                if msg.status.is_none() {
                    *received += 1;
                    if budget.take(msg.payload.len()) {
                        pending.push((sent.elapsed(), msg.payload));
                    }
                }
            };
            let all_in =
                |closed: bool, received: usize| closed || expected.is_some_and(|n| received >= n);
            loop {
                if pending.is_empty() {
                    if closed {
                        break;
                    }
                    match sub.next().await {
                        Some(msg) => take(&mut pending, &mut received, msg),
                        None => break,
                    }
                    continue;
                }
                // Too few for a cheap batch while more are on their way:
                // wait for more, but never keep a reply more than LINGER.
                if !worth_a_batch(pending.len(), all_in(closed, received)) {
                    let until = sent + pending[0].0 + LINGER;
                    tokio::select! {
                        biased;
                        msg = sub.next() => {
                            match msg {
                                Some(msg) => take(&mut pending, &mut received, msg),
                                None => closed = true,
                            }
                            continue;
                        }
                        _ = tokio::time::sleep_until(until) => {}
                    }
                }
                // Wait for a free core, taking what arrives meanwhile.
                let permit = tokio::select! {
                    biased;
                    permit = checking.clone().acquire_owned() => match permit {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    msg = sub.next(), if !closed => {
                        match msg {
                            Some(msg) => take(&mut pending, &mut received, msg),
                            None => closed = true,
                        }
                        continue;
                    }
                };
                // Take whatever else has already arrived, up to a batch.
                while !closed && pending.len() < BATCH_MAX {
                    match sub.next().now_or_never() {
                        Some(Some(msg)) => take(&mut pending, &mut received, msg),
                        Some(None) => closed = true,
                        None => break,
                    }
                }
                // When nothing more is coming, share what is left among the
                // cores rather than leave one core the whole tail.
                let size = batch_size(pending.len(), all_in(closed, received), cores);
                let rest = pending.split_off(size);
                let (rtts, batch): (Vec<Duration>, Vec<bytes::Bytes>) =
                    std::mem::replace(&mut pending, rest).into_iter().unzip();
                tracing::trace!(replies = batch.len(), received, "checking a batch");
                let tx = tx.clone();
                let opener = opener.clone();
                // A batch is milliseconds of arithmetic: off the async workers.
                let checked = tokio::task::spawn_blocking(move || {
                    let results = opener.open_many(&batch);
                    drop(permit);
                    let sizes: Vec<usize> = batch.iter().map(bytes::Bytes::len).collect();
                    (results, sizes)
                });
                tokio::spawn(async move {
                    let Ok((results, sizes)) = checked.await else {
                        return;
                    };
                    for ((rtt, r), len) in rtts.into_iter().zip(results).zip(sizes) {
                        if tx.send((rtt, r, len)).await.is_err() {
                            break;
                        }
                    }
                });
            }
            let _ = sub.unsubscribe().await;
        });
        Intake { rx, reader, held }
    }

    /// The next checked reply, or `None` at `deadline`.
    pub async fn next_until(
        &mut self,
        deadline: Instant,
    ) -> Option<(Duration, Result<ReplyBody, Rejected>)> {
        let (rtt, r, len) = tokio::time::timeout_at(deadline, self.rx.recv())
            .await
            .ok()
            .flatten()?;
        self.held.release(len);
        Some((rtt, r))
    }

    /// How many replies were dropped unread so far because more were held
    /// than the budget allows ([`HELD_BYTES_MAX`], [`HELD_MAX`]).
    pub fn dropped(&self) -> usize {
        self.held.dropped.load(Ordering::Relaxed)
    }
}

/// What to tell the operator about `n` replies dropped unread.
pub fn dropped_words(n: usize) -> String {
    format!(
        "dropped {n} replies unread: more arrived at once than the client holds ({} MiB, {HELD_MAX} replies); a node may be flooding the reply subject, and nodes may be missing",
        HELD_BYTES_MAX >> 20
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_quote_node_chosen_names_cut_short_and_escaped() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "abc…");
        assert_eq!(cut("ééé", 2), "éé…", "cut on characters, not bytes");
        let huge = "x".repeat(500 * 1024);
        let Rejected::Untrusted(why) = not_its_sender(&huge, "node:evil-08") else {
            panic!("not untrusted");
        };
        assert!(why.len() < 200, "{why}");
        assert!(
            why.contains(&format!("\"{}…\"", "x".repeat(QUOTE_MAX))),
            "{why}"
        );
        assert!(why.contains("\"node:evil-08\""), "{why}");
        assert_eq!(
            quote("a\u{1b}[2Jb"),
            "\"a\\u{1b}[2Jb\"",
            "no escape reaches a terminal"
        );
        let Rejected::Untrusted(long) = untrusted("y".repeat(10_000)) else {
            panic!("not untrusted");
        };
        assert_eq!(long.chars().count(), REASON_MAX + 1);
    }

    #[test]
    fn refusals_count_all_and_keep_the_first_few() {
        let mut r = Refusals::default();
        r.add("one".into());
        r.add("two".into());
        assert_eq!(r.reasons(), "one; two");
        for i in 0..10_000 {
            r.add(format!("{i}{}", "z".repeat(1000)));
        }
        assert_eq!(r.count, 10_002);
        assert_eq!(r.first.len(), Refusals::KEPT);
        assert!(r.first.iter().all(|w| w.chars().count() <= REASON_MAX + 1));
        let line = r.reasons();
        assert!(line.starts_with("the first 5: one; two; 0z"), "{line}");
        assert!(
            line.len() < Refusals::KEPT * (REASON_MAX * 4 + 8),
            "{}",
            line.len()
        );
    }

    #[test]
    fn the_held_budget_drops_past_its_bytes_or_count_until_released() {
        let held = Held::new(1000, 3);
        assert!(held.take(500));
        assert!(!held.take(500), "500 + overheads is over 1000 bytes");
        assert!(held.take(100));
        assert!(held.take(0));
        assert!(!held.take(0), "three held already");
        assert_eq!(held.dropped.load(Ordering::Relaxed), 2);
        held.release(500);
        assert!(held.take(500), "room again once the caller read one");
        held.release(500);
        held.release(100);
        held.release(0);
        assert_eq!(held.bytes.load(Ordering::Relaxed), 0);
        assert_eq!(held.count.load(Ordering::Relaxed), 0);
        assert!(
            !Held::new(HELD_BYTES_MAX, HELD_MAX).take(usize::MAX),
            "no overflow"
        );
    }

    #[test]
    fn batches_wait_for_company_until_everything_is_in() {
        assert!(!worth_a_batch(1, false));
        assert!(!worth_a_batch(BATCH_MIN - 1, false));
        assert!(worth_a_batch(BATCH_MIN, false));
        assert!(worth_a_batch(1, true), "nothing more to wait for");
    }

    #[test]
    fn batch_sizes_stay_in_pippengers_range_and_share_the_tail() {
        // While replies arrive: up to a full batch.
        assert_eq!(batch_size(100, false, 2), 100);
        assert_eq!(batch_size(1000, false, 2), BATCH_MAX);
        // Lingered past LINGER with few replies: all of them.
        assert_eq!(batch_size(7, false, 2), 7);
        // All in: shared between the cores, each share a Pippenger batch.
        assert_eq!(batch_size(300, true, 2), 150);
        // A tail too short for two Pippenger batches: one, and the rest
        // beside it on the other core.
        assert_eq!(batch_size(150, true, 2), BATCH_MIN);
        assert_eq!(batch_size(900, true, 2), BATCH_MAX);
        assert_eq!(batch_size(40, true, 2), 40);
        assert_eq!(batch_size(500, true, 4), 125);
        assert_eq!(batch_size(5, true, 0), 5);
    }
}

//! Reply intake: decode and verify replies on worker tasks as they arrive.
//!
//! Checking an Ed25519 signature costs tens of microseconds; a thousand
//! replies checked one by one on the receiving task would add tens of
//! milliseconds to every call. Each reply is therefore checked on a task of
//! its own, so all cores share the work, and the caller reads verified
//! replies from a channel in the order the checks finish.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mco_core::security::TrustStore;
use mco_core::wire::{now_ms, Envelope, Kind, ReplyBody};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

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
}

impl Opener {
    /// Decodes and checks one reply.
    pub fn open(&self, payload: &[u8]) -> Result<ReplyBody, Rejected> {
        let env = Envelope::decode(payload, self.max_payload, Kind::Reply)
            .map_err(|e| Rejected::Undecodable(e.to_string()))?;
        let reply = env
            .reply()
            .map_err(|e| Rejected::Undecodable(e.to_string()))?;
        if let Some(trust) = &self.trust {
            let signer = trust
                .verify(&env, (now_ms() / 1000) as i64)
                .map_err(|e| Rejected::Untrusted(e.to_string()))?;
            if signer.node_identity() != Some(reply.sender.as_str()) {
                return Err(Rejected::Untrusted(format!(
                    "a reply claiming to be from {:?} is signed by {:?}",
                    reply.sender, signer.name
                )));
            }
        }
        Ok(reply)
    }
}

/// Replies of one subscription, verified in parallel.
pub struct Intake {
    rx: mpsc::Receiver<(Duration, Result<ReplyBody, Rejected>)>,
    reader: JoinHandle<()>,
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Intake {
    /// Starts reading `sub`; round-trip times are measured from `sent`.
    pub fn start(mut sub: async_nats::Subscriber, opener: Opener, sent: Instant) -> Intake {
        let (tx, rx) = mpsc::channel(1024);
        let reader = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                // A status message (e.g. "no responders") is the broker talking, not a reply.
                if msg.status.is_some() {
                    continue;
                }
                let rtt = sent.elapsed();
                let tx = tx.clone();
                let opener = opener.clone();
                tokio::spawn(async move {
                    let _ = tx.send((rtt, opener.open(&msg.payload))).await;
                });
            }
            let _ = sub.unsubscribe().await;
        });
        Intake { rx, reader }
    }

    /// The next checked reply, or `None` at `deadline`.
    pub async fn next_until(
        &mut self,
        deadline: Instant,
    ) -> Option<(Duration, Result<ReplyBody, Rejected>)> {
        tokio::time::timeout_at(deadline, self.rx.recv())
            .await
            .ok()
            .flatten()
    }
}

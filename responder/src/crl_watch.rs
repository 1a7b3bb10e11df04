//! Revocation that reaches every node (ARCHITECTURE.md §11): the CA's signed CRL is published
//! in a JetStream key-value bucket (`mco pki revoke --publish`, `mco pki crl --publish`), and
//! one task per responder process watches it. A CRL that the CA signed and that is newer than
//! the one in force replaces the configured `[security] crl` file and is put in force within
//! seconds; anything else is refused and counted (`rpcutil daemon_stats`: `crl.refused`). The
//! file keeps the last good CRL while the bus is unreachable and across restarts.
//!
//! The CA agent publishes too ([`publish`]): after a revocation its node puts the new CRL in
//! the bucket, which the broker allows only the nodes named by `mco pki broker-config
//! --crl-publisher`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use futures::StreamExt;
use mco_core::inventory::{CRL_KEY, MAX_CRL};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::security::SharedTrust;

/// The pause before watching again after the bucket was out of reach or the watch ended.
const RETRY: Duration = Duration::from_secs(5);

/// How long publishing a CRL may take, opening the bucket included.
const PUBLISH_BOUND: Duration = Duration::from_secs(10);

/// Puts `crl` (the bytes of the CA's `ca.crl`) in `bucket` under [`CRL_KEY`]; returns the
/// revision.
pub async fn publish(client: Client, bucket: String, crl: Vec<u8>) -> Result<u64, String> {
    if crl.len() > MAX_CRL {
        return Err(format!(
            "the CRL is {} bytes, over the {MAX_CRL} that nodes take",
            crl.len()
        ));
    }
    let put = async {
        let js = async_nats::jetstream::new(client);
        let store = js
            .get_key_value(bucket.as_str())
            .await
            .map_err(|e| format!("opening bucket {bucket}: {e}"))?;
        store
            .put(CRL_KEY, crl.into())
            .await
            .map_err(|e| format!("publishing in bucket {bucket} (is this node a --crl-publisher of the broker's configuration?): {e}"))
    };
    tokio::time::timeout(PUBLISH_BOUND, put)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "publishing in bucket {bucket} took longer than {PUBLISH_BOUND:?}"
            ))
        })
}

/// Watches `bucket`'s CRL until `shutdown` turns true.
pub async fn watch(
    client: Client,
    trust: Arc<SharedTrust>,
    bucket: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let js = async_nats::jetstream::new(client);
    let mut warned = false;
    loop {
        let run = async {
            let store = js
                .get_key_value(bucket.as_str())
                .await
                .map_err(|e| e.to_string())?;
            let mut entries = store
                .watch_with_history(CRL_KEY)
                .await
                .map_err(|e| e.to_string())?;
            while let Some(entry) = entries.next().await {
                let entry = entry.map_err(|e| e.to_string())?;
                if !matches!(entry.operation, async_nats::jetstream::kv::Operation::Put) {
                    continue;
                }
                if entry.value.len() > MAX_CRL {
                    warn!(
                        bytes = entry.value.len(),
                        "a published CRL over {MAX_CRL} bytes is ignored"
                    );
                    continue;
                }
                let trust = trust.clone();
                let bytes = entry.value.clone();
                // Parsing, verifying and writing the file are blocking work.
                match tokio::task::spawn_blocking(move || trust.offer_crl(&bytes)).await {
                    Ok(Ok(true)) => info!(revision = entry.revision, "a published CRL is in force"),
                    Ok(Ok(false)) => debug!(
                        revision = entry.revision,
                        "the published CRL is the one in force"
                    ),
                    Ok(Err(_)) | Err(_) => {}
                }
            }
            Ok::<(), String>(())
        };
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            result = run => {
                if let Err(e) = result {
                    if !warned {
                        warn!("cannot watch the published CRL (bucket {bucket}): {e}; trying again every {RETRY:?}");
                        warned = true;
                    }
                }
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

//! Revocation for long-running clients (ARCHITECTURE.md §11): the provisioner, and any other
//! process that keeps a [`TrustStore`] for hours, watches the CRL the CA publishes in the CRL
//! bucket and puts a newer one in force in place ([`TrustStore::apply_crl`]), so that a node
//! or user revoked while it runs is refused within seconds. Only a CRL the CA signed and that is
//! newer than the one in force is taken; the one in force stays while the bus is unreachable.
//! Unlike a responder, a client does not rewrite its configured CRL file (it is often the
//! operator's own copy); a restart reads the file, then the bucket again.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mco_core::inventory::{CRL_KEY, MAX_CRL};
use mco_security::TrustStore;
use tracing::{debug, info, warn};

/// The pause before watching again after the bucket was out of reach or the watch ended.
const RETRY: Duration = Duration::from_secs(5);

/// Watches `bucket`'s CRL for ever (the caller drops or aborts the task), applying each newer
/// CRL to every store in `stores`.
pub async fn watch(client: async_nats::Client, stores: Vec<Arc<TrustStore>>, bucket: String) {
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
                let stores = stores.clone();
                let bytes = entry.value.clone();
                // Parsing and verifying a CRL of thousands of serials is blocking work.
                let applied = tokio::task::spawn_blocking(move || {
                    stores
                        .iter()
                        .map(|s| s.apply_crl(&bytes))
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                for result in applied {
                    match result {
                        Ok(true) => info!(revision = entry.revision, "a published CRL is in force"),
                        Ok(false) => debug!(
                            revision = entry.revision,
                            "the published CRL is the one in force"
                        ),
                        Err(e) => warn!(
                            revision = entry.revision,
                            "refusing the published CRL: {e}; the CRL in force stays"
                        ),
                    }
                }
            }
            Ok::<(), String>(())
        };
        if let Err(e) = run.await {
            if !warned {
                warn!(
                    "cannot watch the published CRL (bucket {bucket}): {e}; trying again every \
                     {RETRY:?} (set [inventory] watch_crl = false where the broker keeps no registry)"
                );
                warned = true;
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

//! The registry bucket: a JetStream key-value bucket on the provisioning
//! broker, written by whatever boots nodes (`nats kv put BUCKET IDENTITY
//! VALUE`, or a plain publish to `$KV.BUCKET.IDENTITY`), read by the
//! provisioner to decide whether a node is expected.
//!
//! It speaks the JetStream API's JSON directly — one stream `KV_BUCKET`
//! holding the last value per `$KV.BUCKET.KEY` subject, read with direct
//! gets — so it works with every server that has JetStream (2.9 and later)
//! whatever the client library's idea of the newest API.

use std::time::Duration;

use async_nats::Client;
use serde_json::{json, Value};

/// An open registry bucket.
#[derive(Clone)]
pub struct ExpectedNodes {
    client: Client,
    bucket: String,
    timeout: Duration,
}

async fn api(
    client: &Client,
    subject: String,
    body: Value,
    timeout: Duration,
) -> Result<Value, String> {
    let payload = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let msg = tokio::time::timeout(timeout, client.request(subject.clone(), payload.into()))
        .await
        .map_err(|_| format!("{subject}: no answer within {timeout:?}"))?
        .map_err(|e| {
            format!("{subject}: {e} (is JetStream enabled on the provisioning broker?)")
        })?;
    serde_json::from_slice(&msg.payload).map_err(|e| format!("{subject}: {e}"))
}

impl ExpectedNodes {
    /// Opens `bucket`, creating it (one value per key, kept on file) when it does not exist.
    pub async fn open(
        client: Client,
        bucket: &str,
        timeout: Duration,
    ) -> Result<ExpectedNodes, String> {
        let stream = format!("KV_{bucket}");
        let info = api(
            &client,
            format!("$JS.API.STREAM.INFO.{stream}"),
            json!({}),
            timeout,
        )
        .await?;
        if info.get("error").is_some() {
            let created = api(
                &client,
                format!("$JS.API.STREAM.CREATE.{stream}"),
                json!({
                    "name": stream,
                    "description": "identities the provisioner may provision",
                    "subjects": [format!("$KV.{bucket}.>")],
                    "max_msgs_per_subject": 1,
                    "discard": "new",
                    "allow_rollup_hdrs": true,
                    "deny_delete": true,
                    "allow_direct": true,
                    "retention": "limits",
                    "storage": "file",
                    "num_replicas": 1,
                }),
                timeout,
            )
            .await?;
            if let Some(e) = created.get("error") {
                return Err(format!("cannot create the bucket {bucket}: {e}"));
            }
        }
        Ok(ExpectedNodes {
            client,
            bucket: bucket.to_string(),
            timeout,
        })
    }

    /// The value stored under `key`, if any (a deleted or purged key has none).
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let subject = format!("$JS.API.DIRECT.GET.KV_{}", self.bucket);
        let body =
            serde_json::to_vec(&json!({"last_by_subj": format!("$KV.{}.{key}", self.bucket)}))
                .map_err(|e| e.to_string())?;
        let msg = tokio::time::timeout(
            self.timeout,
            self.client.request(subject.clone(), body.into()),
        )
        .await
        .map_err(|_| format!("{subject}: no answer within {:?}", self.timeout))?
        .map_err(|e| format!("{subject}: {e}"))?;
        if let Some(status) = msg.status {
            return if status.as_u16() == 404 {
                Ok(None)
            } else {
                Err(format!("{subject}: status {status}"))
            };
        }
        let deleted = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("KV-Operation"))
            .is_some_and(|op| op.as_str() != "PUT");
        Ok((!deleted).then(|| msg.payload.to_vec()))
    }
}

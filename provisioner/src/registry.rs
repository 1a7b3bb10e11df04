//! The registry bucket: a JetStream key-value bucket on the main
//! collective's broker (only certificates reach it), written by operators and
//! whatever boots nodes with their certificate (`nats kv put BUCKET IDENTITY
//! VALUE`, or a plain publish to `$KV.BUCKET.IDENTITY`), read by the
//! provisioner to decide whether a node is expected.
//!
//! It is read through async-nats' key-value client (its `jetstream` and `kv`
//! features): the bucket is the stream `KV_BUCKET` holding the last value
//! per `$KV.BUCKET.KEY` subject. A missing bucket is created as `nats kv add`
//! makes one, with the stream request alone: the library's own
//! `create_key_value` first asks for the account's JetStream limits, and
//! cannot read a 2.9 server's answer, while every JetStream server (2.9 and
//! later) serves the stream and key-value requests this module makes.
//!
//! Every operation is bounded twice: the JetStream context's timeout bounds
//! each API request the library makes, and each call here also has a
//! deadline of its own (twice that, so the library's own error comes first),
//! so a broker that is gone or never answers is an error after a known time,
//! never a hang. Values are what the broker delivers, so they are bounded by
//! the connection's maximum payload (the broker's `max_payload`), as with
//! any other message.

use std::error::Error as _;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::context::{
    GetStreamError, GetStreamErrorKind, KeyValueError, KeyValueErrorKind,
};
use async_nats::jetstream::kv::{EntryErrorKind, Operation, Store};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::Client;

/// An open registry bucket.
#[derive(Clone)]
pub struct ExpectedNodes {
    store: Store,
    timeout: Duration,
}

/// Runs `op`, giving up after `timeout` with an error naming `what`.
async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    timeout: Duration,
    op: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    tokio::time::timeout(timeout, op)
        .await
        .map_err(|_| format!("{what}: no answer within {timeout:?}"))?
        .map_err(|e| format!("{what}: {e}"))
}

/// What to add to an error when the broker did not answer a JetStream request
/// at all (no responders, a timeout): the usual cause.
const NO_JETSTREAM: &str =
    "is JetStream enabled on the main broker (mco pki broker-config --registry)?";

/// How getting the bucket's stream failed, when that is why opening it failed.
fn get_stream_error(err: &KeyValueError) -> Option<GetStreamErrorKind> {
    if err.kind() != KeyValueErrorKind::GetBucket {
        return None;
    }
    err.source()
        .and_then(|s| s.downcast_ref::<GetStreamError>())
        .map(GetStreamError::kind)
}

/// Whether opening the bucket failed because its stream does not exist (and
/// not because the broker is unreachable, refuses, or the stream is no bucket).
fn stream_missing(err: &KeyValueError) -> bool {
    matches!(get_stream_error(err), Some(GetStreamErrorKind::JetStream(js))
        if js.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

impl ExpectedNodes {
    /// Opens `bucket`, creating it (one value per key, kept on file) when it
    /// does not exist. Each request to the broker is bounded by `timeout`.
    pub async fn open(
        client: Client,
        bucket: &str,
        timeout: Duration,
    ) -> Result<ExpectedNodes, String> {
        let js = jetstream::ContextBuilder::new()
            .timeout(timeout)
            .build(client);
        // One request (the stream's info); the outer deadline leaves the
        // library's own per-request bound room to report first.
        let found = tokio::time::timeout(timeout * 2, js.get_key_value(bucket))
            .await
            .map_err(|_| {
                format!(
                    "bucket {bucket}: no answer within {:?} ({NO_JETSTREAM})",
                    timeout * 2
                )
            })?;
        let store = match found {
            Ok(store) => store,
            Err(e) if stream_missing(&e) => {
                // The bucket's stream, as `create_key_value` would make it,
                // but without its account-info request, whose reply from a
                // 2.9 server this client cannot read.
                bounded(
                    &format!("cannot create the bucket {bucket}"),
                    timeout * 2,
                    js.create_stream(stream::Config {
                        name: format!("KV_{bucket}"),
                        description: Some("identities the provisioner may provision".into()),
                        subjects: vec![format!("$KV.{bucket}.>")],
                        max_messages_per_subject: 1,
                        discard: DiscardPolicy::New,
                        allow_rollup: true,
                        deny_delete: true,
                        allow_direct: true,
                        retention: RetentionPolicy::Limits,
                        storage: StorageType::File,
                        num_replicas: 1,
                        ..Default::default()
                    }),
                )
                .await?;
                bounded(
                    &format!("bucket {bucket}"),
                    timeout * 2,
                    js.get_key_value(bucket),
                )
                .await?
            }
            Err(e) if matches!(get_stream_error(&e), Some(GetStreamErrorKind::Request)) => {
                return Err(format!("bucket {bucket}: {e} ({NO_JETSTREAM})"))
            }
            Err(e) => return Err(format!("bucket {bucket}: {e}")),
        };
        Ok(ExpectedNodes { store, timeout })
    }

    /// The value stored under `key`, if any (a deleted or purged key has none,
    /// nor has a key that the bucket could not hold, such as one with a space).
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let what = format!("key {key} of bucket {}", self.store.name);
        let entry = tokio::time::timeout(self.timeout * 2, self.store.entry(key))
            .await
            .map_err(|_| format!("{what}: no answer within {:?}", self.timeout * 2))?;
        match entry {
            Ok(Some(e)) if e.operation == Operation::Put => Ok(Some(e.value.to_vec())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == EntryErrorKind::InvalidKey => Ok(None),
            Err(e) => Err(format!("{what}: {e}")),
        }
    }
}

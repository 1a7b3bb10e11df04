//! The provisioner's registry bucket (`[expected] kv_bucket`,
//! `mco_provisioner::registry::ExpectedNodes`) against a real nats-server: a missing
//! bucket is created as a key-value bucket, values written the way `nats kv put/del/purge` write
//! them are read back, and a broker without JetStream or a broker that is gone is a clear error,
//! never a hang.

use std::time::Duration;

use async_nats::HeaderMap;
use mco_provisioner::registry::ExpectedNodes;
use mco_tests::NatsServer;
use serde_json::Value;

/// The per-operation bound handed to the registry, as the provisioner's `request_timeout`.
const BOUND: Duration = Duration::from_secs(2);

/// How long a registry call may take before the test calls it a hang: far beyond [`BOUND`].
const HANG: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A broker with JetStream, storing under `store`.
fn jetstream_broker(store: &tempfile::TempDir) -> NatsServer {
    NatsServer::builder()
        .config_text(format!(
            "jetstream {{\n  store_dir: {:?}\n}}\n",
            store.path().display().to_string()
        ))
        .start()
}

async fn connect(server: &NatsServer) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .connect(server.url())
        .await
        .expect("connect to the broker")
}

/// Publishes to `$KV.BUCKET.KEY` and waits for JetStream's acknowledgement, as `nats kv` does;
/// `operation` is `None` for a put, `Some("DEL")` or `Some("PURGE")` for a deletion.
async fn kv_write(
    client: &async_nats::Client,
    bucket: &str,
    key: &str,
    value: &str,
    operation: Option<&str>,
) {
    let mut headers = HeaderMap::new();
    if let Some(op) = operation {
        headers.insert("KV-Operation", op);
        if op == "PURGE" {
            headers.insert("Nats-Rollup", "sub");
        }
    }
    let ack = client
        .request_with_headers(
            format!("$KV.{bucket}.{key}"),
            headers,
            value.to_string().into(),
        )
        .await
        .expect("JetStream acknowledges the write");
    let ack: Value = serde_json::from_slice(&ack.payload).expect("a JSON ack");
    assert!(ack.get("error").is_none(), "the write failed: {ack}");
}

/// Runs a registry call, failing the test if it has not returned within [`HANG`].
async fn no_hang<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not return within {HANG:?}"))
}

#[test]
fn a_missing_bucket_is_created_and_every_kind_of_write_is_read() {
    let store = tempfile::tempdir().unwrap();
    let server = jetstream_broker(&store);
    runtime().block_on(async {
        let client = connect(&server).await;
        let kv = no_hang(
            "open",
            ExpectedNodes::open(client.clone(), "expected", BOUND),
        )
        .await
        .expect("the bucket is created");

        // The stream is a key-value bucket as `nats kv add` makes it: one value per key, on file.
        let info = client
            .request("$JS.API.STREAM.INFO.KV_expected", "".into())
            .await
            .expect("stream info");
        let info: Value = serde_json::from_slice(&info.payload).unwrap();
        let config = &info["config"];
        assert_eq!(
            config["subjects"],
            serde_json::json!(["$KV.expected.>"]),
            "{info}"
        );
        assert_eq!(config["max_msgs_per_subject"], 1, "{info}");
        assert_eq!(config["storage"], "file", "{info}");
        assert_eq!(config["discard"], "new", "{info}");
        assert_eq!(config["allow_direct"], true, "{info}");
        assert_eq!(config["deny_delete"], true, "{info}");
        assert_eq!(config["allow_rollup_hdrs"], true, "{info}");

        let get = |key: &'static str| {
            let kv = kv.clone();
            async move { no_hang("get", kv.get(key)).await }
        };
        assert_eq!(get("node-a").await.unwrap(), None, "nothing written yet");
        kv_write(&client, "expected", "node-a", "booted", None).await;
        assert_eq!(
            get("node-a").await.unwrap().as_deref(),
            Some(&b"booted"[..])
        );
        assert_eq!(
            get("node-b").await.unwrap(),
            None,
            "another key is not read"
        );
        kv_write(&client, "expected", "node-a", "", Some("DEL")).await;
        assert_eq!(
            get("node-a").await.unwrap(),
            None,
            "a deleted key has no value"
        );
        kv_write(&client, "expected", "node-a", "again", None).await;
        assert_eq!(get("node-a").await.unwrap().as_deref(), Some(&b"again"[..]));
        kv_write(&client, "expected", "node-a", "", Some("PURGE")).await;
        assert_eq!(
            get("node-a").await.unwrap(),
            None,
            "a purged key has no value"
        );
        assert_eq!(
            get("no such key").await.unwrap(),
            None,
            "a key the bucket cannot hold is in no registry"
        );

        // An existing bucket is opened as it is, values and all.
        kv_write(&client, "expected", "node-c", "yes", None).await;
        let again = no_hang(
            "reopen",
            ExpectedNodes::open(client.clone(), "expected", BOUND),
        )
        .await
        .expect("the bucket opens again");
        assert_eq!(
            no_hang("get", again.get("node-c"))
                .await
                .unwrap()
                .as_deref(),
            Some(&b"yes"[..])
        );
    });
}

#[test]
fn a_broker_without_jetstream_is_a_clear_error() {
    let server = NatsServer::start();
    runtime().block_on(async {
        let client = connect(&server).await;
        let err = match no_hang("open", ExpectedNodes::open(client, "expected", BOUND)).await {
            Ok(_) => panic!("a broker without JetStream has no bucket to open"),
            Err(e) => e,
        };
        assert!(err.contains("bucket expected"), "{err}");
        assert!(
            err.contains("is JetStream enabled on the main broker"),
            "{err}"
        );
    });
}

#[test]
fn a_broker_that_is_gone_is_an_error_not_a_hang() {
    let store = tempfile::tempdir().unwrap();
    let mut server = jetstream_broker(&store);
    runtime().block_on(async {
        let client = connect(&server).await;
        let kv = no_hang(
            "open",
            ExpectedNodes::open(client.clone(), "expected", BOUND),
        )
        .await
        .expect("the bucket is created");
        kv_write(&client, "expected", "node-a", "booted", None).await;
        server.stop();
        let err = no_hang("get", kv.get("node-a"))
            .await
            .expect_err("nothing can be read from a broker that is gone");
        assert!(err.contains("key node-a of bucket expected"), "{err}");
        let err = no_hang("open", ExpectedNodes::open(client, "other", BOUND))
            .await
            .err()
            .expect("no bucket opens on a broker that is gone");
        assert!(err.contains("bucket other"), "{err}");
    });
}

//! Reading what `mco rpc -j` printed: the replies, their senders and the responders' own
//! statistics, so a test can check who answered and what each node saw.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::{mco, Output};

/// The replies of an `mco rpc -j` run, as JSON objects.
///
/// # Panics
///
/// If stdout is not a JSON array; the message shows the whole output.
#[track_caller]
pub fn replies(out: &Output) -> Vec<serde_json::Map<String, Value>> {
    match out.stdout_json() {
        Value::Array(rows) => rows
            .into_iter()
            .map(|row| match row {
                Value::Object(m) => m,
                other => panic!("a reply is not a JSON object: {other}\n{out:?}"),
            })
            .collect(),
        other => panic!("stdout is not a JSON array: {other}\n{out:?}"),
    }
}

/// The `sender` of each reply of an `mco rpc -j` run, in printed order.
///
/// # Panics
///
/// As [`replies`], or if a reply has no string `sender`.
#[track_caller]
pub fn senders(out: &Output) -> Vec<String> {
    replies(out)
        .iter()
        .map(|r| match r.get("sender") {
            Some(Value::String(s)) => s.clone(),
            other => panic!("a reply has no sender (got {other:?})\n{out:?}"),
        })
        .collect()
}

/// Each node's `rpcutil daemon_stats` data, asked directly of `ids` (no discovery, so every
/// node sees exactly one more request).
///
/// # Panics
///
/// If the call fails or a node does not answer with status 0.
#[track_caller]
pub fn daemon_stats(
    url: &str,
    collective: &str,
    ids: &[&str],
) -> BTreeMap<String, serde_json::Map<String, Value>> {
    let mut args = vec![
        "rpc",
        "rpcutil",
        "daemon_stats",
        "-j",
        "--nats",
        url,
        "-T",
        collective,
        "-t",
        "10s",
    ];
    for id in ids {
        args.extend(["-I", id]);
    }
    let out = mco(args);
    out.assert_success();
    stats_by_node(&out, ids.len())
}

/// The `data` of each reply of a `daemon_stats -j` run, by sender; every one
/// must be status 0 and `expected` nodes must have answered.
///
/// # Panics
///
/// If a reply failed, lacks data, or a node did not answer.
#[track_caller]
pub fn stats_by_node(
    out: &Output,
    expected: usize,
) -> BTreeMap<String, serde_json::Map<String, Value>> {
    let mut stats = BTreeMap::new();
    for r in replies(out) {
        assert_eq!(r.get("statuscode"), Some(&Value::from(0)), "{out:?}");
        let sender = r["sender"].as_str().unwrap_or_default().to_string();
        let Some(Value::Object(data)) = r.get("data") else {
            panic!("daemon_stats reply without data\n{out:?}");
        };
        stats.insert(sender, data.clone());
    }
    assert_eq!(stats.len(), expected, "every node answers\n{out:?}");
    stats
}

/// One counter (`total`, `ok`, `replies`, …) per node from [`daemon_stats`].
///
/// # Panics
///
/// As [`daemon_stats`], or if a node's counter is missing or not a number.
#[track_caller]
pub fn counter(url: &str, collective: &str, ids: &[&str], name: &str) -> BTreeMap<String, u64> {
    daemon_stats(url, collective, ids)
        .into_iter()
        .map(|(node, data)| {
            let n = data
                .get(name)
                .and_then(Value::as_u64)
                .unwrap_or_else(|| panic!("{node}: no counter {name:?} in {data:?}"));
            (node, n)
        })
        .collect()
}

/// Writes `ids` one per line to `path`, for `--nodes`.
pub fn write_nodes_file(path: &Path, ids: &[&str]) {
    let mut text = ids.join("\n");
    text.push('\n');
    std::fs::write(path, text).expect("write the nodes file");
}

/// The reply subject a request envelope was signed with, if `payload` is a
/// request that names one: a test publishing raw requests sends them with
/// the reply subject they were signed for, so that only the check under test
/// can refuse them.
pub fn signed_reply_to(payload: &[u8]) -> Option<String> {
    use mco_core::wire::{Envelope, Kind};
    let env = Envelope::decode(payload, usize::MAX, Kind::Request).ok()?;
    env.request().ok()?.reply_to
}

/// Publishes `payload` on `subject` asking for replies on `reply_to` (which
/// `client` may read), and counts the replies that come within `wait`: how
/// a test sends a raw request and sees whether any node acted on it.
///
/// # Panics
///
/// If the subscription, the publish or the flush fails.
pub async fn count_replies(
    client: &async_nats::Client,
    subject: String,
    reply_to: String,
    payload: bytes::Bytes,
    wait: std::time::Duration,
) -> usize {
    use futures::StreamExt;
    let mut sub = client.subscribe(reply_to.clone()).await.unwrap();
    client
        .publish_with_reply(subject, reply_to, payload)
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(20), client.flush())
        .await
        .expect("the flush finished")
        .unwrap();
    let mut n = 0;
    let _ = tokio::time::timeout(wait, async {
        while let Some(msg) = sub.next().await {
            if msg.status.is_none() {
                n += 1;
            }
        }
    })
    .await;
    let _ = sub.unsubscribe().await;
    n
}

//! Adversarial tests of the client: what root on one managed node (N) can make `mco` do with
//! replies signed by that node's own valid certificate. Each attack used to work; each test now
//! asserts that it fails, and that the honest nodes still answer.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use mco_core::subject;
use mco_core::wire::now_ms;
use mco_core::{Envelope, Kind, ReplyBody, RequestBody, Status};
use mco_tests::secure::COLLECTIVE as C;
use mco_tests::{bin_path, ChildGuard, ResponderSpec, SecureCollective};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::block_in_place;
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(20);

/// The payload the test itself sends to a hostile node's subject, behind everything `mco` sent.
const MARKER: &[u8] = b"end of the run";

/// What a hostile node saw on its own subject.
#[derive(Debug)]
enum Seen {
    /// A request sent to it directly, with its inputs.
    Request(Map<String, Value>),
    /// The test's marker: everything sent before it has been seen.
    Marker,
}

/// A reply to `req` naming `sender`.
fn reply_to(req: &RequestBody, sender: &str) -> ReplyBody {
    ReplyBody {
        request_id: req.id.clone(),
        sender: sender.into(),
        status: Status::Ok,
        message: "OK".into(),
        data: Map::new(),
        time_ms: now_ms(),
        elapsed_us: 1,
    }
}

/// Plays `name`, a node whose root is hostile: it answers every discovery broadcast, whatever
/// its filter says, and every request sent to it, signing with its own valid certificate; it
/// reports on the channel what it was sent directly.
async fn hostile_node(col: &SecureCollective, name: &'static str) -> mpsc::Receiver<Seen> {
    let creds = col.credentials(name);
    let conn = col.connect(Some(name)).await.unwrap().client;
    let mut bcast = conn
        .subscribe(subject::broadcast(C, "rpcutil"))
        .await
        .unwrap();
    let mut direct = conn.subscribe(subject::node(C, name)).await.unwrap();
    conn.flush().await.unwrap();
    let (tx, rx) = mpsc::channel(64);
    let answer = move |msg: &async_nats::Message| {
        let env = Envelope::decode(&msg.payload, 1 << 20, Kind::Request).ok()?;
        let req = env.request().ok()?;
        let bytes = creds
            .seal(Kind::Reply, reply_to(&req, name).encode())
            .encode();
        Some((msg.reply.clone()?, Bytes::from(bytes), req))
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(msg) = bcast.next() => {
                    if let Some((to, bytes, _)) = answer(&msg) {
                        let _ = conn.publish(to, bytes).await;
                    }
                }
                Some(msg) = direct.next() => {
                    if &msg.payload[..] == MARKER {
                        let _ = tx.send(Seen::Marker).await;
                    } else if let Some((to, bytes, req)) = answer(&msg) {
                        let _ = tx.send(Seen::Request(req.data)).await;
                        let _ = conn.publish(to, bytes).await;
                    }
                }
                else => break,
            }
        }
    });
    rx
}

/// The requests `name` was sent directly before the marker, which the test sends now (after
/// `mco` has exited, so behind everything it published).
async fn requests_before_marker(
    col: &SecureCollective,
    name: &str,
    seen: &mut mpsc::Receiver<Seen>,
) -> Vec<Map<String, Value>> {
    let conn = col.connect(Some("alice")).await.unwrap().client;
    conn.publish(subject::node(C, name), Bytes::from_static(MARKER))
        .await
        .unwrap();
    conn.flush().await.unwrap();
    let mut requests = Vec::new();
    loop {
        match timeout(STEP, seen.recv()).await {
            Ok(Some(Seen::Request(data))) => requests.push(data),
            Ok(Some(Seen::Marker)) => return requests,
            other => panic!("{name} never saw the marker: {other:?}"),
        }
    }
}

/// The number in `stderr`'s line that contains `words`, right after `before` (0 without such
/// a line); the line must be the only one containing `words`.
fn count_in(stderr: &str, words: &str, before: &str) -> usize {
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(words)).collect();
    assert!(lines.len() <= 1, "one line about {words:?}: {stderr}");
    lines.first().map_or(0, |l| {
        let at = l
            .find(before)
            .unwrap_or_else(|| panic!("{before:?} in {l}"))
            + before.len();
        l[at..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a count after {before:?} in {l}"))
    })
}

/// The peak resident memory (VmHWM) of a running process, KiB, if it can still be read.
fn peak_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// What a watched `mco` run did.
struct Watched {
    status: Option<i32>,
    stdout: String,
    stderr: String,
    /// Its peak resident memory, KiB, as last read while it ran.
    peak_kib: u64,
}

/// Runs `mco --config CONFIG ARGS` with `home` as HOME, reading its peak memory while it runs.
fn run_watched(config: &Path, args: &[&str], home: &Path) -> Watched {
    let mut cmd = Command::new(bin_path("mco"));
    cmd.arg("--config").arg(config).args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(mco_tests::cmd::is_scrubbed) {
            cmd.env_remove(name);
        }
    }
    cmd.env("HOME", home);
    let mut child = ChildGuard::spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_kib(child.pid()) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_status() {
            break status;
        }
        assert!(Instant::now() < deadline, "mco did not exit");
        std::thread::sleep(mco_tests::poll::POLL_INTERVAL);
    };
    Watched {
        status: status.code(),
        stdout: child.stdout_text(),
        stderr: child.stderr_text(),
        peak_kib: peak,
    }
}

/// N (root on `evil-08`): a call that includes it hands it the reply subject; it then floods
/// it with signed replies whose `sender` is another, huge name (400 of 500 KiB, 200 MB). Each is
/// refused, and the client used to keep every refusal's text, which quoted that name, and print
/// them all: 605 MiB of memory and 204 MB of stderr. Now it counts them, keeps the first few
/// reasons with the name cut short, holds a bounded number of bytes of replies at once, and says
/// so in one line each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_flooding_refused_replies_cannot_grow_the_clients_memory() {
    let col = block_in_place(|| {
        SecureCollective::builder()
            .user("alice")
            .node_with_default_policy(ResponderSpec::new("db-02"), "allow")
            .spare_node("evil-08")
            .start()
    });
    let evil = col.credentials("evil-08");
    let conn = col.connect(Some("evil-08")).await.unwrap().client;
    let mut direct = conn.subscribe(subject::node(C, "evil-08")).await.unwrap();
    conn.flush().await.unwrap();
    const FLOOD: usize = 400;
    const NAME: usize = 500 * 1024;
    let (flooded_tx, mut flooded) = mpsc::channel::<usize>(4);
    let node = tokio::spawn(async move {
        while let Some(msg) = direct.next().await {
            let Some(to) = msg.reply.clone() else {
                continue;
            };
            let Ok(env) = Envelope::decode(&msg.payload, 1 << 20, Kind::Request) else {
                continue;
            };
            let Ok(req) = env.request() else { continue };
            let reply = reply_to(&req, &"x".repeat(NAME));
            let bytes = Bytes::from(evil.seal(Kind::Reply, reply.encode()).encode());
            let mut sent = 0;
            for _ in 0..FLOOD {
                if conn.publish(to.clone(), bytes.clone()).await.is_err() {
                    break;
                }
                sent += 1;
            }
            let _ = conn.flush().await;
            let _ = flooded_tx.send(sent).await;
        }
    });
    let home = col.scratch();
    let out = block_in_place(|| {
        run_watched(
            &col.client_config("alice"),
            &[
                "rpc", "rpcutil", "ping", "-I", "db-02", "-I", "evil-08", "-t", "10s",
            ],
            &home,
        )
    });
    node.abort();
    let sent = flooded.try_recv().expect("evil-08 was sent the call");
    assert_eq!(sent, FLOOD, "the whole flood went out");
    let peak_mib = out.peak_kib / 1024;
    eprintln!(
        "mco peaked at {peak_mib} MiB; its stderr is {} bytes:\n{}",
        out.stderr.len(),
        out.stderr
    );
    // Everything refused or dropped is said, each kind in one line.
    // A name that long is refused as it is decoded (names are at most 255 bytes); a shorter
    // hostile one would fail verification. Either way it is counted, not kept.
    let refused = count_in(&out.stderr, "failed verification", "ignored ")
        + count_in(&out.stderr, "did not decode", "ignored ");
    let dropped = count_in(&out.stderr, "dropped", "dropped ");
    assert!(refused >= 1, "{}", out.stderr);
    assert!(refused + dropped <= FLOOD, "{}", out.stderr);
    assert!(
        out.stderr.len() < 4096,
        "{} bytes of stderr",
        out.stderr.len()
    );
    assert!(
        !out.stderr.contains(&"x".repeat(65)),
        "the node's name is cut short"
    );
    assert!(
        peak_mib < 200,
        "mco peaked at {peak_mib} MiB for a 200 MB flood"
    );
    // The honest node's answer still counts; the flooding one is not an answer.
    assert_eq!(out.status, Some(2), "{}", out.stdout);
    assert!(out.stdout.contains("db-02"), "{}", out.stdout);
    let after = out.stdout.split("No response from").nth(1).unwrap_or("");
    assert!(after.contains("evil-08"), "{}", out.stdout);
    block_in_place(|| col.mco("alice").args(["ping", "-I", "db-02"]).run()).assert_success();
}

/// N (root on `evil-07`): discovery used to keep every verified reply, whether or not its
/// sender matched the identity filter asked for, and then sent the real request — with its
/// inputs — to each node found: `mco rpc -I 'db-*'` handed its inputs to `evil-07`. Now the
/// client drops discovery replies whose verified sender the identity patterns do not select,
/// says how many in one line, and `evil-07` is sent nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_outside_the_identity_filter_cannot_join_discovery_or_get_the_request() {
    let col = block_in_place(|| {
        SecureCollective::builder()
            .user("alice")
            .node_with_default_policy(ResponderSpec::new("db-01"), "allow")
            .spare_node("evil-07")
            .start()
    });
    let mut seen = hostile_node(&col, "evil-07").await;
    let out = col
        .mco("alice")
        .args([
            "rpc",
            "rpcutil",
            "get_fact",
            "fact=secret_key",
            "-I",
            "db-*",
            "-j",
            "--dt",
            "3s",
            "-t",
            "5s",
        ])
        .run_async()
        .await;
    eprintln!("mco said: {}\n{}", out.stdout, out.stderr);
    assert!(
        requests_before_marker(&col, "evil-07", &mut seen)
            .await
            .is_empty(),
        "evil-07 was sent the request meant for db-*"
    );
    let answered: Vec<String> = out
        .stdout_json()
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|r| r["sender"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(answered, ["db-01"], "{}", out.stdout);
    assert_eq!(
        count_in(&out.stderr, "the filter does not select", "ignored "),
        1,
        "{}",
        out.stderr
    );
    out.assert_exit(0);

    // `mco find` and `mco ping` do not list it either; the node answered each discovery.
    let found = col
        .mco("alice")
        .args(["find", "-I", "db-*", "--dt", "2s"])
        .run_async()
        .await;
    found.assert_stdout_eq("db-01\n");
    assert!(
        found.stderr.contains("the filter does not select"),
        "{}",
        found.stderr
    );
    let pinged = col
        .mco("alice")
        .args(["ping", "-I", "/^db-/", "--dt", "2s"])
        .run_async()
        .await;
    assert!(pinged.stdout.contains("db-01"), "{}", pinged.stdout);
    assert!(!pinged.stdout.contains("evil-07"), "{}", pinged.stdout);
    // Without an identity filter it is found like any node: the check is the filter's.
    let all = col
        .mco("alice")
        .args(["find", "--dt", "2s"])
        .run_async()
        .await;
    all.assert_stdout_eq("db-01\nevil-07\n");
}

/// N (root on `evil-07`), listed by the operator in a nodes file next to a filter that does not
/// select it: an honest node would stay silent, so it is not sent the request (and its inputs)
/// at all; it counts as not answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_node_outside_the_identity_filter_is_not_sent_the_request() {
    let col = block_in_place(|| {
        SecureCollective::builder()
            .user("alice")
            .node_with_default_policy(ResponderSpec::new("db-01"), "allow")
            .spare_node("evil-07")
            .start()
    });
    let mut seen = hostile_node(&col, "evil-07").await;
    let list = col.scratch().join("nodes.txt");
    std::fs::write(&list, "db-01\nevil-07\n").unwrap();
    let out = col
        .mco("alice")
        .args([
            "rpc",
            "rpcutil",
            "get_fact",
            "fact=secret_key",
            "-I",
            "db-*",
            "-t",
            "5s",
        ])
        .arg("--nodes")
        .arg(&list)
        .run_async()
        .await;
    eprintln!("mco said: {}\n{}", out.stdout, out.stderr);
    assert!(
        requests_before_marker(&col, "evil-07", &mut seen)
            .await
            .is_empty(),
        "evil-07 was sent the request meant for db-*"
    );
    assert!(out.stdout.contains("db-01"), "{}", out.stdout);
    let missing = out.stdout.split("No response from").nth(1).unwrap_or("");
    assert!(missing.contains("evil-07"), "{}", out.stdout);
    out.assert_exit(2);

    // The same list without the filter: the node is asked, and the hostile node is seen to
    // answer requests (so the silence above is the client's doing).
    let out = col
        .mco("alice")
        .args(["rpc", "rpcutil", "get_fact", "fact=secret_key", "-t", "5s"])
        .arg("--nodes")
        .arg(&list)
        .run_async()
        .await;
    let asked = requests_before_marker(&col, "evil-07", &mut seen).await;
    assert_eq!(asked.len(), 1, "{}", out.stdout);
}

//! Attacks from the bus on the responder's decoding, filtering, caches and
//! replay protection (SECURITY.md, findings 1, 2, 5 and 11), each as the
//! message that used to work, sent with the wire types the real client
//! would refuse to build. Each asserts the attack fails, is counted, and
//! that every node stays up and answering.

use std::time::Duration;

use bytes::Bytes;
use mco_core::subject;
use mco_core::wire::{new_request_id, now_ms};
use mco_core::{Envelope, Filter, Kind, RequestBody, Target};
use mco_security::Credentials;
use mco_tests::replies::{count_replies, counter, daemon_stats};
use mco_tests::secure::COLLECTIVE as C;
use mco_tests::{eventually, mco, NatsServer, Responder, ResponderSpec, SecureCollective};
use serde_json::{Map, Value};
use tokio::task::block_in_place;
use tokio::time::timeout;

/// How long a refused message is given to produce a reply anyway; counters decide the rest.
const QUIET: Duration = Duration::from_millis(300);

/// Bound on every wait that is expected to succeed.
const STEP: Duration = Duration::from_secs(20);

fn ping(caller: &str, collective: &str) -> RequestBody {
    RequestBody {
        id: new_request_id(),
        sender: "attacker".into(),
        caller: caller.into(),
        collective: collective.into(),
        agent: "rpcutil".into(),
        action: "ping".into(),
        data: Map::new(),
        filter: Filter::default(),
        ttl_s: 60,
        time_ms: now_ms(),
        target: None,
        reply_to: None,
    }
}

/// The target of a request for `node` alone.
fn to(node: &str) -> Target {
    Target::Nodes(vec![node.into()])
}

/// Signs `body` for `target`, as the client does.
trait Bound {
    fn bound(self, target: Target) -> Self;
}

impl Bound for RequestBody {
    fn bound(mut self, target: Target) -> RequestBody {
        self.bind(target);
        self
    }
}

/// Publishes `payload` on `subject` with a fresh reply subject and returns the replies that
/// come within `wait`.
async fn send(
    client: &async_nats::Client,
    subject: String,
    payload: Vec<u8>,
    wait: Duration,
) -> usize {
    send_as("user:alice", client, subject, payload, wait).await
}

/// As [`send`], on the connection of `caller`, whose reply subjects the broker lets it read.
async fn send_as(
    caller: &str,
    client: &async_nats::Client,
    subject: String,
    payload: Vec<u8>,
    wait: Duration,
) -> usize {
    let reply_to = mco_tests::replies::signed_reply_to(&payload)
        .unwrap_or_else(|| subject::reply(C, caller, &new_request_id()));
    count_replies(client, subject, reply_to, Bytes::from(payload), wait).await
}

/// The compound filters that used to abort every responder (stack overflow) or hold it in a
/// regex compiler, and must now be refused as bad filters.
fn hostile_filters() -> Vec<String> {
    vec![
        format!("{}x", "!".repeat(5000)),
        format!("{}x", "!".repeat(4000)),
        format!("{}x{}", "(".repeat(2000), ")".repeat(2000)),
        vec!["x"; 1000].join(" and "),
        "class(/(?:a{1000}){1000}/)".to_string(),
        format!("/{}/", "a".repeat(3000)),
        // Small texts with large compiled programs: one over the size bound, and many
        // within it (each compiled to tens of KiB) over the filter's budget of patterns.
        r"class(/\w{20}/)".to_string(),
        vec![r"class(/\w\w/)"; 40].join(" or "),
    ]
}

fn dropped(stats: &Map<String, Value>, reason: &str) -> u64 {
    stats["dropped"]
        .get(reason)
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Finding 1: one unsigned message with a deep compound filter aborted every virtual node of a
/// `--fleet` process. Now each node refuses it as a bad filter and keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_filters_cannot_abort_a_fleet() {
    let nats = NatsServer::start();
    let fleet = block_in_place(|| {
        Responder::start(&nats, ResponderSpec::new("vf").fleet(4).classes(&["web"]))
    });
    let ids = fleet.spec.identities();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let client = nats.client().await;
    let filters = hostile_filters();
    for f in &filters {
        let mut body = ping("user:anyone", "mcollective").bound(Target::Broadcast);
        body.filter.compound = vec![f.clone()];
        let env = Envelope::unsigned(Kind::Request, body.encode()).encode();
        let replies = send(
            &client,
            subject::broadcast("mcollective", "rpcutil"),
            env,
            QUIET,
        )
        .await;
        assert_eq!(replies, 0, "a node acted on {}…", &f[..20]);
    }
    let want = filters.len() as u64;
    block_in_place(|| {
        eventually(STEP, "every virtual node to count the bad filters", || {
            daemon_stats(&nats.url(), "mcollective", &refs)
                .values()
                .all(|s| dropped(s, "bad_filter") == want)
        });
        // Still one process, every node answering.
        let mut r = fleet;
        assert!(r.child.is_running(), "the fleet process died");
        let pings = counter(&nats.url(), "mcollective", &refs, "ok");
        assert_eq!(pings.len(), ids.len());
    });
}

/// Finding 1, the client's side: `mco` refuses such a filter with a usage error and a caret, it
/// neither crashes nor sends it.
#[test]
fn the_client_refuses_deep_filters_with_an_error() {
    for f in hostile_filters() {
        let out = mco([
            "find",
            "-S",
            &f,
            "--nats",
            "nats://127.0.0.1:1",
            "--dt",
            "1s",
        ]);
        assert_eq!(out.status, 64, "{}…: {out:?}", &f[..20]);
        let err = out.stderr.to_lowercase();
        assert!(
            ["nested", "bytes long", "terms", "regular expression"]
                .iter()
                .any(|w| err.contains(w)),
            "{}…: {}",
            &f[..20],
            out.stderr
        );
    }
}

/// A secure collective of user `alice` and one node `node`: the collective, alice's
/// credentials and her connection to its broker.
async fn alice_and(node: &str) -> (SecureCollective, Credentials, async_nats::Client) {
    let col = block_in_place(|| {
        SecureCollective::builder()
            .user("alice")
            .node(ResponderSpec::new(node))
            .start()
    });
    let alice = col.credentials("alice");
    let conn = col.connect(Some("alice")).await.unwrap().client;
    (col, alice, conn)
}

/// Findings 1 and 2 on a secure node: a signed request from a valid user with a deep filter, a
/// body nested a million levels, a long request id and a flood of distinct garbage certificates
/// are refused and counted; the garbage does not grow the responder's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_and_certificates_are_refused_before_memory_grows() {
    const NODE: &str = "web-01";
    let (col, alice, conn) = alice_and(NODE).await;
    let to_node = || subject::node(C, NODE);
    let stats = || block_in_place(|| col.daemon_stats("alice", &[NODE])[NODE].clone());
    let before = stats();

    // A deep filter, signed by a real user.
    let mut body = ping("user:alice", C).bound(to(NODE));
    body.filter.compound = vec![format!("{}x", "!".repeat(4000))];
    let env = alice.seal(Kind::Request, body.encode()).encode();
    assert_eq!(send(&conn, to_node(), env, QUIET).await, 0);

    // `data` nested a million arrays deep, encoded by hand.
    let mut body = ping("user:alice", C).bound(to(NODE)).encode();
    let key = b"\xa4data\x80";
    let at = body.windows(key.len()).position(|w| w == key).unwrap() + 5;
    let mut nest = vec![0x81, 0xa1, b'x'];
    nest.extend(std::iter::repeat_n(0x91u8, 1_000_000));
    nest.push(0xc0);
    body.splice(at..at + 1, nest);
    let env = alice.seal(Kind::Request, body).encode();
    assert_eq!(send(&conn, to_node(), env, QUIET).await, 0);

    // A request id of 100 KiB.
    let mut body = ping("user:alice", C).bound(to(NODE));
    body.id = "i".repeat(100 * 1024);
    let env = alice.seal(Kind::Request, body.encode()).encode();
    assert_eq!(send(&conn, to_node(), env, QUIET).await, 0);

    // An agent name of 64 KiB, which every audit line and metric label would carry.
    let mut body = ping("user:alice", C).bound(to(NODE));
    body.agent = "a".repeat(64 * 1024);
    let env = alice.seal(Kind::Request, body.encode()).encode();
    assert_eq!(send(&conn, to_node(), env, QUIET).await, 0);

    // An oversized certificate, and then thousands of distinct garbage ones just under the
    // bound: each used to be kept by its full DER bytes.
    let good = alice.seal(
        Kind::Request,
        ping("user:alice", C).bound(to(NODE)).encode(),
    );
    let mut env = good.clone();
    env.cert = vec![0x30; 200 * 1024];
    assert_eq!(send(&conn, to_node(), env.encode(), QUIET).await, 0);
    let pid = col.responder(NODE).child.pid();
    let rss_before = rss_kib(pid);
    // Sent in rounds that each fit the responder's queue, so what is measured
    // is what the node keeps after refusing them, not what waits to be read.
    const FLOOD: u32 = 6000;
    const ROUND: u32 = 200;
    let reply_to = subject::reply(C, "user:alice", &new_request_id());
    let mut want_bad_cert = dropped(&before, "bad_certificate") + 1;
    for round in 0..FLOOD / ROUND {
        for i in round * ROUND..(round + 1) * ROUND {
            let mut env = good.clone();
            env.cert = vec![0x42; 15 * 1024];
            env.cert[..4].copy_from_slice(&i.to_be_bytes());
            conn.publish_with_reply(to_node(), reply_to.clone(), Bytes::from(env.encode()))
                .await
                .unwrap();
        }
        timeout(STEP, conn.flush()).await.unwrap().unwrap();
        want_bad_cert += u64::from(ROUND);
        block_in_place(|| {
            eventually(STEP, "a round of the flood to be counted", || {
                dropped(&stats(), "bad_certificate") >= want_bad_cert
            })
        });
    }
    let after = stats();
    let grown_mib = rss_kib(pid).saturating_sub(rss_before) / 1024;
    // The flood carried 88 MiB of certificates; a cache keyed by their bytes grew by as much.
    assert!(
        grown_mib < 40,
        "the responder grew by {grown_mib} MiB for a flood of garbage certificates"
    );
    assert_eq!(
        dropped(&after, "bad_filter"),
        dropped(&before, "bad_filter") + 1
    );
    assert_eq!(
        dropped(&after, "undecodable"),
        dropped(&before, "undecodable") + 3,
        "the deep body, the long id and the long agent name"
    );
    assert_eq!(dropped(&after, "bad_certificate"), want_bad_cert);
    assert!(col.responder(NODE).child.stderr_text().contains("over the"));
    // Still answering, and a real request still verifies.
    assert_eq!(send(&conn, to_node(), good.encode(), STEP).await, 1);
}

/// Resident memory of `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"))
}

/// How many "refused a request" lines of a node's log name `reason`.
fn refusals_logged(col: &SecureCollective, node: &str, reason: &str) -> usize {
    let quoted = format!("\"{reason}\"");
    col.responder(node)
        .child
        .stderr_text()
        .lines()
        .filter(|l| l.contains("refused a request") && l.contains(&quoted))
        .count()
}

/// Log forging: text from the bus that reaches a log line (here a replayed request's id, which
/// the refusal quotes as it came) used to carry its line breaks into the responder's log, so
/// any U could write lines of its choosing there. Now every event is one line, breaks escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_cannot_write_lines_into_a_nodes_log() {
    const NODE: &str = "log-01";
    let (col, alice, conn) = alice_and(NODE).await;
    let mut body = ping("user:alice", C).bound(to(NODE));
    body.id = "r\r\n2026-01-01T00:00:00Z INFO mco_responder: FORGED provisioned node=ca".into();
    let env = alice.seal(Kind::Request, body.encode()).encode();
    // Sent twice: the node serves the first and refuses the second as a replay, quoting its id.
    send(&conn, subject::node(C, NODE), env.clone(), QUIET).await;
    assert_eq!(send(&conn, subject::node(C, NODE), env, QUIET).await, 0);
    block_in_place(|| {
        eventually(STEP, "the replay to be logged", || {
            refusals_logged(&col, NODE, "replay") == 1
        })
    });
    let log = col.responder(NODE).child.stderr_text();
    let with_forged: Vec<&str> = log.lines().filter(|l| l.contains("FORGED")).collect();
    assert_eq!(with_forged.len(), 1, "{log}");
    assert!(with_forged[0].contains("refused a request"), "{log}");
    assert!(with_forged[0].contains("r\\r\\n2026-01-01"), "{log}");
    assert!(!log.contains('\r'), "{log}");
    block_in_place(|| col.mco("alice").args(["ping", "-I", NODE]).run()).assert_success();
}

/// Finding 5: a TTL beyond `max_ttl` is refused; a signed `time_ms` near 2^64, or more than the
/// allowed skew ahead, is expired, not wrapped into the window; requests that select no node take
/// no place in its replay cache; and one caller's flood fills only that caller's share of the
/// cache — it is refused, others go on, and no live id is forgotten, so a flood cannot make an
/// earlier request replayable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_protection_cannot_be_switched_off_nor_turned_on_others() {
    const NODE: &str = "web-02";
    let col = block_in_place(|| {
        SecureCollective::builder()
            .user("alice")
            .user("mallory")
            .node_with_security_lines(
                ResponderSpec::new(NODE),
                "max_ttl = \"5m\"\nreplay_cache = 40",
            )
            .start()
    });
    let mallory = col.credentials("mallory");
    let conn = col.connect(Some("mallory")).await.unwrap().client;
    let to_node = || subject::node(C, NODE);
    let logged = |reason: &str| block_in_place(|| refusals_logged(&col, NODE, reason));
    let alice_pings = || {
        block_in_place(|| {
            col.mco("alice")
                .args(["rpc", "rpcutil", "ping", "-I", NODE, "-t", "5s"])
                .run()
                .status
                == 0
        })
    };

    let mut long = ping("user:mallory", C).bound(to(NODE));
    long.ttl_s = 3600;
    let env = mallory.seal(Kind::Request, long.encode()).encode();
    assert_eq!(
        send_as("user:mallory", &conn, to_node(), env, QUIET).await,
        0,
        "a one-hour TTL"
    );
    block_in_place(|| {
        eventually(STEP, "the TTL refusal to be logged", || {
            logged("ttl_too_long") == 1
        })
    });

    let ahead = now_ms() + 120_000;
    for time_ms in [u64::MAX, 1 << 63, (1 << 63) + now_ms(), ahead] {
        let mut future = ping("user:mallory", C).bound(to(NODE));
        future.time_ms = time_ms;
        let env = mallory.seal(Kind::Request, future.encode()).encode();
        assert_eq!(
            send_as("user:mallory", &conn, to_node(), env, QUIET).await,
            0,
            "time_ms {time_ms}"
        );
    }
    block_in_place(|| {
        eventually(
            STEP,
            "the far-future requests to be logged as expired",
            || logged("expired") == 4,
        )
    });

    // Broadcasts that select no node cost no place in the cache: 100 of them, dated ahead with
    // the longest TTL allowed, and alice is still answered.
    let client = conn.clone();
    for _ in 0..100 {
        let mut b = ping("user:mallory", C).bound(Target::Broadcast);
        b.ttl_s = 300;
        b.time_ms = now_ms() + 20_000;
        b.filter.identity = vec!["nobody".into()];
        let env = mallory.seal(Kind::Request, b.encode()).encode();
        client
            .publish_with_reply(
                subject::broadcast(C, "rpcutil"),
                b.reply_to.clone().unwrap(),
                Bytes::from(env),
            )
            .await
            .unwrap();
    }
    timeout(STEP, client.flush()).await.unwrap().unwrap();
    assert!(
        alice_pings(),
        "alice is answered after a non-matching flood"
    );

    // Mallory's own requests fill only mallory's share (a quarter: 10).
    let mut answered = Vec::new();
    loop {
        let body = ping("user:mallory", C).bound(to(NODE));
        let env = mallory.seal(Kind::Request, body.encode()).encode();
        if send_as(
            "user:mallory",
            &conn,
            to_node(),
            env.clone(),
            Duration::from_secs(2),
        )
        .await
            == 1
        {
            answered.push(env);
            assert!(answered.len() <= 10, "mallory's share of 10 never filled");
        } else {
            break;
        }
    }
    assert_eq!(answered.len(), 10, "mallory had the whole share");
    block_in_place(|| {
        eventually(STEP, "a full share to be logged", || {
            logged("replay_cache_full") == 1
        })
    });
    assert!(
        alice_pings(),
        "alice is answered while mallory's share is full"
    );
    // Mallory's first live id is still remembered: replaying it fails.
    let before = logged("replay");
    assert_eq!(
        send_as("user:mallory", &conn, to_node(), answered[0].clone(), QUIET).await,
        0
    );
    block_in_place(|| {
        eventually(STEP, "the replay to be logged", || {
            logged("replay") == before + 1
        })
    });
    let mut r = col;
    assert!(r.responder_mut(NODE).child.is_running());
}

/// Finding 11: a node's facts reach the operator's terminal with their control characters made
/// visible, in text and JSON output alike; the JSON still means the same.
#[test]
fn node_strings_cannot_drive_the_operators_terminal() {
    let nats = NatsServer::start();
    let evil = "\u{1b}[2J\u{1b}]0;owned\u{7}\r\u{9b}31mOK";
    let _node = Responder::start(
        &nats,
        ResponderSpec::new("evil-01").facts(serde_json::json!({ "motd": evil })),
    );
    let url = nats.url();
    for args in [
        vec!["facts", "motd"],
        vec!["inventory", "evil-01"],
        vec!["rpc", "rpcutil", "get_fact", "fact=motd"],
        vec!["rpc", "rpcutil", "get_fact", "fact=motd", "-j"],
    ] {
        let mut all = args.clone();
        all.extend(["--nats", &url, "-t", "5s"]);
        let out = mco(&all);
        assert!(
            !out.stdout.contains(['\u{1b}', '\u{7}', '\r', '\u{9b}']),
            "{args:?}: {:?}",
            out.stdout
        );
        assert!(
            out.stdout.contains("\\u001b[2J"),
            "{args:?}: {}",
            out.stdout
        );
        if args.contains(&"-j") {
            let v: Value = serde_json::from_str(&out.stdout).unwrap();
            assert_eq!(v[0]["data"]["value"], evil, "JSON keeps the value");
        }
    }
}

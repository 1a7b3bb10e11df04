//! Requests are bound to where they go, and every verb says what it ignored.
//!
//! A request's signature proves who sent it; its binding (the signed target
//! and reply subject) proves where it was meant to go. These tests capture a
//! real request of the real `mco` client as a compromised node sees it, and
//! replay it where an attacker would: onto another node's subject, onto the
//! broadcast subject, and back to its own node with the replies redirected.
//! Each is refused and counted, nothing reaches an audit log, and the
//! attacker gets no reply. A secure node refuses an unbound (protocol v1)
//! request outright. And a forged reply makes `mco facts` say so.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use mco_core::subject;
use mco_core::wire::{new_request_id, now_ms, Envelope, Kind, ReplyBody, Status};
use mco_core::{Filter, RequestBody, Target};
use mco_tests::replies::count_replies;
use mco_tests::secure::COLLECTIVE as C;
use mco_tests::{eventually, ResponderSpec, SecureCollective};
use serde_json::Map;
use tokio::task::block_in_place;
use tokio::time::timeout;

/// How long a refused request is given to produce a reply anyway; counters decide the rest.
const QUIET: Duration = Duration::from_millis(500);

/// Bound on every wait that is expected to succeed.
const STEP: Duration = Duration::from_secs(20);

const A: &str = "web-01";
const B: &str = "web-02";

fn collective() -> SecureCollective {
    block_in_place(|| {
        SecureCollective::builder()
            .user("alice")
            .user("mallory")
            .node(ResponderSpec::new(A))
            .node(ResponderSpec::new(B))
            .spare_node("evil-01")
            .start()
    })
}

fn dropped(col: &SecureCollective, node: &str, reason: &str) -> u64 {
    let stats = block_in_place(|| col.daemon_stats("alice", &[node]));
    stats[node]["dropped"]
        .get(reason)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

fn audited(col: &SecureCollective, node: &str, id: &str) -> bool {
    std::fs::read_to_string(col.audit_log(node))
        .unwrap_or_default()
        .contains(id)
}

/// A ping from alice, signed for `target` (or unbound).
fn ping(target: Option<Target>) -> RequestBody {
    let mut body = RequestBody {
        id: new_request_id(),
        sender: "alice".into(),
        caller: "user:alice".into(),
        collective: C.into(),
        agent: "rpcutil".into(),
        action: "ping".into(),
        data: Map::new(),
        filter: Filter::default(),
        ttl_s: 60,
        time_ms: now_ms(),
        target: None,
        reply_to: None,
    };
    if let Some(t) = target {
        body.bind(t);
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_request_cannot_be_replayed_onto_another_node_or_redirected() {
    let col = collective();
    // The compromised node A sees every request sent to it.
    let spy = col.connect(Some(A)).await.unwrap().client;
    let mut seen = spy.subscribe(subject::node(C, A)).await.unwrap();
    timeout(STEP, spy.flush()).await.unwrap().unwrap();
    let out = block_in_place(|| {
        col.mco("alice")
            .args(["rpc", "rpcutil", "ping", "-I", A, "-j"])
            .run()
    });
    out.assert_success();
    let captured = timeout(STEP, seen.next())
        .await
        .expect("the spy saw alice's request")
        .unwrap();
    let env = Envelope::decode(&captured.payload, usize::MAX, Kind::Request).unwrap();
    let req = env.request().unwrap();
    assert_eq!(req.target, Some(Target::Nodes(vec![A.into()])));
    assert_eq!(
        req.reply_to.as_deref(),
        captured.reply.as_ref().map(|r| r.as_str())
    );

    // Mallory, a user of the collective, replays it with its replies sent to herself.
    let mallory = col.connect(Some("mallory")).await.unwrap().client;
    let to_mallory = || subject::reply(C, "user:mallory", &new_request_id());
    let (b_before, a_before) = (
        dropped(&col, B, "wrong_target"),
        dropped(&col, A, "wrong_target"),
    );
    for to in [subject::node(C, B), subject::broadcast(C, "rpcutil")] {
        let got = count_replies(
            &mallory,
            to.clone(),
            to_mallory(),
            captured.payload.clone(),
            QUIET,
        )
        .await;
        assert_eq!(got, 0, "a node acted on alice's request replayed onto {to}");
    }
    block_in_place(|| {
        eventually(STEP, "B to count both replays, A the broadcast", || {
            dropped(&col, B, "wrong_target") == b_before + 2
                && dropped(&col, A, "wrong_target") == a_before + 1
        })
    });
    assert!(!audited(&col, B, &req.id), "B audited a request it refused");

    // A request A has not seen yet, delivered to A with its replies redirected: refused, and
    // its id is not spent, so the real delivery is still answered.
    let alice = col.credentials("alice");
    let fresh = ping(Some(Target::Nodes(vec![A.into()])));
    let sealed = Bytes::from(alice.seal(Kind::Request, fresh.encode()).encode());
    let before = dropped(&col, A, "reply_mismatch");
    let got = count_replies(
        &mallory,
        subject::node(C, A),
        to_mallory(),
        sealed.clone(),
        QUIET,
    )
    .await;
    assert_eq!(got, 0, "A answered a request whose replies were redirected");
    block_in_place(|| {
        eventually(STEP, "A to count the redirection", || {
            dropped(&col, A, "reply_mismatch") == before + 1
        })
    });
    let alice_conn = col.connect(Some("alice")).await.unwrap().client;
    let signed_reply = fresh.reply_to.clone().unwrap();
    let got = count_replies(&alice_conn, subject::node(C, A), signed_reply, sealed, STEP).await;
    assert_eq!(got, 1, "the request, delivered as signed, is answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_node_refuses_an_unbound_request() {
    let col = collective();
    let alice = col.credentials("alice");
    let conn = col.connect(Some("alice")).await.unwrap().client;
    let body = ping(None);
    let sealed = Bytes::from(alice.seal(Kind::Request, body.encode()).encode());
    let before = dropped(&col, A, "unbound");
    let reply_to = subject::reply(C, "user:alice", &body.id);
    let got = count_replies(&conn, subject::node(C, A), reply_to, sealed, QUIET).await;
    assert_eq!(got, 0, "a secure node answered an unbound request");
    block_in_place(|| {
        eventually(STEP, "the unbound request to be counted", || {
            dropped(&col, A, "unbound") == before + 1
        })
    });
    assert!(!audited(&col, A, &body.id));
    // Bound, the same request is answered.
    let bound = ping(Some(Target::Nodes(vec![A.into()])));
    let sealed = Bytes::from(alice.seal(Kind::Request, bound.encode()).encode());
    let got = count_replies(
        &conn,
        subject::node(C, A),
        bound.reply_to.clone().unwrap(),
        sealed,
        STEP,
    )
    .await;
    assert_eq!(got, 1);
}

/// `mco facts` (like every verb) says when a reply failed verification: here a compromised
/// node answers its own request with a reply claiming to be from A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mco_facts_says_when_a_reply_is_forged() {
    let col = collective();
    let evil = col.credentials("evil-01");
    let conn = col.connect(Some("evil-01")).await.unwrap().client;
    let mut inbox = conn.subscribe(subject::node(C, "evil-01")).await.unwrap();
    timeout(STEP, conn.flush()).await.unwrap().unwrap();
    let forger = tokio::spawn(async move {
        let Some(msg) = inbox.next().await else {
            return false;
        };
        let Ok(env) = Envelope::decode(&msg.payload, usize::MAX, Kind::Request) else {
            return false;
        };
        let Ok(req) = env.request() else { return false };
        let mut data = Map::new();
        data.insert("fact".into(), "os".into());
        data.insert("value".into(), "forged".into());
        let forged = ReplyBody {
            request_id: req.id,
            sender: A.into(),
            status: Status::Ok,
            message: "OK".into(),
            data,
            time_ms: now_ms(),
            elapsed_us: 1,
        };
        let bytes = evil.seal(Kind::Reply, forged.encode()).encode();
        let Some(reply) = msg.reply else { return false };
        conn.publish(reply, Bytes::from(bytes)).await.is_ok() && conn.flush().await.is_ok()
    });
    let out = block_in_place(|| {
        col.mco("alice")
            .args([
                "facts", "os", "-I", A, "-I", "evil-01", "--dt", "2", "-t", "5",
            ])
            .run()
    });
    assert!(
        timeout(STEP, forger).await.unwrap().unwrap(),
        "the forger saw no request"
    );
    assert!(
        out.stderr.contains("failed verification"),
        "mco facts did not say a reply failed verification:\n{out:?}"
    );
    assert!(
        !out.stdout.contains("forged"),
        "the forged value was counted:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("evil-01"),
        "the forger is named as not answering:\n{}",
        out.stdout
    );
}

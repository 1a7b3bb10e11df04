//! Attacks on the CA node's `ca` agent, against a real secure collective: the CA made with
//! `mco pki`, the CA node hosting `ca`, the real `mco`, and requests the real client refuses to
//! send built with the wire types.
//!
//! The attacker is a caller the `ca` policy allows (a provisioner). It used to be able to delete
//! the CA's own key and certificate (`clean name=ca`), revoke any user's certificate by name or
//! serial, remove the broker's or a user's files, and revoke or clean names outside
//! `allow_names`. Each now fails, nothing in the CA directory changes, and the CA node keeps
//! answering.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use mco_core::subject;
use mco_core::wire::{new_request_id, now_ms, DEFAULT_MAX_PAYLOAD};
use mco_core::{Envelope, Filter, Kind, ReplyBody, RequestBody, Status};
use mco_security::Credentials;
use mco_tests::provisioning::ca_node;
use mco_tests::replies::replies;
use mco_tests::secure::COLLECTIVE as C;
use mco_tests::{Output, SecureCollective};
use serde_json::{Map, Value};

const CA_NODE: &str = "ca-node";
const WAIT: Duration = Duration::from_secs(20);

/// Every file of `dir` and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn ca_call(c: &SecureCollective, action: &str, args: &[&str]) -> Output {
    c.mco("alice")
        .args(["rpc", "-I", CA_NODE, "-j", "-t", "20s", "ca", action])
        .args(args)
        .run()
}

/// The CA node answered, refusing with a message containing `needle`.
#[track_caller]
fn refused(out: &Output, needle: &str) {
    let r = replies(out);
    assert_eq!(r.len(), 1, "{out:?}");
    assert_ne!(r[0]["statuscode"], 0, "{out:?}");
    let msg = r[0]["statusmsg"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}\n{out:?}");
}

#[track_caller]
fn answers(c: &SecureCollective) {
    let out = c
        .mco("alice")
        .args(["rpc", "-I", CA_NODE, "-j", "-t", "10s", "rpcutil", "ping"])
        .run();
    assert!(
        replies(&out).first().is_some_and(|r| r["statuscode"] == 0),
        "the CA node stopped answering: {out:?}"
    );
}

/// A signed `ca ACTION name=NAME` request as alice, sent on her own connection without the
/// client's input checks; the node's reply.
async fn raw(c: &SecureCollective, action: &str, name: &str) -> ReplyBody {
    let (cert, key) = c.cert_and_key("alice");
    let creds = Credentials::load(&cert, &key).unwrap();
    let client = c.connect(Some("alice")).await.unwrap().client;
    let mut data = Map::new();
    data.insert("name".into(), Value::String(name.into()));
    let mut body = RequestBody {
        id: new_request_id(),
        sender: "alice".into(),
        caller: "user:alice".into(),
        collective: C.into(),
        agent: "ca".into(),
        action: action.into(),
        data,
        filter: Filter::default(),
        ttl_s: 60,
        time_ms: now_ms(),
        target: None,
        reply_to: None,
    };
    body.bind(mco_core::Target::Nodes(vec![CA_NODE.into()]));
    let reply_to = subject::reply(C, "user:alice", &body.id);
    let mut sub = client.subscribe(reply_to.clone()).await.unwrap();
    let payload = creds.seal(Kind::Request, body.encode()).encode();
    client
        .publish_with_reply(subject::node(C, CA_NODE), reply_to, Bytes::from(payload))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let msg = tokio::time::timeout(WAIT, async {
        loop {
            let m = sub.next().await.expect("the subscription is open");
            if m.status.is_none() {
                return m;
            }
        }
    })
    .await
    .expect("a reply");
    let env = Envelope::decode(&msg.payload, DEFAULT_MAX_PAYLOAD, Kind::Reply).unwrap();
    env.reply().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_agent_touches_no_reserved_user_or_serial_name_even_with_allow_names_star() {
    let c = tokio::task::block_in_place(|| {
        SecureCollective::builder()
            .user("bob")
            .spare_node("ca-node")
            .spare_node("fresh-01")
            .start()
    });
    // Everything matches allow_names: only the agent's own rules stand in the way.
    let _ca = tokio::task::block_in_place(|| ca_node(&c, &["*"], "alice"));
    let pki = c.pki_dir().to_path_buf();
    let before = snapshot(&pki);
    let index: Value =
        serde_json::from_str(&fs::read_to_string(pki.join("index.json")).unwrap()).unwrap();
    let bob_serial = index["certs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "bob")
        .unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_string();

    tokio::task::block_in_place(|| {
        for action in ["clean", "revoke"] {
            for name in ["ca", "node:ca", "broker", CA_NODE] {
                refused(&ca_call(&c, action, &[&format!("name={name}")]), "reserved");
            }
            refused(
                &ca_call(&c, action, &["name=bob"]),
                "the name of a user certificate",
            );
            // A serial is only ever a node name: bob's certificate is not revoked by it.
            let out = ca_call(&c, action, &[&format!("name={bob_serial}")]);
            let r = replies(&out);
            if action == "revoke" {
                refused(&out, "no unrevoked certificate");
            } else {
                // clean of a name with no certificate and no files: nothing to do.
                assert_eq!(r[0]["statuscode"], 0, "{out:?}");
                assert_eq!(r[0]["data"]["revoked"], serde_json::json!([]), "{out:?}");
                assert_eq!(r[0]["data"]["removed"], serde_json::json!([]), "{out:?}");
            }
        }
    });
    // user: names are refused by the node even when sent past the client's checks.
    for action in ["clean", "revoke", "sign"] {
        for name in ["user:bob", "user:alice"] {
            let r = raw(&c, action, name).await;
            assert_ne!(r.status, Status::Ok, "{action} {name}: {r:?}");
        }
    }
    // The CRL may have been rewritten by the harmless clean above; nothing else changed.
    let mut after = snapshot(&pki);
    let mut was = before.clone();
    for m in [&mut after, &mut was] {
        m.remove(&pki.join("ca.crl"));
        m.remove(&pki.join("index.json"));
    }
    assert_eq!(after, was, "files of the CA directory changed");
    let index_after: Value =
        serde_json::from_str(&fs::read_to_string(pki.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index_after["certs"], index["certs"],
        "a certificate was revoked"
    );
    for f in [
        "ca.pem",
        "ca.key",
        "broker.pem",
        "broker.key",
        "bob.pem",
        "bob.key",
    ] {
        assert!(pki.join(f).exists(), "{f} is gone");
    }
    tokio::task::block_in_place(|| answers(&c));
}

#[test]
fn every_ca_action_takes_only_names_allow_names_allows() {
    let c = SecureCollective::builder()
        .spare_node("ca-node")
        .spare_node("fresh-01")
        .spare_node("web-01")
        .start();
    let _ca = ca_node(&c, &["fresh-*"], "alice");
    let pki = c.pki_dir().to_path_buf();
    let before = snapshot(&pki);
    let csr = fs::read_to_string(pki.join("web-01.pem")).unwrap();
    for (action, args) in [
        ("revoke", vec!["name=web-01".to_string()]),
        ("clean", vec!["name=node:web-01".to_string()]),
        (
            "sign",
            vec!["name=web-01".to_string(), format!("csr={csr}")],
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&ca_call(&c, action, &args), "allow_names");
    }
    assert_eq!(snapshot(&pki), before, "the CA directory changed");
    answers(&c);
    // An allowed name still works.
    let out = ca_call(&c, "revoke", &["name=fresh-01"]);
    assert_eq!(replies(&out)[0]["statuscode"], 0, "{out:?}");
    answers(&c);
}

//! The provisioner against a holder of the bootstrap token (T): what such an attacker sends
//! on the provisioning broker must not steer what the provisioner trusts.

use std::time::Duration;

use bytes::Bytes;
use mco_core::wire::{now_ms, Kind, ReplyBody, Status};
use mco_security::NodeKey;
use mco_tests::provisioning::{ca_node, connect, provisioning_broker, Provisioner};
use mco_tests::{eventually, SecureCollective};
use serde_json::{json, Map, Value};

const LONG: Duration = Duration::from_secs(60);

/// A provisioning announcement as a node sends it, but naming `sender`, signed by `key`.
fn announcement(key: &NodeKey, sender: &str) -> Bytes {
    let mut data = Map::new();
    data.insert("identity".into(), sender.into());
    data.insert("public_key".into(), key.public_hex().into());
    data.insert("facts".into(), json!({}));
    let body = ReplyBody {
        request_id: "registration".into(),
        sender: sender.into(),
        status: Status::Ok,
        message: "provisioning".into(),
        data,
        time_ms: now_ms(),
        elapsed_us: 0,
    };
    Bytes::from(key.seal_with_key(Kind::Reply, body.encode()).encode())
}

/// A reply's sender used to be pinned as it came and written raw into the pins file, so a
/// newline in it wrote a pin for another identity: `x HEX\nnode-a` pinned node-a to the
/// attacker's key (or made the file unparsable, and the provisioner would not start again).
/// Now an identity that is not a host name is refused before anything is pinned.
#[test]
fn a_token_holder_cannot_write_a_pin_for_another_node() {
    let c = SecureCollective::builder()
        .user("alice")
        .spare_node("ca-node")
        .start();
    let prov = provisioning_broker(&c);
    let _ca = ca_node(&c, &["node-*"], "alice");
    let cfg = Provisioner::configure(
        &c,
        &prov,
        "alice",
        "workers = 2\ninterval = \"500ms\"\nbackoff = \"1s\"\n\
         [expected]\nidentities = [\"node-*\"]\n\
         [ca]\nidentity = \"ca-node\"\n\
         [masters]\nidentities = [\"m-*\"]\nclasses = [\"puppet::master\"]\n",
    );
    let mut p = Provisioner::start(&cfg);
    let pins = cfg.parent().unwrap().join("state.pins");

    let attacker = NodeKey::generate();
    let forged = format!("x {}\nnode-a", "01".repeat(32));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The provisioner subscribes once it runs: announce until a well-formed one is pinned,
    // the forged one before it each time.
    eventually(
        LONG,
        "the attacker's well-formed announcement to be pinned",
        || {
            assert!(p.child.is_running(), "{}", p.child.stderr_text());
            rt.block_on(async {
                let client = connect(&c, &prov).await;
                for sender in [forged.as_str(), "node-q"] {
                    client
                        .publish(
                            format!("provisioning.registration.{}", sender.len()),
                            announcement(&attacker, sender),
                        )
                        .await
                        .unwrap();
                }
                client.flush().await.unwrap();
            });
            std::fs::read_to_string(&pins).is_ok_and(|t| t.contains("node-q "))
        },
    );
    let text = std::fs::read_to_string(&pins).unwrap();
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("node-a") || l.starts_with("x ")),
        "a pin was injected:\n{text}"
    );
    let loaded = mco_client::pins::KeyPins::load(&pins).expect("the pins file still parses");
    assert_eq!(loaded.get("node-a"), None);
    assert_eq!(loaded.get("node-q"), Some(attacker.public_key()));
    eventually(LONG, "the refusal to be logged", || {
        p.child.stderr_text().contains("is not a node identity")
    });
    assert!(p.child.is_running(), "{}", p.child.stderr_text());
    let status: Map<String, Value> = Provisioner::status(&cfg);
    assert!(
        !status.keys().any(|k| k.contains('\n') || k == "node-a"),
        "the journal took the forged identity: {status:?}"
    );
}

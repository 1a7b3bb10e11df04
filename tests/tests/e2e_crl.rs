//! Revocation that reaches every node: `mco pki revoke --publish` puts the CA's CRL on the bus,
//! every responder watching it puts it in force within seconds (no file copied by hand), and
//! an older CRL published after it is refused: CRLs only move forward.

use std::time::Duration;

use mco_tests::{eventually, ResponderSpec, SecureCollective};

fn ping_count(c: &SecureCollective, user: &str) -> usize {
    let out = c
        .mco(user)
        .args([
            "rpc", "rpcutil", "ping", "-I", "c1", "-I", "c2", "-I", "c3", "-t", "1s", "-j",
        ])
        .run();
    serde_json::from_str::<Vec<serde_json::Value>>(&out.stdout)
        .map(|v| v.len())
        .unwrap_or(0)
}

fn crl_field(c: &SecureCollective, field: &str) -> Vec<String> {
    let ids = ["c1", "c2", "c3"];
    c.daemon_stats("alice", &ids)
        .values()
        .map(|s| s["crl"][field].to_string())
        .collect()
}

#[test]
fn a_revoked_user_is_refused_by_every_node_within_seconds() {
    let c = SecureCollective::builder()
        .user("bob")
        .inventory(&["alice"])
        .node_with_default_policy(ResponderSpec::new("c1"), "allow")
        .node_with_default_policy(ResponderSpec::new("c2"), "allow")
        .node_with_default_policy(ResponderSpec::new("c3"), "allow")
        .start();
    assert_eq!(ping_count(&c, "bob"), 3);
    let before = crl_field(&c, "number");
    let old_crl = std::fs::read(c.pki_dir().join("ca.crl")).unwrap();

    let config = c.client_config("alice");
    let revoke = mco_tests::Cmd::mco()
        .arg("--config")
        .arg(&config)
        .args(["pki", "--dir"])
        .arg(c.pki_dir())
        .args(["revoke", "bob", "--publish"])
        .run();
    revoke.assert_success();
    assert!(revoke.stdout.contains("Published"), "{revoke:?}");

    eventually(Duration::from_secs(20), "every node to refuse bob", || {
        ping_count(&c, "bob") == 0
    });
    let after = crl_field(&c, "number");
    assert!(after.iter().all(|n| *n == after[0]), "{after:?}");
    assert_ne!(after, before);
    // Each node's own CRL file now holds the CA's: written by the node from the bus.
    let published = std::fs::read(c.pki_dir().join("ca.crl")).unwrap();
    for id in ["c1", "c2", "c3"] {
        assert_eq!(std::fs::read(c.node_crl(id)).unwrap(), published, "{id}");
    }
    assert_eq!(ping_count(&c, "alice"), 3);

    // An older CRL published after it (one that does not revoke bob) is refused everywhere:
    // revocation cannot be undone by replaying the past.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let alice = c.connect(Some("alice")).await.unwrap();
        alice
            .client
            .publish("$KV.mco_crl.ca.crl", old_crl.into())
            .await
            .unwrap();
        alice.client.flush().await.unwrap();
    });
    eventually(
        Duration::from_secs(20),
        "every node to refuse the old CRL",
        || crl_field(&c, "refused").iter().all(|r| r != "0"),
    );
    assert_eq!(crl_field(&c, "number"), after);
    assert_eq!(ping_count(&c, "bob"), 0);
    for id in ["c1", "c2", "c3"] {
        assert_eq!(std::fs::read(c.node_crl(id)).unwrap(), published, "{id}");
    }
}

//! Revocation that reaches every node: `mco pki revoke --publish` puts the CA's CRL on the bus,
//! every responder watching it puts it in force within seconds (no file copied by hand), and
//! an older CRL published after it is refused: CRLs only move forward. The `ca` agent publishes
//! the CRL itself after a revocation, when the broker lets its node; a long-running client
//! (the provisioner's watcher) applies it in place.

use std::time::Duration;

use mco_core::wire::Kind;
use mco_security::{Credentials, TrustStore};
use mco_tests::provisioning::ca_node_with;
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

/// The CA's CRL number, from `ca.crl` as the CA wrote it.
fn ca_crl_number(c: &SecureCollective) -> String {
    let store = TrustStore::load(
        &c.pki_dir().join("ca.pem"),
        Some(&c.pki_dir().join("ca.crl")),
    )
    .unwrap();
    store.crl().unwrap().number().unwrap()
}

fn revoke_through_the_ca_agent(c: &SecureCollective, name: &str) -> serde_json::Value {
    let out = c
        .mco("alice")
        .args(["rpc", "ca", "revoke"])
        .arg(format!("name={name}"))
        .args(["-I", "ca-node", "-j"])
        .run();
    out.assert_success();
    let replies: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(replies.len(), 1, "{out:?}");
    replies[0]["data"].clone()
}

#[test]
fn the_ca_agent_publishes_the_crl_and_every_node_and_watching_client_applies_it() {
    let c = SecureCollective::builder()
        .inventory(&["alice"])
        .spare_node("ca-node")
        // A node certificate no responder uses: the one revoked, so that every node answers.
        .spare_node("c9")
        .crl_publisher("ca-node")
        .node_with_default_policy(ResponderSpec::new("c1"), "allow")
        .node_with_default_policy(ResponderSpec::new("c2"), "allow")
        .node_with_default_policy(ResponderSpec::new("c3"), "allow")
        .start();
    let _ca = ca_node_with(&c, &["c*"], "alice", "[inventory]\ninterval = \"1s\"\n");
    let before = crl_field(&c, "number");

    // A long-running client, connected as the provisioner connects (alice's config), watching
    // the bucket with its session's trust store as the provisioner does.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = mco_client::config::load(Some(&c.client_config("alice")), &[]).unwrap();
    let session = rt
        .block_on(mco_client::session::Session::connect(
            &cfg,
            mco_client::session::Warnings::Log,
        ))
        .unwrap();
    let store = session
        .bus()
        .opener
        .trust
        .clone()
        .expect("a secure session");
    let c9 = Credentials::load(&c.pki_dir().join("c9.pem"), &c.pki_dir().join("c9.key")).unwrap();
    let from_c9 = c9.seal(Kind::Reply, b"{}".to_vec());
    let now = || (mco_core::wire::now_ms() / 1000) as i64;
    assert!(store.verify(&from_c9, now()).is_ok());
    let watcher = rt.spawn(mco_client::crl_watch::watch(
        session.bus().client.clone(),
        vec![store.clone()],
        cfg.inventory.crl_bucket.clone(),
    ));

    let data = revoke_through_the_ca_agent(&c, "c9");
    assert!(data["published"].as_u64().unwrap_or(0) > 0, "{data}");
    assert_eq!(data["publish_error"], "", "{data}");
    let number = ca_crl_number(&c);
    assert!(!before.contains(&number), "{before:?} {number}");

    // Every node puts it in force from the bus, no file copied by hand...
    eventually(
        Duration::from_secs(20),
        "every node to hold the CA's new CRL",
        || {
            crl_field(&c, "number")
                .iter()
                .all(|n| n.trim_matches('"') == number)
        },
    );
    // The summary says which CRL the fleet holds, node by node counted.
    let stats = c
        .mco("alice")
        .args([
            "rpc",
            "rpcutil",
            "daemon_stats",
            "-I",
            "c1",
            "-I",
            "c2",
            "-I",
            "c3",
        ])
        .run();
    stats.assert_success();
    assert!(
        stats.stdout.contains("Summary of CRL Number:")
            && stats.stdout.contains(&format!("{number} = 3")),
        "{stats:?}"
    );
    let written = std::fs::read(c.pki_dir().join("ca.crl")).unwrap();
    for id in ["c1", "c2", "c3"] {
        assert_eq!(std::fs::read(c.node_crl(id)).unwrap(), written, "{id}");
    }
    // ...and so does the watching client, in place: c9's signature is now refused by it.
    eventually(
        Duration::from_secs(20),
        "the client's store to refuse c9",
        || store.crl().and_then(|i| i.number()).as_deref() == Some(number.as_str()),
    );
    let refused = store.verify(&from_c9, now()).unwrap_err();
    assert_eq!(refused.reason(), "certificate_revoked", "{refused}");
    watcher.abort();
}

#[test]
fn a_ca_node_the_broker_does_not_name_cannot_publish_and_says_so() {
    let c = SecureCollective::builder()
        .inventory(&["alice"])
        .spare_node("ca-node")
        .spare_node("c9")
        .node_with_default_policy(ResponderSpec::new("c1"), "allow")
        .node_with_default_policy(ResponderSpec::new("c2"), "allow")
        .start();
    let _ca = ca_node_with(&c, &["c*"], "alice", "[inventory]\ninterval = \"1s\"\n");
    let before = crl_field_of(&c, &["c1", "c2"]);
    let data = revoke_through_the_ca_agent(&c, "c9");
    // The revocation stands (the CA's file has it), but the broker refused the publication,
    // and the reply says so.
    assert_eq!(data["revoked"].as_array().map(Vec::len), Some(1), "{data}");
    assert_eq!(data["published"], 0, "{data}");
    let why = data["publish_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("crl-publisher") || why.contains("ermission"),
        "{data}"
    );
    assert_eq!(crl_field_of(&c, &["c1", "c2"]), before);
}

fn crl_field_of(c: &SecureCollective, ids: &[&str]) -> Vec<String> {
    c.daemon_stats("alice", ids)
        .values()
        .map(|s| s["crl"]["number"].to_string())
        .collect()
}

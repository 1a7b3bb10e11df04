//! The inventory registry on a real JetStream broker: every responder keeps its signed entry,
//! `--discovery-method inventory` finds who should answer without a broadcast and names the
//! silent, `check_mco_nrpe` counts them, `mco find --stale`, `mco facts` and `mco inventory`
//! answer from it, and forged or misplaced entries are left out.

use std::path::Path;
use std::time::Duration;

use mco_core::inventory::InventoryBody;
use mco_core::wire::{now_ms, Kind};
use mco_tests::{bin_path, eventually, Cmd, ResponderSpec, SecureCollective};

fn node(id: &str, role: &str, dir: &Path) -> ResponderSpec {
    let d = dir.join(id);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("checks.cfg"), "command[check_ok]=/bin/echo OK\n").unwrap();
    ResponderSpec::new(id)
        .facts(serde_json::json!({ "role": role }))
        .extra(&format!(
            "[plugin.nrpe]\nconf_dir = {:?}\n",
            d.display().to_string()
        ))
}

fn lines(out: &mco_tests::Output) -> Vec<String> {
    out.stdout.lines().map(str::to_string).collect()
}

#[test]
fn the_registry_names_who_should_answer() {
    let work = tempfile::tempdir().unwrap();
    let mut collective = SecureCollective::builder()
        .user("bob")
        .inventory(&["alice"])
        .node_with_default_policy(node("i1", "web", work.path()), "allow")
        .node_with_default_policy(node("i2", "web", work.path()), "allow")
        .node_with_default_policy(node("i3", "db", work.path()), "allow")
        .start();
    let all = ["i1", "i2", "i3"];
    eventually(Duration::from_secs(20), "every node to register", || {
        let out = collective
            .mco("bob")
            .args(["find", "--dm", "inventory"])
            .run();
        lines(&out) == all
    });

    // Inventory discovery, by a user who is no admin: the filter is evaluated on the entries.
    let out = collective
        .mco("bob")
        .args([
            "rpc",
            "rpcutil",
            "ping",
            "--dm",
            "inventory",
            "-F",
            "role=web",
        ])
        .run();
    out.assert_success();
    assert!(
        out.stdout.contains("Finished processing 2 / 2 hosts"),
        "{out:?}"
    );

    // From the registry alone.
    let facts = collective
        .mco("bob")
        .args(["facts", "role", "--from-registry"])
        .run();
    facts.assert_success();
    assert!(
        facts.stdout.contains("web") && facts.stdout.contains("found 2 times"),
        "{facts:?}"
    );
    let inv = collective
        .mco("bob")
        .args(["inventory", "i3", "--from-registry"])
        .run();
    inv.assert_success();
    assert!(
        inv.stdout.contains("Registered:") && inv.stdout.contains("role => db"),
        "{inv:?}"
    );

    // A node goes silent: it is still expected, and named.
    collective.responder_mut("i2").child.kill();
    let out = collective
        .mco("bob")
        .args([
            "rpc",
            "rpcutil",
            "ping",
            "--dm",
            "inventory",
            "-F",
            "role=web",
            "-t",
            "2s",
        ])
        .run();
    assert!(
        out.stdout.contains("Finished processing 1 / 2 hosts"),
        "{out:?}"
    );
    let silent = &out.stdout[out
        .stdout
        .find("No response from:")
        .expect("names the silent")..];
    assert!(silent.contains("i2"), "{out:?}");

    // check_mco_nrpe counts it: UNKNOWN, or CRITICAL when asked.
    let config = collective.client_config("bob");
    let check = |extra: &[&str]| {
        Cmd::new(bin_path("check_mco_nrpe"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "--dm",
                "inventory",
                "-t",
                "10s",
            ])
            .args(extra)
            .arg("check_ok")
            .run()
    };
    let out = check(&[]);
    assert_eq!(out.status, 3, "{out:?}");
    assert!(
        out.stdout.contains("OK: 2") && out.stdout.contains("UNKNOWN: 1"),
        "{out:?}"
    );
    let out = check(&["--unknown-as", "critical"]);
    assert_eq!(out.status, 2, "{out:?}");
    assert!(out.stdout.contains("CRITICAL: 1"), "{out:?}");

    // It stops registering; the others go on.
    eventually(Duration::from_secs(20), "i2 to go stale", || {
        let out = collective.mco("bob").args(["find", "--stale", "3s"]).run();
        out.status == 0 && lines(&out).len() == 1 && out.stdout.starts_with("i2 ")
    });
}

#[test]
fn forged_and_misplaced_entries_are_left_out() {
    let collective = SecureCollective::builder()
        .inventory(&["alice"])
        .node(ResponderSpec::new("f1"))
        .node(ResponderSpec::new("f2"))
        .start();
    eventually(Duration::from_secs(20), "both nodes to register", || {
        let out = collective
            .mco("alice")
            .args(["find", "--dm", "inventory"])
            .run();
        lines(&out) == ["f1", "f2"]
    });
    let forged = |signer: &str, claims: &str| {
        let body = InventoryBody {
            identity: claims.into(),
            collectives: vec!["mcollective".into()],
            facts: serde_json::from_value(serde_json::json!({"role": "forged"})).unwrap(),
            classes: vec![],
            agents: vec!["rpcutil".into()],
            version: "0".into(),
            time_ms: now_ms(),
            interval_s: 1,
            crl: None,
        };
        collective
            .credentials(signer)
            .seal(Kind::Inventory, body.encode())
            .encode()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // A node cannot write another node's key: the broker refuses it.
        let mut f1 = collective.connect(Some("f1")).await.unwrap();
        f1.client
            .publish("$KV.mco_inventory.f2", forged("f1", "f2").into())
            .await
            .unwrap();
        f1.client.flush().await.unwrap();
        let err = f1
            .error_about("Permissions Violation", Duration::from_secs(10))
            .await;
        assert!(err.is_some(), "the broker let f1 write f2's key");

        // An admin can write any key, but an entry signed by f1 under f2's key, or one in
        // which f1 claims to be another node, is not believed.
        let alice = collective.connect(Some("alice")).await.unwrap();
        alice
            .client
            .publish("$KV.mco_inventory.f2", forged("f1", "f2").into())
            .await
            .unwrap();
        alice
            .client
            .publish("$KV.mco_inventory.ghost", forged("f1", "ghost").into())
            .await
            .unwrap();
        alice.client.flush().await.unwrap();
    });
    eventually(
        Duration::from_secs(20),
        "the forged entries to be refused",
        || {
            let out = collective
                .mco("alice")
                .args(["find", "--dm", "inventory", "-F", "role=forged"])
                .run();
            out.stderr.contains("failed verification") && lines(&out).is_empty()
        },
    );
}

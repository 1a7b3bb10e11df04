//! A site on a leaf node: its responders and its `nats-server` in their own network namespace,
//! the server linked to the hub cluster by `mco pki broker-config --leaf-remote`. A client on
//! the hub reaches the site with the same filters and security; cutting the site's link and
//! restoring it brings the site back with nothing restarted.

use std::time::Duration;

use mco_tests::{eventually, ResponderSpec, SecureCluster};

#[test]
fn a_site_on_a_leaf_node_is_reached_from_the_hub_and_survives_a_cut_link() {
    let site: Vec<ResponderSpec> = ["s1", "s2", "s3"]
        .iter()
        .map(|id| ResponderSpec::new(id).facts(serde_json::json!({"site": "paris"})))
        .collect();
    let mut cluster = SecureCluster::builder()
        .servers(2)
        .node(ResponderSpec::new("h1").facts(serde_json::json!({"site": "hub"})))
        .site(site)
        .start();
    let site_ids: Vec<String> = ["s1", "s2", "s3"].iter().map(|s| s.to_string()).collect();

    // A filtered broadcast from the hub selects the site's nodes, signed and verified as on
    // the hub: the same client, the same filter language.
    let out = cluster
        .mco_via("alice", 0)
        .args(["rpc", "rpcutil", "ping", "-F", "site=paris", "--dt", "2s"])
        .run();
    out.assert_success();
    for id in &site_ids {
        assert!(out.stdout.contains(id.as_str()), "{out:?}");
    }
    assert!(!out.stdout.contains("h1"), "{out:?}");
    assert!(
        out.stdout.contains("Finished processing 3 / 3 hosts"),
        "{out:?}"
    );
    // The site's nodes say they are on the site's server.
    let on = cluster.servers_of(1, &site_ids);
    assert!(on.len() == 3 && on.values().all(|s| s == "site1"), "{on:?}");

    let pids: Vec<u32> = cluster.responders().iter().map(|r| r.child.pid()).collect();
    let leaf_pid = cluster.leaf().pid();

    cluster.site_link().cut();
    eventually(Duration::from_secs(30), "the site to go silent", || {
        cluster.answering_via(0, &site_ids).is_empty()
    });
    // The hub's own node is unaffected.
    assert_eq!(cluster.answering_via(0, &["h1".to_string()]), vec!["h1"]);

    cluster.site_link().restore();
    cluster.wait_answering_via(0, &site_ids, Duration::from_secs(60));
    cluster.wait_answering_via(1, &site_ids, Duration::from_secs(30));

    // Nothing was restarted: the same processes.
    let after: Vec<u32> = cluster.responders().iter().map(|r| r.child.pid()).collect();
    assert_eq!(pids, after);
    assert_eq!(leaf_pid, cluster.leaf().pid());
    for r in cluster.responders_mut() {
        assert!(r.child.is_running(), "{} exited", r.spec.identity);
    }
}

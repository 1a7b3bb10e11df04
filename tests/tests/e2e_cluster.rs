//! A real three-server cluster from `mco pki broker-config --cluster`: losing a server while a
//! call is in flight, the responders moving to the others, the server coming back; a cut link
//! (network namespaces), not only a killed process; and the route port closed to every
//! certificate but the brokers'.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use mco_tests::{eventually, ResponderSpec, SecureCluster};

/// An NRPE check that runs until the test lets it finish: each node's script says it started,
/// then waits for the `go` file.
fn held_check(id: &str, dir: &Path) -> ResponderSpec {
    let d = dir.join(id);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("held.sh"),
        format!(
            "touch {started}\nwhile [ ! -e {go} ]; do sleep 0.05; done\necho OK\n",
            started = dir.join(format!("started-{id}")).display(),
            go = dir.join("go").display()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("checks.cfg"),
        format!("command[held]=/bin/sh {}/held.sh\n", d.display()),
    )
    .unwrap();
    ResponderSpec::new(id).extra(&format!(
        "[plugin.nrpe]\nconf_dir = {:?}\ntimeout = \"60s\"\n",
        d.display().to_string()
    ))
}

fn names(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

#[test]
fn a_call_survives_a_killed_server_and_the_server_rejoins() {
    let work = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (1..=6).map(|i| format!("c{i}")).collect();
    let mut builder = SecureCluster::builder();
    for id in &ids {
        builder = builder.node(held_check(id, work.path()));
    }
    let mut cluster = builder.start();

    // Every node says which server it is on, and every server is one of ours.
    let on = cluster.servers_of(0, &ids);
    assert_eq!(on.len(), ids.len(), "{on:?}");
    assert!(
        on.values()
            .all(|s| ["nats1", "nats2", "nats3"].contains(&s.as_str())),
        "{on:?}"
    );
    let verbose = cluster
        .mco_via("alice", 1)
        .args(["rpc", "rpcutil", "ping", "-v", "-I", "c1"])
        .run();
    verbose.assert_success();
    assert!(
        verbose.stdout.contains("Broker: nats2 (") && verbose.stdout.contains("cluster hub"),
        "{verbose:?}"
    );

    // The victim is the server most nodes are on; the call goes through another.
    let count = |s: &str| on.values().filter(|v| v.as_str() == s).count();
    let victim = (0..3)
        .max_by_key(|i| count(&format!("nats{}", i + 1)))
        .unwrap();
    let victim_name = format!("nats{}", victim + 1);
    let via = (victim + 1) % 3;
    let on_victim: Vec<String> = on
        .iter()
        .filter(|(_, s)| **s == victim_name)
        .map(|(n, _)| n.clone())
        .collect();
    assert!(!on_victim.is_empty());

    let call = cluster
        .mco_via("alice", via)
        .args(["nrpe", "held", "-v", "-t", "60s", "--dt", "5s"]);
    let in_flight = std::thread::spawn(move || call.run());
    eventually(
        Duration::from_secs(30),
        "every node to start the check",
        || {
            ids.iter()
                .all(|id| work.path().join(format!("started-{id}")).exists())
        },
    );
    cluster.server_mut(victim).stop();
    std::fs::write(work.path().join("go"), "").unwrap();
    let out = in_flight.join().unwrap();
    // Each node either answered or is named as not having answered: none is lost silently.
    for id in &ids {
        let named = out
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with(id.as_str()));
        assert!(
            named,
            "{id} is neither a result nor named as silent:\n{out:?}"
        );
    }
    assert!(
        out.stdout.contains("Finished processing"),
        "the call completed: {out:?}"
    );

    // Every node is back, on one of the other two servers, and answers the next call.
    eventually(
        Duration::from_secs(30),
        "every node on another server",
        || {
            let now = cluster.servers_of(via, &ids);
            now.len() == ids.len() && now.values().all(|s| *s != victim_name)
        },
    );
    cluster
        .mco_via("alice", via)
        .args(["rpc", "rpcutil", "ping", "-t", "5s"])
        .args(ids.iter().flat_map(|i| ["-I", i.as_str()]))
        .run()
        .assert_success();

    // The killed server restarts and rejoins: calls through it reach every node again.
    cluster.server_mut(victim).restart();
    cluster.wait_answering_via(victim, &ids, Duration::from_secs(30));
    assert_eq!(names(&cluster.answering_via(victim, &ids)), names(&ids));
}

#[test]
fn a_cut_link_isolates_a_server_and_its_nodes_move_to_the_others() {
    let ids: Vec<String> = (1..=4).map(|i| format!("p{i}")).collect();
    let mut builder = SecureCluster::builder().isolate(2);
    for id in &ids {
        builder = builder.node(ResponderSpec::new(id));
    }
    let cluster = builder.start();
    let link = cluster.isolated_link();
    let on = cluster.servers_of(0, &ids);
    assert!(
        on.len() == ids.len() && on.values().all(|s| s == "nats3"),
        "every node starts on the isolated server: {on:?}"
    );

    link.cut();
    // Through the servers on this side, every node answers again once those that were on
    // the isolated server have noticed (missed pings) and moved.
    cluster.wait_answering_via(0, &ids, Duration::from_secs(45));
    let on = cluster.servers_of(0, &ids);
    assert!(on.values().all(|s| s != "nats3"), "{on:?}");
    assert_eq!(on.len(), ids.len(), "{on:?}");

    link.restore();
    // The isolated server's routes come back by themselves: calls through it reach every
    // node, none of which is on it.
    cluster.wait_answering_via(2, &ids, Duration::from_secs(45));
}

#[test]
fn only_broker_certificates_join_the_cluster() {
    let cluster = SecureCluster::builder()
        .servers(2)
        .node(ResponderSpec::new("r1"))
        .start();
    let log = cluster.server(0).log_text();
    let listen = log
        .lines()
        .find_map(|l| l.split("Listening for route connections on ").nth(1))
        .expect("the server logs its route port")
        .trim()
        .to_string();
    let pki = cluster.pki_dir();
    // A node's certificate, which the CA signed, offered on a route port by a server of the
    // attacker's own: it is not a pinned broker key, so it never becomes a route and never
    // sees the cluster's traffic.
    let rogue_conf = format!(
        "server_name: rogue\ncluster {{\n  name: \"hub\"\n  listen: \"127.0.0.1:-1\"\n  tls {{\n    cert_file: \"{d}/r1.pem\"\n    key_file: \"{d}/r1.key\"\n    ca_file: \"{d}/ca.pem\"\n    timeout: 5\n  }}\n  routes: [\"nats-route://{listen}\"]\n}}\n",
        d = pki.display()
    );
    let rogue = mco_tests::NatsServer::builder()
        .config_text(rogue_conf)
        .start();
    eventually(
        Duration::from_secs(20),
        "the server to refuse the route",
        || {
            cluster
                .server(0)
                .log_text()
                .contains("certificate not pinned")
        },
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use futures::StreamExt;
        let spy = rogue.client().await;
        let mut sub = spy.subscribe(">").await.unwrap();
        spy.flush().await.unwrap();
        cluster
            .mco("alice")
            .args(["ping", "-t", "1s"])
            .run()
            .assert_success();
        let got = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
        assert!(got.is_err(), "the rogue server saw traffic: {got:?}");

        // A broker's certificate, which may be a TLS client now, maps to no user on a
        // client port.
        let ca = pki.join("ca.pem");
        let as_broker = mco_tests::tls_connect(
            cluster.server(0),
            &ca,
            Some((pki.join("nats2.pem"), pki.join("nats2.key"))),
        )
        .await;
        assert!(
            as_broker.is_err(),
            "a broker certificate connected as a client"
        );
    });
}

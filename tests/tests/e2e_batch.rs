//! Batches, node limits and the discovery sources of ARCHITECTURE.md §5 against ten virtual nodes served
//! by one responder.

use mco_tests::replies::{counter, senders, write_nodes_file};
use mco_tests::{mco, Cmd, NatsServer, Output, Responder, ResponderSpec};

fn fleet_ids() -> Vec<String> {
    ResponderSpec::new("node").fleet(10).identities()
}

fn rpc_ping(url: &str, args: &[&str]) -> Output {
    let mut all = vec!["rpc", "rpcutil", "ping", "--nats", url];
    all.extend_from_slice(args);
    mco(all)
}

/// Senders of a successful `-j` run, checked to be distinct members of the fleet.
#[track_caller]
fn fleet_senders(out: &Output) -> Vec<String> {
    out.assert_success();
    let got = senders(out);
    let fleet = fleet_ids();
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique, got, "each node answers once, sorted\n{out:?}");
    for s in &got {
        assert!(fleet.contains(s), "{s} is not in the fleet\n{out:?}");
    }
    got
}

fn batches_reach_every_node_once(url: &str, all_file: &str) {
    let fleet = fleet_ids();
    let ids: Vec<&str> = fleet.iter().map(String::as_str).collect();
    let before = counter(url, "mcollective", &ids, "total");
    let out = rpc_ping(url, &["--nodes", all_file, "--batch", "3", "-j"]);
    assert_eq!(fleet_senders(&out), fleet, "{out:?}");
    let after = counter(url, "mcollective", &ids, "total");
    for id in &ids {
        assert_eq!(
            after[*id],
            before[*id] + 2,
            "{id} should have seen the batched ping and the second daemon_stats only: \
             before {before:?}, after {after:?}"
        );
    }

    // Batches of a broadcast-discovered set, with a pause between them, in text.
    let out = rpc_ping(
        url,
        &[
            "-F",
            "fleet_index<5",
            "--batch",
            "2",
            "--batch-sleep",
            "10ms",
        ],
    );
    out.assert_success();
    assert!(
        out.stdout.contains("Finished processing 5 / 5 hosts"),
        "{out:?}"
    );
    for id in &fleet[..5] {
        assert!(out.stdout.contains(&format!("{id}\n")), "{id}\n{out:?}");
    }
    for id in &fleet[5..] {
        assert!(!out.stdout.contains(id.as_str()), "{id}\n{out:?}");
    }
}

fn limits(url: &str) {
    let out = rpc_ping(url, &["--limit-nodes", "4", "-j"]);
    assert_eq!(fleet_senders(&out).len(), 4, "{out:?}");

    let out = rpc_ping(url, &["--ln", "30%", "-j"]);
    assert_eq!(fleet_senders(&out).len(), 3, "{out:?}");

    let out = rpc_ping(url, &["--limit-nodes", "100%", "-j"]);
    assert_eq!(fleet_senders(&out), fleet_ids(), "{out:?}");

    let out = rpc_ping(url, &["--limit-nodes", "3", "--limit-seed", "5", "-j"]);
    let first = fleet_senders(&out);
    assert_eq!(first.len(), 3, "{out:?}");
    let out = rpc_ping(url, &["--limit-nodes", "3", "--limit-seed", "5", "-j"]);
    assert_eq!(
        fleet_senders(&out),
        first,
        "the same seed picks the same nodes"
    );
    // find applies the same choice to the same discovered set.
    let out = mco([
        "find",
        "--nats",
        url,
        "--limit-nodes",
        "3",
        "--limit-seed",
        "5",
    ]);
    out.assert_success();
    out.assert_stdout_eq(&format!("{}\n", first.join("\n")));

    // The limit applies after the filter.
    let out = rpc_ping(url, &["-F", "fleet_index>=8", "--limit-nodes", "5", "-j"]);
    assert_eq!(fleet_senders(&out), ["node-0008", "node-0009"], "{out:?}");

    for bad in ["0", "0%", "101%", "many"] {
        let out = rpc_ping(url, &["--limit-nodes", bad]);
        out.assert_exit(64);
        assert!(out.stderr.contains("--limit-nodes"), "{out:?}");
    }
}

fn direct_sources(url: &str, dir: &std::path::Path) {
    let three = dir.join("three.txt");
    write_nodes_file(&three, &["node-0002", "ghost", "node-0007"]);
    let out = rpc_ping(url, &["--nodes", three.to_str().unwrap(), "-t", "2s"]);
    out.assert_exit(2);
    assert!(out.stdout.contains("node-0002\n"), "{out:?}");
    assert!(out.stdout.contains("node-0007\n"), "{out:?}");
    assert!(
        out.stdout.contains("Finished processing 2 / 3 hosts"),
        "{out:?}"
    );
    let Some((_, silent)) = out.stdout.split_once("No response from:") else {
        panic!("no No response from: section\n{out:?}");
    };
    assert_eq!(
        silent.split_whitespace().collect::<Vec<_>>(),
        ["ghost"],
        "{out:?}"
    );
    assert!(
        out.stderr.lines().all(|l| l.contains("INSECURE MODE")),
        "only the insecure-mode warning on stderr: {out:?}"
    );

    let out = rpc_ping(
        url,
        &[
            "--discovery-method",
            "flatfile",
            "--nodes",
            three.to_str().unwrap(),
            "-t",
            "2s",
            "-j",
        ],
    );
    out.assert_exit(2);
    assert_eq!(senders(&out), ["node-0002", "node-0007"], "{out:?}");

    for method in ["--discovery-method", "--dm"] {
        let out = Cmd::mco()
            .args([
                "rpc", "rpcutil", "ping", "--nats", url, "-j", method, "stdin",
            ])
            .stdin("node-0005\n\n# a comment\nnode-0001\nnode-0005\n")
            .run();
        assert_eq!(fleet_senders(&out), ["node-0001", "node-0005"], "{out:?}");
    }

    // A missing nodes file is reported before any broker is tried.
    let absent = dir.join("absent.txt");
    let out = Cmd::mco()
        .args([
            "rpc",
            "rpcutil",
            "ping",
            "--nats",
            "nats://127.0.0.1:1",
            "--nodes",
        ])
        .arg(absent.to_str().unwrap())
        .run();
    out.assert_exit(1);
    assert!(out.stderr.contains("absent.txt"), "{out:?}");
    assert!(!out.stderr.contains("127.0.0.1:1"), "{out:?}");

    // Literal identities need no discovery, even with no time for it.
    let out = rpc_ping(
        url,
        &["-I", "node-0003", "-I", "node-0009", "--dt", "0s", "-j"],
    );
    assert_eq!(fleet_senders(&out), ["node-0003", "node-0009"], "{out:?}");
}

fn filters_and_empty_matches(url: &str) {
    let out = rpc_ping(url, &["-F", "fleet_index<5", "-j"]);
    assert_eq!(fleet_senders(&out), fleet_ids()[..5], "{out:?}");

    let out = rpc_ping(url, &["-F", "fleet_index=99", "--dt", "1s"]);
    out.assert_exit(1);
    out.assert_stdout_eq("No request sent, we did not discover any nodes.\n");

    let out = rpc_ping(url, &["-F", "fleet_index=99", "--dt", "1s", "-j"]);
    out.assert_exit(1);
    assert!(!out.stdout.contains("sender"), "{out:?}");
}

#[test]
fn batches_limits_and_discovery_sources() {
    let nats = NatsServer::start();
    let url = nats.url();
    let _fleet = Responder::start(&nats, ResponderSpec::new("node").fleet(10));
    let dir = tempfile::tempdir().unwrap();
    let all_file = dir.path().join("all.txt");
    let fleet = fleet_ids();
    write_nodes_file(
        &all_file,
        &fleet.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    batches_reach_every_node_once(&url, all_file.to_str().unwrap());
    limits(&url);
    direct_sources(&url, dir.path());
    filters_and_empty_matches(&url);
}

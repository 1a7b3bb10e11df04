//! `--retry N`: the silent nodes are asked again, each time with a new signed request, and the
//! output gives every node's final state; the exit code stays MCollective's.

use std::time::Duration;

use futures::StreamExt;
use mco_tests::{eventually_async, ResponderSpec, SecureCollective};
use serde_json::Value;

fn states(out: &mco_tests::Output) -> Vec<(String, String, u64)> {
    let rows: Vec<Value> =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    rows.iter()
        .map(|r| {
            (
                r["sender"].as_str().unwrap_or_default().to_string(),
                r["state"].as_str().unwrap_or_default().to_string(),
                r["tries"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn silent_nodes_are_asked_again_and_every_node_gets_a_final_state() {
    let mut c = SecureCollective::builder()
        .node(ResponderSpec::new("r1"))
        .node(ResponderSpec::new("r2"))
        .node(ResponderSpec::new("r3"))
        .start();
    // r3 is stopped: it takes requests off the wire no more, and answers none.
    assert!(c.responder_mut("r3").child.signal(libc::SIGSTOP));
    let out = c
        .mco("alice")
        .args(["rpc", "rpcutil", "ping", "-I", "r1", "-I", "r2", "-I", "r3"])
        .args([
            "-t",
            "500ms",
            "--retry",
            "2",
            "--retry-delay",
            "100ms",
            "-j",
        ])
        .run();
    assert_eq!(
        out.status, 2,
        "MCollective's exit code for a silent node: {out:?}"
    );
    assert_eq!(
        states(&out),
        vec![
            ("r1".to_string(), "replied".to_string(), 1),
            ("r2".to_string(), "replied".to_string(), 1),
            ("r3".to_string(), "no_reply".to_string(), 3),
        ]
    );
    let text = c
        .mco("alice")
        .args(["rpc", "rpcutil", "ping", "-I", "r1", "-I", "r3"])
        .args(["-t", "500ms", "--retry", "1", "--retry-delay", "100ms"])
        .run();
    assert!(
        text.stdout.contains("No reply after 2 tries: r3"),
        "{text:?}"
    );

    // A node that comes back answers a re-send, which is a request of its own: watching r3's
    // subject as r3, the test lets it go on once two requests have reached it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let spy = rt.block_on(async { c.connect(Some("r3")).await.unwrap() });
    let mut sub = rt
        .block_on(spy.client.subscribe("mcollective.node.r3"))
        .unwrap();
    rt.block_on(spy.client.flush()).unwrap();
    let call = c
        .mco("alice")
        .args(["rpc", "rpcutil", "ping", "-I", "r1", "-I", "r3"])
        .args(["-t", "1s", "--retry", "30", "--retry-delay", "200ms", "-j"]);
    let running = std::thread::spawn(move || call.run());
    let seen = rt.block_on(async {
        let mut payloads = Vec::new();
        eventually_async(Duration::from_secs(30), "two requests for r3", || {
            let got = futures::FutureExt::now_or_never(sub.next()).flatten();
            if let Some(m) = got {
                payloads.push(m.payload);
            }
            let n = payloads.len();
            async move { n >= 2 }
        })
        .await;
        payloads
    });
    assert_ne!(seen[0], seen[1], "a re-send is a new request");
    assert!(c.responder_mut("r3").child.signal(libc::SIGCONT));
    let out = running.join().unwrap();
    assert_eq!(out.status, 0, "{out:?}");
    let got = states(&out);
    assert_eq!(got[0], ("r1".to_string(), "replied".to_string(), 1));
    assert_eq!(got[1].0, "r3");
    assert_eq!(got[1].1, "replied");
    assert!(got[1].2 >= 2, "r3 answered a re-send: {got:?}");
}

#[test]
fn a_node_named_but_not_in_the_registry_is_not_discovered() {
    let c = SecureCollective::builder()
        .inventory(&["alice"])
        .node(ResponderSpec::new("d1"))
        .start();
    mco_tests::eventually(Duration::from_secs(20), "d1 to register", || {
        c.mco("alice")
            .args(["find", "--dm", "inventory"])
            .run()
            .stdout
            .trim()
            == "d1"
    });
    let out = c
        .mco("alice")
        .args([
            "rpc",
            "rpcutil",
            "ping",
            "--dm",
            "inventory",
            "-I",
            "d1",
            "-I",
            "gone",
        ])
        .args(["-t", "2s", "--retry", "1", "--retry-delay", "100ms", "-j"])
        .run();
    assert_eq!(
        states(&out),
        vec![
            ("d1".to_string(), "replied".to_string(), 1),
            ("gone".to_string(), "not_discovered".to_string(), 0),
        ],
        "{out:?}"
    );
}

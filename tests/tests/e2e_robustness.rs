//! The responder against bad input and a bad world: garbage, truncated,
//! oversized, expired and wrong-version messages published straight onto its
//! subjects; a broker restart; SIGHUP and SIGTERM; a bad config file. And
//! the client when the broker goes away in the middle of a call, or before
//! a batch of it is sent.

use std::process::Command;
use std::time::Duration;

use mco_core::wire::{now_ms, Envelope, Kind, RequestBody};
use mco_core::{subject, Filter};
use mco_tests::{bin_path, eventually, mco, ChildGuard, NatsServer, Responder, ResponderSpec};
use serde_json::Value;

fn request(collective: &str, ttl_s: u32, time_ms: u64) -> RequestBody {
    RequestBody {
        id: mco_core::wire::new_request_id(),
        sender: "test".into(),
        caller: "user:test".into(),
        collective: collective.into(),
        agent: "rpcutil".into(),
        action: "ping".into(),
        data: Default::default(),
        filter: Filter::default(),
        ttl_s,
        time_ms,
        // Unbound, as protocol v1 sent it: an insecure node still answers.
        target: None,
        reply_to: None,
    }
}

fn stats(url: &str, id: &str) -> Value {
    let out = mco([
        "rpc",
        "rpcutil",
        "daemon_stats",
        "--nats",
        url,
        "-I",
        id,
        "-j",
    ]);
    out.assert_success();
    out.stdout_json()[0]["data"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_messages_are_counted_and_dropped_and_the_node_keeps_serving() {
    let nats = NatsServer::start();
    let url = nats.url();
    let r = Responder::start(&nats, ResponderSpec::new("target").max_payload(64 * 1024));
    let client = nats.client().await;
    let node = subject::node("mcollective", "target");
    let bcast = subject::broadcast("mcollective", "rpcutil");
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();

    let good =
        Envelope::unsigned(Kind::Request, request("mcollective", 60, now_ms()).encode()).encode();
    let mut v2 = Envelope::unsigned(Kind::Request, request("mcollective", 60, now_ms()).encode());
    v2.v = 9;
    let expired = Envelope::unsigned(
        Kind::Request,
        request("mcollective", 5, now_ms() - 60_000).encode(),
    )
    .encode();
    let future = Envelope::unsigned(
        Kind::Request,
        request("mcollective", 5, now_ms() + 60_000).encode(),
    )
    .encode();
    let wrong_coll =
        Envelope::unsigned(Kind::Request, request("other", 60, now_ms()).encode()).encode();
    let a_reply =
        Envelope::unsigned(Kind::Reply, request("mcollective", 60, now_ms()).encode()).encode();
    let body_garbage = Envelope::unsigned(Kind::Request, b"\x93\x01\x02".to_vec()).encode();
    let mut big = request("mcollective", 60, now_ms());
    big.data
        .insert("pad".into(), Value::String("x".repeat(100 * 1024)));
    let oversized = Envelope::unsigned(Kind::Request, big.encode()).encode();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("undecodable", b"not msgpack at all".to_vec()),
        ("undecodable", Vec::new()),
        ("undecodable", good[..good.len() / 2].to_vec()),
        ("undecodable", body_garbage),
        ("bad_version", v2.encode()),
        ("expired", expired),
        ("expired", future),
        ("wrong_collective", wrong_coll),
        ("wrong_kind", a_reply),
        ("oversized", oversized),
    ];
    for (_, payload) in &cases {
        for s in [&node, &bcast] {
            client
                .publish_with_reply(s.clone(), inbox.clone(), payload.clone().into())
                .await
                .unwrap();
        }
    }
    client.flush().await.unwrap();

    // None of those got a reply.
    let got = tokio::time::timeout(
        Duration::from_millis(300),
        futures::StreamExt::next(&mut replies),
    )
    .await;
    assert!(got.is_err(), "a bad message was answered: {got:?}");

    let s = stats(&url, "target");
    for (why, _) in &cases {
        let expected = cases.iter().filter(|(w, _)| w == why).count() as u64 * 2;
        assert_eq!(s["dropped"][why], expected, "{why}: {s}");
    }

    // A request with no reply subject is dropped too.
    client
        .publish(node.clone(), good.clone().into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    eventually(Duration::from_secs(10), "no_reply_to to be counted", || {
        stats(&url, "target")["dropped"]["no_reply_to"] == 1
    });

    // And the node still answers a well-formed request.
    client
        .publish_with_reply(node.clone(), inbox.clone(), good.into())
        .await
        .unwrap();
    let msg = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut replies),
    )
    .await
    .expect("a reply to a good request")
    .unwrap();
    let env = Envelope::decode(&msg.payload, 1 << 20, Kind::Reply).unwrap();
    assert_eq!(env.reply().unwrap().sender, "target");
    drop(r);
}

#[test]
fn a_broker_restart_does_not_kill_the_responder() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let mut r = Responder::start(&nats, ResponderSpec::new("survivor").fleet(3));
    nats.restart();
    assert!(r.child.is_running(), "the responder died with the broker");
    // It reconnects, resubscribes and serves again.
    r.wait_ready(&nats);
    let out = mco(["rpc", "rpcutil", "ping", "--nats", &url, "-j"]);
    out.assert_success();
    assert_eq!(out.stdout_json().as_array().unwrap().len(), 3, "{out:?}");
}

#[test]
fn sighup_reloads_facts_and_sigterm_stops_cleanly() {
    let nats = NatsServer::start();
    let url = nats.url();
    let mut r = Responder::start(
        &nats,
        ResponderSpec::new("reloader").facts(serde_json::json!({"stage": "one"})),
    );
    let value = |url: &str| {
        let out = mco([
            "rpc",
            "rpcutil",
            "get_fact",
            "fact=stage",
            "--nats",
            url,
            "-I",
            "reloader",
            "-j",
        ]);
        out.stdout_json()[0]["data"]["value"].clone()
    };
    assert_eq!(value(&url), "one");
    std::fs::write(r.dir().join("facts.json"), r#"{"stage": "two"}"#).unwrap();
    assert!(r.child.signal(libc::SIGHUP));
    eventually(
        Duration::from_secs(10),
        "facts to be re-read on SIGHUP",
        || value(&url) == "two",
    );

    assert!(r.child.signal(libc::SIGTERM));
    let status = r
        .child
        .wait_exit(Duration::from_secs(20))
        .expect("the responder to exit on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", r.child.stderr_text());
    assert!(r.child.stderr_text().contains("responder stopped"));
}

#[test]
fn a_bad_config_lists_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "identiti = \"x\"\ncollectives = [\"a.b\"]\n[nats]\nservers = \"nats://x\"\n[facts]\nrefresh = \"soon\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(bin_path("mco-responder"));
    cmd.arg("--config").arg(&cfg);
    let mut child = ChildGuard::spawn(cmd);
    let status = child.wait_exit(Duration::from_secs(20)).expect("exit");
    assert_eq!(status.code(), Some(64));
    let err = child.stderr_text();
    for key in ["identiti", "collectives", "nats.servers", "facts.refresh"] {
        assert!(
            err.contains(&format!("{}: {key}:", cfg.display())),
            "{key} missing in:\n{err}"
        );
    }

    // A missing file and secure mode (not yet available) are refused too.
    let mut cmd = Command::new(bin_path("mco-responder"));
    cmd.arg("--config").arg(dir.path().join("missing.toml"));
    let mut child = ChildGuard::spawn(cmd);
    assert_eq!(
        child
            .wait_exit(Duration::from_secs(20))
            .and_then(|s| s.code()),
        Some(64)
    );
    std::fs::write(&cfg, "identity = \"x\"\n").unwrap();
    let mut cmd = Command::new(bin_path("mco-responder"));
    cmd.arg("--config").arg(&cfg);
    let mut child = ChildGuard::spawn(cmd);
    assert_eq!(
        child
            .wait_exit(Duration::from_secs(20))
            .and_then(|s| s.code()),
        Some(64)
    );
    assert!(
        child.stderr_text().contains("insecure"),
        "{}",
        child.stderr_text()
    );

    // The client reports a bad config the same way.
    std::fs::write(&cfg, "[discovery]\ntimeout = \"2 weeks\"\nwindw = 1\n").unwrap();
    let out = mco(["find", "--config", cfg.to_str().unwrap()]);
    out.assert_exit(64);
    assert!(
        out.stderr.contains("discovery.windw") && out.stderr.contains("discovery.timeout"),
        "{out:?}"
    );
}

/// A subscriber on `node`'s own subject, to see when a client's request to
/// it has reached the broker (the client is then connected and waiting).
fn watch_requests_to(
    rt: &tokio::runtime::Runtime,
    nats: &NatsServer,
    node: &str,
) -> (async_nats::Client, async_nats::Subscriber) {
    rt.block_on(async {
        let c = nats.client().await;
        let sub = c
            .subscribe(subject::node("mcollective", node))
            .await
            .unwrap();
        c.flush().await.unwrap();
        (c, sub)
    })
}

/// Waits (with a deadline) for the first request `watch_requests_to` sees.
fn first_request(rt: &tokio::runtime::Runtime, requests: &mut async_nats::Subscriber) {
    use futures::StreamExt;
    let seen =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), requests.next()).await });
    assert!(
        matches!(seen, Ok(Some(_))),
        "the request never reached the broker"
    );
}

#[test]
fn the_client_says_when_the_broker_goes_away_mid_call() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_watcher, mut requests) = watch_requests_to(&rt, &nats, "ghost");
    let call = std::thread::spawn(move || {
        mco([
            "rpc", "rpcutil", "ping", "--nats", &url, "-I", "ghost", "-t", "4s",
        ])
    });
    first_request(&rt, &mut requests);
    nats.stop();
    let out = call.join().unwrap();
    out.assert_exit(4);
    assert!(
        out.stderr
            .contains("warning: the connection to the broker was lost during the call"),
        "{out:?}"
    );
    assert!(out.stdout.contains("No response from:"), "{out:?}");
}

#[test]
fn a_broker_gone_before_a_batch_cannot_hold_the_call_past_its_timeout() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let _alpha = Responder::start(&nats, ResponderSpec::new("alpha"));
    let dir = tempfile::tempdir().unwrap();
    let nodes = dir.path().join("nodes.txt");
    std::fs::write(&nodes, "alpha\nzeta\n").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The first batch's request is seen here; the second batch goes out two
    // seconds later, when the broker is gone.
    let (_watcher, mut requests) = watch_requests_to(&rt, &nats, "alpha");
    let nodes_arg = nodes.to_str().unwrap().to_string();
    let call = std::thread::spawn(move || {
        mco([
            "rpc",
            "rpcutil",
            "ping",
            "--nats",
            &url,
            "--nodes",
            &nodes_arg,
            "--batch",
            "1",
            "--batch-sleep",
            "2s",
            "-t",
            "3s",
        ])
    });
    first_request(&rt, &mut requests);
    // Gone: the client keeps trying to reconnect, and a request published
    // meanwhile waits for a connection that never comes back.
    nats.stop();
    let out = call.join().unwrap();
    out.assert_exit(1);
    assert!(
        out.stderr
            .contains("the broker did not take the request within 3.0s"),
        "{out:?}"
    );
}

//! The broker configuration from `mco_pki::broker_config` against a real nats-server: TLS
//! with client certificates from the collective CA, each mapped to its identity
//! (`CN=user:alice`, `CN=node:web1`) and held to its own subjects.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use mco_core::subject;
use mco_pki::{broker_config, BrokerOptions, Ca, CaOptions, IssueOptions, Kind};
use mco_tests::NatsServer;
use tokio::sync::mpsc;
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(10);
const C: &str = "mcollective";

/// A CA with a broker certificate for 127.0.0.1, users alice and bob, node web1, and carol, a user
/// the broker configuration leaves out; a nats-server running that configuration.
struct Broker {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    server: NatsServer,
}

fn start_broker() -> Broker {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let ca = Ca::init(&dir, &CaOptions::default()).unwrap();
    let broker = IssueOptions {
        ips: vec!["127.0.0.1".parse().unwrap()],
        ..IssueOptions::default()
    };
    ca.issue("broker", Kind::Broker, &broker).unwrap();
    for (name, kind) in [
        ("alice", Kind::User),
        ("bob", Kind::User),
        ("carol", Kind::User),
        ("web1", Kind::Node),
    ] {
        ca.issue(name, kind, &IssueOptions::default()).unwrap();
    }
    let opts = BrokerOptions {
        server_cert: dir.join("broker.pem"),
        server_key: dir.join("broker.key"),
        collectives: vec![C.to_string()],
        nodes: vec!["web1".to_string()],
        users: vec!["alice".to_string(), "bob".to_string()],
        ..BrokerOptions::default()
    };
    let config = broker_config(&dir, &opts).unwrap();
    let server = NatsServer::builder().config_text(config).start();
    Broker {
        _tmp: tmp,
        dir,
        server,
    }
}

/// Connects over TLS trusting `ca_dir`'s CA, presenting `who`'s certificate from `cert_dir`
/// (none if `who` is `None`); server errors go to the returned channel.
async fn connect(
    server: &NatsServer,
    ca_dir: &Path,
    cert_dir: &Path,
    who: Option<&str>,
) -> Result<(async_nats::Client, mpsc::Receiver<String>), String> {
    let (tx, rx) = mpsc::channel(64);
    let mut opts = async_nats::ConnectOptions::new()
        .add_root_certificates(ca_dir.join("ca.pem"))
        .require_tls(true)
        .connection_timeout(STEP)
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.try_send(e.to_string());
                }
            }
        });
    if let Some(name) = who {
        opts = opts.add_client_certificate(
            cert_dir.join(format!("{name}.pem")),
            cert_dir.join(format!("{name}.key")),
        );
    }
    let url = format!("tls://127.0.0.1:{}", server.port());
    match timeout(STEP, opts.connect(url)).await {
        Ok(Ok(client)) => Ok((client, rx)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

async fn connected(broker: &Broker, who: &str) -> (async_nats::Client, mpsc::Receiver<String>) {
    match connect(&broker.server, &broker.dir, &broker.dir, Some(who)).await {
        Ok(c) => c,
        Err(e) => panic!(
            "{who} cannot connect: {e}\nserver log:\n{}",
            broker.server.log_text()
        ),
    }
}

/// Waits for a server error mentioning `subject`, skipping others.
async fn violation_for(events: &mut mpsc::Receiver<String>, subject: &str) -> String {
    let wait = async {
        while let Some(e) = events.recv().await {
            if e.contains(subject) {
                return e;
            }
        }
        panic!("event channel closed");
    };
    timeout(STEP, wait)
        .await
        .unwrap_or_else(|_| panic!("no server error about {subject} within {STEP:?}"))
}

/// Publishes a request on `subject` from `client` until `sub` receives one. The subscriber's
/// SUB travels on another connection, so the server may not know it when the first request
/// arrives; `flush` only empties the client's buffer.
async fn deliver(
    client: &async_nats::Client,
    subject: &str,
    reply_to: &str,
    sub: &mut async_nats::Subscriber,
) -> async_nats::Message {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        client
            .publish_with_reply(
                subject.to_string(),
                reply_to.to_string(),
                Bytes::from_static(b"ping"),
            )
            .await
            .unwrap();
        client.flush().await.unwrap();
        if let Ok(Some(msg)) = timeout(mco_tests::poll::POLL_INTERVAL, sub.next()).await {
            return msg;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no request on {subject} within {STEP:?}"
        );
    }
}

#[tokio::test]
async fn a_caller_and_a_responder_exchange_a_request_and_its_reply() {
    let broker = start_broker();
    let (node, mut node_errors) = connected(&broker, "web1").await;
    let (user, mut user_errors) = connected(&broker, "alice").await;

    let broadcast = subject::broadcast(C, "rpcutil");
    let mut requests = node.subscribe(broadcast.clone()).await.unwrap();
    let direct = subject::node(C, "web1");
    let mut direct_requests = node.subscribe(direct.clone()).await.unwrap();
    timeout(STEP, node.flush()).await.unwrap().unwrap();
    let reply_to = subject::reply(C, "user:alice", "req1");
    let mut replies = user.subscribe(reply_to.clone()).await.unwrap();
    timeout(STEP, user.flush()).await.unwrap().unwrap();

    for (target, stream) in [(&broadcast, &mut requests), (&direct, &mut direct_requests)] {
        let request = deliver(&user, target, &reply_to, stream).await;
        assert_eq!(request.payload.as_ref(), b"ping");
        let back = request.reply.expect("a reply subject");
        assert_eq!(back.as_str(), reply_to);
        node.publish(back, Bytes::from_static(b"pong"))
            .await
            .unwrap();
        timeout(STEP, node.flush()).await.unwrap().unwrap();
        // A request the server had no subscriber for yet answers with a "no responders" status
        // on the reply subject; the node's reply follows.
        let reply = loop {
            let msg = timeout(STEP, replies.next()).await.unwrap().unwrap();
            match msg.status {
                Some(status) if status == async_nats::StatusCode::NO_RESPONDERS => continue,
                _ => break msg,
            }
        };
        assert_eq!(reply.payload.as_ref(), b"pong");
    }
    assert!(
        node_errors.try_recv().is_err(),
        "the node was refused something"
    );
    assert!(
        user_errors.try_recv().is_err(),
        "the user was refused something"
    );
}

#[tokio::test]
async fn a_caller_cannot_read_another_callers_replies() {
    let broker = start_broker();
    let (alice, mut errors) = connected(&broker, "alice").await;
    let own = subject::reply_wildcard(C, "user:alice");
    let _mine = alice.subscribe(own).await.unwrap();
    let bobs = subject::reply_wildcard(C, "user:bob");
    let _theirs = alice.subscribe(bobs.clone()).await.unwrap();
    let error = violation_for(&mut errors, &bobs).await;
    assert!(
        error.to_lowercase().contains("permissions violation"),
        "{error}"
    );
    // The caller cannot pose as a responder either.
    let fake_reply = subject::reply(C, "user:bob", "x");
    alice
        .publish(fake_reply.clone(), Bytes::new())
        .await
        .unwrap();
    let error = violation_for(&mut errors, &fake_reply).await;
    assert!(
        error.to_lowercase().contains("permissions violation"),
        "{error}"
    );
}

#[tokio::test]
async fn a_responder_hears_only_its_own_subjects() {
    let broker = start_broker();
    let (node, mut errors) = connected(&broker, "web1").await;
    let other = subject::node(C, "web2");
    let _sub = node.subscribe(other.clone()).await.unwrap();
    let error = violation_for(&mut errors, &other).await;
    assert!(
        error.to_lowercase().contains("permissions violation"),
        "{error}"
    );
    let broadcast = subject::broadcast(C, "rpcutil");
    node.publish(broadcast.clone(), Bytes::new()).await.unwrap();
    let error = violation_for(&mut errors, &broadcast).await;
    assert!(
        error.to_lowercase().contains("permissions violation"),
        "{error}"
    );
}

#[tokio::test]
async fn only_listed_certificates_from_the_ca_connect() {
    let broker = start_broker();
    let none = connect(&broker.server, &broker.dir, &broker.dir, None).await;
    assert!(none.is_err(), "a client without a certificate connected");

    let unlisted = connect(&broker.server, &broker.dir, &broker.dir, Some("carol")).await;
    let err = unlisted.expect_err("a certificate not in the configuration connected");
    assert!(err.to_lowercase().contains("authorization"), "{err}");

    let other = tempfile::tempdir().unwrap();
    let foreign = Ca::init(other.path(), &CaOptions::default()).unwrap();
    foreign
        .issue("alice", Kind::User, &IssueOptions::default())
        .unwrap();
    let forged = connect(&broker.server, &broker.dir, other.path(), Some("alice")).await;
    assert!(forged.is_err(), "a certificate from another CA connected");

    // The same name from the right CA does connect: the refusals above are about the certificates.
    connected(&broker, "alice").await;
}

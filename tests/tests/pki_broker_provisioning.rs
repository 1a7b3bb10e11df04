//! The brokers' configurations for provisioning, run by a real nats-server and attacked the way a
//! holder of the bootstrap token (it ships in every image) would:
//!
//! - the provisioning broker (`mco pki broker-config --provisioning`) admits the token only as
//!   user `provisioning`, and only to the `provisioning.>` subjects: no JetStream API, no
//!   key-value bucket, no system account, no main collective;
//! - the main broker with `--registry` lets the named operators, and only them, use the registry
//!   bucket, and nothing else of JetStream.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use mco_tests::{Cmd, NatsServer};
use tokio::sync::mpsc;
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(10);
const TOKEN: &str = "a-bootstrap-token-of-32-characters";

fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp paths").to_string()
}

/// `mco pki --dir DIR ARGS`, which must succeed; its standard output.
fn pki(dir: &Path, args: &[&str]) -> String {
    let out = Cmd::mco().arg("pki").arg("--dir").arg(dir).args(args).run();
    out.assert_success();
    out.stdout
}

/// A CA with a broker certificate and users alice and bob, made with the real `mco pki`.
fn make_pki(root: &Path) -> PathBuf {
    let dir = root.join("pki");
    pki(&dir, &["ca", "init"]);
    pki(
        &dir,
        &["issue", "broker", "--kind", "broker", "--ip", "127.0.0.1"],
    );
    for u in ["alice", "bob"] {
        pki(&dir, &["issue", u, "--kind", "user"]);
    }
    pki(&dir, &["issue", "web1", "--kind", "node"]);
    dir
}

/// Connects over TLS with `auth`; server errors go to the channel.
async fn connect(
    server: &NatsServer,
    pki: &Path,
    auth: Auth<'_>,
) -> Result<(async_nats::Client, mpsc::Receiver<String>), String> {
    let (tx, rx) = mpsc::channel(64);
    let mut opts = async_nats::ConnectOptions::new()
        .add_root_certificates(pki.join("ca.pem"))
        .require_tls(true)
        .connection_timeout(STEP)
        .max_reconnects(Some(1))
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.try_send(e.to_string());
                }
            }
        });
    opts = match auth {
        Auth::User(user, password) => opts.user_and_password(user.into(), password.into()),
        Auth::Token(t) => opts.token(t.into()),
        Auth::Cert(name) => opts.add_client_certificate(
            pki.join(format!("{name}.pem")),
            pki.join(format!("{name}.key")),
        ),
    };
    let url = format!("tls://127.0.0.1:{}", server.port());
    match timeout(STEP, opts.connect(url)).await {
        Ok(Ok(client)) => Ok((client, rx)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

enum Auth<'a> {
    User(&'a str, &'a str),
    Token(&'a str),
    Cert(&'a str),
}

/// Waits for a permissions violation naming `subject`.
async fn violation_for(events: &mut mpsc::Receiver<String>, subject: &str) {
    let wait = async {
        while let Some(e) = events.recv().await {
            if e.contains(subject) && e.to_lowercase().contains("permissions violation") {
                return;
            }
        }
        panic!("event channel closed");
    };
    timeout(STEP, wait)
        .await
        .unwrap_or_else(|_| panic!("no permissions violation for {subject} within {STEP:?}"));
}

fn provisioning_broker(root: &Path, pki_dir: &Path) -> NatsServer {
    let token = root.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let config = pki(
        pki_dir,
        &[
            "broker-config",
            "--provisioning",
            "--token-file",
            &s(&token),
        ],
    );
    assert!(
        !config.contains("jetstream"),
        "JetStream must be off on the provisioning broker:\n{config}"
    );
    NatsServer::builder().config_text(config).start()
}

#[tokio::test]
async fn the_token_reaches_the_provisioning_subjects_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let pki_dir = make_pki(tmp.path());
    let server = provisioning_broker(tmp.path(), &pki_dir);

    // The token as a plain NATS token, a wrong password or another user name: refused.
    for bad in [
        Auth::Token(TOKEN),
        Auth::User("provisioning", "not-the-token-at-all-but-long"),
        Auth::User("admin", TOKEN),
    ] {
        assert!(connect(&server, &pki_dir, bad).await.is_err());
    }

    let (client, mut errors) = connect(&server, &pki_dir, Auth::User("provisioning", TOKEN))
        .await
        .expect("the token holder connects as user provisioning");
    // What provisioning needs works: a subscription and a publish on provisioning subjects.
    let mut sub = client
        .subscribe("provisioning.node.web9".to_string())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        client
            .publish(
                "provisioning.node.web9".to_string(),
                Bytes::from_static(b"hi"),
            )
            .await
            .unwrap();
        client.flush().await.unwrap();
        if let Ok(Some(m)) = timeout(mco_tests::poll::POLL_INTERVAL, sub.next()).await {
            assert_eq!(&m.payload[..], b"hi");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no delivery");
    }
    // JetStream's API, a registry bucket, the system account and the main collective: refused.
    for subject in [
        "$JS.API.INFO",
        "$JS.API.STREAM.CREATE.KV_expected",
        "$KV.expected.rogue-01",
        "$SYS.REQ.SERVER.PING",
        "mcollective.broadcast.agent.rpcutil",
    ] {
        client
            .publish(subject.to_string(), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        client.flush().await.unwrap();
        violation_for(&mut errors, subject).await;
    }
    for subject in ["$KV.>", "$JS.>", "mcollective.>", "_INBOX.>"] {
        let _s = client.subscribe(subject.to_string()).await.unwrap();
        client.flush().await.unwrap();
        violation_for(&mut errors, subject).await;
    }
}

#[tokio::test]
async fn only_registry_users_reach_the_registry_bucket() {
    let tmp = tempfile::tempdir().unwrap();
    let pki_dir = make_pki(tmp.path());
    let js = tmp.path().join("jetstream");
    let config = pki(
        &pki_dir,
        &[
            "broker-config",
            "--collective",
            "mcollective",
            "--registry",
            "expected",
            "--registry-user",
            "alice",
            "--jetstream-dir",
            &s(&js),
        ],
    );
    let server = NatsServer::builder().config_text(config).start();

    // alice, an operator: the bucket is created and written, and read back.
    let (alice, _) = connect(&server, &pki_dir, Auth::Cert("alice"))
        .await
        .expect("alice connects");
    let kv = mco_provisioner::registry::ExpectedNodes::open(alice.clone(), "expected", STEP)
        .await
        .expect("alice opens (creates) the registry bucket");
    let ack = alice
        .request(
            "$KV.expected.web-01".to_string(),
            Bytes::from_static(b"booted"),
        )
        .await
        .expect("JetStream acknowledges alice's put");
    let ack: serde_json::Value = serde_json::from_slice(&ack.payload).unwrap();
    assert!(ack.get("error").is_none(), "{ack}");
    assert_eq!(kv.get("web-01").await.unwrap(), Some(b"booted".to_vec()));
    // Another stream is beyond even alice.
    let (alice2, mut alice_errors) = connect(&server, &pki_dir, Auth::Cert("alice"))
        .await
        .unwrap();
    alice2
        .publish(
            "$JS.API.STREAM.CREATE.OTHER".to_string(),
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    alice2.flush().await.unwrap();
    violation_for(&mut alice_errors, "$JS.API.STREAM.CREATE.OTHER").await;

    // bob, a user but not a registry user, and web1, a node: refused.
    for who in ["bob", "web1"] {
        let (c, mut errors) = connect(&server, &pki_dir, Auth::Cert(who))
            .await
            .unwrap_or_else(|e| panic!("{who} connects: {e}"));
        c.publish(
            "$KV.expected.rogue-01".to_string(),
            Bytes::from_static(b"yes"),
        )
        .await
        .unwrap();
        c.flush().await.unwrap();
        violation_for(&mut errors, "$KV.expected.rogue-01").await;
        c.publish("$JS.API.STREAM.INFO.KV_expected".to_string(), Bytes::new())
            .await
            .unwrap();
        c.flush().await.unwrap();
        violation_for(&mut errors, "$JS.API.STREAM.INFO.KV_expected").await;
    }
    assert_eq!(kv.get("rogue-01").await.unwrap(), None);
}

#[test]
fn the_provisioning_broker_config_wants_a_broker_certificate_and_a_strong_token() {
    let tmp = tempfile::tempdir().unwrap();
    let pki_dir = make_pki(tmp.path());
    let token = tmp.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let run = |cert: &str, token: &Path| {
        Cmd::mco()
            .arg("pki")
            .arg("--dir")
            .arg(&pki_dir)
            .args(["broker-config", "--provisioning", "--server-cert", cert])
            .arg("--token-file")
            .arg(token)
            .run()
    };
    // A user's certificate cannot serve TLS for the broker.
    let out = run("alice", &token);
    assert_ne!(out.status, 0, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    // A guessable token is refused.
    let weak = tmp.path().join("weak");
    std::fs::write(&weak, "s3cret\n").unwrap();
    let out = run("broker", &weak);
    assert_ne!(out.status, 0, "{out:?}");
    assert!(out.stderr.contains("shorter than 16"), "{out:?}");
    // And the collective options do not mix with it.
    let out = Cmd::mco()
        .arg("pki")
        .arg("--dir")
        .arg(&pki_dir)
        .args([
            "broker-config",
            "--provisioning",
            "--collective",
            "mcollective",
        ])
        .arg("--token-file")
        .arg(&token)
        .run();
    assert_ne!(out.status, 0, "{out:?}");
    assert!(run("broker", &token).status == 0);
}

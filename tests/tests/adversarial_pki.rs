//! The PKI attacked: real `mco pki`, real nats-servers, real responders and the real `mco`.
//!
//! - A node's certificate (its DNS SAN is its name) served as a broker's: the client refuses the
//!   handshake, because only broker certificates have `serverAuth`.
//! - Revocation fails closed: a responder whose configured CRL is missing does not start; one
//!   whose CRL is deleted, corrupted or replaced by an older one keeps the CRL in force (a revoked
//!   caller stays refused), says so and counts it; a newer CRL is taken.
//! - A revoked certificate of a name issued again: `broker-config --pin` keeps it off the bus,
//!   while the new holder, the responder and the client connect.
//! - A CSR with a weak (small-order) Ed25519 key is not signed.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use mco_tests::secure::COLLECTIVE as C;
use mco_tests::{
    eventually, mco, tls_connect, Cmd, NatsServer, Output, Responder, ResponderSpec,
    SecureCollective,
};
use serde_json::Value;

/// Bound on every wait that is expected to succeed.
const STEP: Duration = Duration::from_secs(30);

fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp paths").to_string()
}

#[track_caller]
fn openssl(args: &[&str]) -> Output {
    let out = Cmd::new("openssl").args(args).run();
    out.assert_success();
    out
}

#[track_caller]
fn pki(dir: &Path, args: &[&str]) -> Output {
    let out = Cmd::mco().arg("pki").arg("--dir").arg(dir).args(args).run();
    out.assert_success();
    out
}

/// A responder `[security]` table for `identity`'s certificate in `pki`, with `crl` as its CRL.
fn security_table(pki: &Path, policies: &Path, crl: &Path) -> String {
    format!(
        "ca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\ncrl = {crl:?}\n\
         policy_dir = {pol:?}\ndefault_policy = \"deny\"\n",
        ca = s(&pki.join("ca.pem")),
        cert = s(&pki.join("{identity}.pem")),
        key = s(&pki.join("{identity}.key")),
        crl = s(crl),
        pol = s(policies),
    )
}

/// `mco ping -I node` as `user`; whether `node` answered.
fn answers(c: &SecureCollective, user: &str, node: &str) -> bool {
    let out = c.mco(user).args(["ping", "-I", node, "-t", "2s"]).run();
    out.status == 0 && out.stdout.contains(node)
}

/// The `rpcutil daemon_stats` of `node`, asked by alice.
fn stats(c: &SecureCollective, node: &str) -> serde_json::Map<String, Value> {
    c.daemon_stats("alice", &[node])
        .remove(node)
        .expect("the node's stats")
}

fn revoked_drops(c: &SecureCollective, node: &str) -> u64 {
    stats(c, node)["dropped"]["certificate_revoked"]
        .as_u64()
        .expect("a count")
}

// ---- Finding 6: every certificate could serve TLS ----

/// What `openssl x509 -text` says a certificate may be used for.
fn usages(cert: &Path) -> (bool, bool) {
    let text = openssl(&["x509", "-in", &s(cert), "-noout", "-text"]).stdout;
    (
        text.contains("TLS Web Client Authentication"),
        text.contains("TLS Web Server Authentication"),
    )
}

/// A nats-server serving TLS with `cert`/`key` to anyone, as an impostor broker would.
fn impostor(cert: &Path, key: &Path) -> NatsServer {
    NatsServer::builder()
        .config_text(format!(
            "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}\n",
            s(cert),
            s(key)
        ))
        .start()
}

#[test]
fn a_node_certificate_cannot_impersonate_the_broker() {
    // "localhost": a node whose name is the host the client dials, so that its certificate's
    // DNS SAN matches as a broker's would.
    let c = SecureCollective::builder()
        .node(ResponderSpec::new("web1"))
        .spare_node("localhost")
        .start();
    let pki = c.pki_dir();
    assert_eq!(usages(&pki.join("localhost.pem")), (true, false));
    assert_eq!(usages(&pki.join("web1.pem")), (true, false));
    assert_eq!(usages(&pki.join("alice.pem")), (true, false));
    // A broker's is also a client (routes), which no client port maps to a user.
    assert_eq!(usages(&pki.join("broker.pem")), (true, true));

    let (cert, key) = c.cert_and_key("localhost");
    let fake = impostor(&cert, &key);
    let url = format!("tls://localhost:{}", fake.port());
    let refused = c
        .mco("alice")
        .args(["--nats", &url, "ping", "-t", "1s"])
        .run();
    assert_ne!(refused.status, 0, "{refused:?}");
    assert!(
        refused.stderr.contains("cannot connect to the broker")
            && refused
                .stderr
                .contains("does not allow extended key usage for server authentication"),
        "the client refuses the handshake and says why: {refused:?}"
    );

    // The same key with the usages every certificate had before (clientAuth and serverAuth),
    // signed by the same CA: the client takes that server for the broker. So the refusal above
    // is the missing serverAuth, nothing else.
    let scratch = c.scratch();
    let ext = scratch.join("old-usages.cnf");
    fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
         extendedKeyUsage=clientAuth,serverAuth\nsubjectAltName=DNS:localhost\n",
    )
    .unwrap();
    let csr = scratch.join("old.csr");
    let old = scratch.join("old.pem");
    openssl(&[
        "req",
        "-new",
        "-key",
        &s(&key),
        "-subj",
        "/CN=node:localhost",
        "-out",
        &s(&csr),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&pki.join("ca.pem")),
        "-CAkey",
        &s(&pki.join("ca.key")),
        "-set_serial",
        "0x4242",
        "-days",
        "1",
        "-extfile",
        &s(&ext),
        "-out",
        &s(&old),
    ]);
    assert_eq!(usages(&old), (true, true));
    let old_style = impostor(&old, &key);
    let url = format!("tls://localhost:{}", old_style.port());
    let accepted = c
        .mco("alice")
        .args(["--nats", &url, "ping", "-t", "1s"])
        .run();
    assert!(
        !accepted.stderr.contains("cannot connect") && accepted.stdout.contains("No responses"),
        "a certificate with serverAuth is taken for the broker: {accepted:?}"
    );

    // The real broker, the responder and the client, all on their own certificates, still work.
    assert!(answers(&c, "alice", "web1"));
}

// ---- Finding 7: revocation failed open ----

#[test]
fn a_responder_whose_configured_crl_is_missing_does_not_start() {
    let c = SecureCollective::builder()
        .node(ResponderSpec::new("web1"))
        .spare_node("web2")
        .start();
    let crl = c.scratch().join("web2.crl");
    let spec =
        ResponderSpec::new("web2").secure(&security_table(c.pki_dir(), c.policy_dir(), &crl));
    let mut r = Responder::spawn(c.nats(), spec.clone());
    let status = r.child.wait_exit(STEP).expect("the responder exits");
    assert!(!status.success(), "{status:?}");
    let log = r.child.stderr_text();
    assert!(
        log.contains(&s(&crl)) && log.contains("the configured CRL is missing"),
        "{log}"
    );
    assert!(!answers(&c, "alice", "web2"));

    // With the CRL in place the same node starts; the others were never affected.
    fs::copy(c.pki_dir().join("ca.crl"), &crl).unwrap();
    let _r = Responder::spawn(c.nats(), spec);
    c.wait_ready(&["web2".to_string()]);
    assert!(answers(&c, "alice", "web1"));
}

#[test]
fn a_crl_that_disappears_or_goes_back_keeps_the_one_in_force() {
    let c = SecureCollective::builder()
        .user("mallory")
        .spare_node("web1")
        .start();
    let scratch = c.scratch();
    let first = scratch.join("first.crl");
    fs::copy(c.pki_dir().join("ca.crl"), &first).unwrap(); // CRL 1: nothing revoked
    c.pki(&["revoke", "mallory"]); // CRL 2: mallory revoked
    let crl = scratch.join("web1.crl");
    fs::copy(c.pki_dir().join("ca.crl"), &crl).unwrap();
    let mut r = Responder::spawn(
        c.nats(),
        ResponderSpec::new("web1").secure(&security_table(c.pki_dir(), c.policy_dir(), &crl)),
    );
    c.wait_ready(&["web1".to_string()]);
    assert_eq!(stats(&c, "web1")["crl"]["number"], "2");
    assert!(!answers(&c, "mallory", "web1"));
    let mut drops = revoked_drops(&c, "web1");
    assert!(drops >= 1);

    // Each attack on the file (files replaced whole, so that the responder's periodic look sees
    // each state once): the CRL in force stays, the refusal is logged and counted once, and
    // mallory is still refused.
    let replace = |bytes: &[u8]| {
        let tmp = scratch.join("next.crl");
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, &crl).unwrap();
    };
    let older = fs::read(&first).unwrap();
    let attacks: [(&str, &dyn Fn()); 3] = [
        ("missing", &|| fs::remove_file(&crl).unwrap()),
        ("not a CRL", &|| replace(b"garbage")),
        ("only move forward", &|| replace(&older)),
    ];
    for (n, (says, attack)) in attacks.iter().enumerate() {
        attack();
        let want = n as u64 + 1;
        eventually(STEP, "the refused CRL to be counted", || {
            stats(&c, "web1")["crl"]["refused"].as_u64() == Some(want)
        });
        assert!(r.child.stderr_text().contains(says), "{says}");
        let now = stats(&c, "web1");
        assert_eq!(now["crl"]["number"], "2", "{says}: {now:?}");
        assert!(!answers(&c, "mallory", "web1"), "{says}");
        let after = revoked_drops(&c, "web1");
        assert!(
            after > drops,
            "{says}: mallory's ping was refused as revoked"
        );
        drops = after;
        assert!(answers(&c, "alice", "web1"), "{says}");
        assert!(r.child.is_running());
    }
    let log = r.child.stderr_text();
    assert!(log.contains("refusing the CRL"), "{log}");

    // SIGHUP reads the file again: the older CRL is refused again, and still not taken.
    assert!(r.child.signal(libc::SIGHUP));
    eventually(STEP, "the older CRL to be refused again on SIGHUP", || {
        stats(&c, "web1")["crl"]["refused"] == 4
    });
    assert_eq!(stats(&c, "web1")["crl"]["number"], "2");

    // A newer CRL is taken.
    c.pki(&["crl"]); // CRL 3
    replace(&fs::read(c.pki_dir().join("ca.crl")).unwrap());
    eventually(STEP, "the newer CRL to be taken", || {
        stats(&c, "web1")["crl"]["number"] == "3"
    });
    assert_eq!(stats(&c, "web1")["crl"]["refused"], 4);
    assert!(!answers(&c, "mallory", "web1"));
    assert!(answers(&c, "alice", "web1"));
}

// ---- Finding 7: nats-server never read the CRL ----

/// A PKI made with `mco pki` where web1 was issued, revoked and issued again with a new key; the
/// old certificate and key are kept aside, as a former holder would.
struct Reissued {
    _tmp: tempfile::TempDir,
    pki: PathBuf,
    old: (PathBuf, PathBuf),
}

fn reissued() -> Reissued {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let run = |args: &[&str]| pki_in(&pki, args);
    run(&["ca", "init"]);
    run(&["issue", "broker", "--kind", "broker", "--ip", "127.0.0.1"]);
    run(&["issue", "alice", "--kind", "user"]);
    run(&["issue", "web1", "--kind", "node"]);
    let old = (
        tmp.path().join("old-web1.pem"),
        tmp.path().join("old-web1.key"),
    );
    fs::copy(pki.join("web1.pem"), &old.0).unwrap();
    fs::copy(pki.join("web1.key"), &old.1).unwrap();
    run(&["revoke", "web1"]);
    run(&["issue", "web1", "--kind", "node", "--force"]);
    Reissued {
        _tmp: tmp,
        pki,
        old,
    }
}

#[track_caller]
fn pki_in(dir: &Path, args: &[&str]) -> Output {
    pki(dir, args)
}

fn key_pin(cert: &Path) -> String {
    let out = mco(["pki", "show", &s(cert)]);
    out.assert_success();
    out.stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Key pin:"))
        .expect("a key pin line")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_keys_keep_a_revoked_certificate_of_a_reissued_name_off_the_bus() {
    let p = reissued();
    let ca = p.pki.join("ca.pem");
    let new = (p.pki.join("web1.pem"), p.pki.join("web1.key"));
    let alice = (p.pki.join("alice.pem"), p.pki.join("alice.key"));
    let open_conf = pki_in(&p.pki, &["broker-config", "--collective", C]).stdout;
    let pinned_conf = pki_in(&p.pki, &["broker-config", "--collective", C, "--pin"]).stdout;
    assert!(!open_conf.contains("pinned_certs"));
    assert!(pinned_conf.contains("pinned_certs"), "{pinned_conf}");
    assert!(pinned_conf.contains(&key_pin(&new.0)));
    assert!(pinned_conf.contains(&key_pin(&alice.0)));
    assert!(!pinned_conf.contains(&key_pin(&p.old.0)));
    assert!(!pinned_conf.contains(&key_pin(&p.pki.join("broker.pem"))));

    // The attack, against the configuration without pins: the revoked certificate still maps to
    // node:web1 and receives what is sent to the new holder.
    let open = NatsServer::builder().config_text(open_conf).start();
    let thief = tls_connect(&open, &ca, Some(p.old.clone()))
        .await
        .expect("without pins the revoked certificate connects");
    let subject = format!("{C}.node.web1");
    let mut stolen = thief.client.subscribe(subject.clone()).await.unwrap();
    thief.client.flush().await.unwrap();
    let sender = tls_connect(&open, &ca, Some(alice.clone())).await.unwrap();
    sender
        .client
        .publish(subject.clone(), "for the new web1".into())
        .await
        .unwrap();
    sender.client.flush().await.unwrap();
    let got = tokio::time::timeout(STEP, stolen.next()).await;
    assert!(matches!(got, Ok(Some(_))), "the attack works without pins");

    // With pins it fails the handshake; the new holder and alice connect.
    let pinned = NatsServer::builder().config_text(pinned_conf).start();
    let refused = tls_connect(&pinned, &ca, Some(p.old.clone())).await;
    assert!(refused.is_err(), "the revoked certificate connected");
    assert!(
        pinned.log_text().contains("certificate not pinned"),
        "{}",
        pinned.log_text()
    );
    tls_connect(&pinned, &ca, Some(new.clone()))
        .await
        .expect("the new web1 connects");
    tls_connect(&pinned, &ca, Some(alice.clone()))
        .await
        .expect("alice connects");

    // The real responder and client under the pinned configuration.
    let policies = p.pki.parent().unwrap().join("policies");
    fs::create_dir_all(&policies).unwrap();
    let table = security_table(&p.pki, &policies, &p.pki.join("ca.crl"));
    let _web1 = Responder::spawn(&pinned, ResponderSpec::new("web1").secure(&table));
    let client = p.pki.parent().unwrap().join("client.toml");
    fs::write(
        &client,
        format!(
            "identity = \"alice\"\ncollective = {C:?}\n[nats]\nservers = [{url:?}]\n\
             [security]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\ncrl = {crl:?}\n",
            url = pinned.url(),
            ca = s(&ca),
            cert = s(&alice.0),
            key = s(&alice.1),
            crl = s(&p.pki.join("ca.crl")),
        ),
    )
    .unwrap();
    let ping = Cmd::mco()
        .arg("--config")
        .arg(&client)
        .args(["ping", "-I", "web1", "-t", "2s"]);
    tokio::task::block_in_place(|| {
        eventually(STEP, "web1 to answer under pinned keys", || {
            let out = ping.run();
            out.status == 0 && out.stdout.contains("web1")
        })
    });
}

#[test]
fn pinning_refuses_to_pin_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    pki(&dir, &["ca", "init"]);
    pki(
        &dir,
        &["issue", "broker", "--kind", "broker", "--ip", "127.0.0.1"],
    );
    pki(&dir, &["issue", "alice", "--kind", "user"]);
    pki(&dir, &["revoke", "alice"]);
    // Every certificate revoked: an empty pinned_certs would admit the whole CA.
    let out = Cmd::mco()
        .args(["pki", "--dir", &s(&dir)])
        .args([
            "broker-config",
            "--collective",
            C,
            "--pin",
            "--user",
            "alice",
        ])
        .run();
    assert_eq!(out.status, 64, "{out:?}");
    assert!(out.stderr.contains("no live"), "{out:?}");
    // A node certificate is refused as the broker's.
    pki(&dir, &["issue", "web1", "--kind", "node"]);
    let out = Cmd::mco()
        .args(["pki", "--dir", &s(&dir)])
        .args(["broker-config", "--collective", C, "--server-cert", "web1"])
        .run();
    assert_eq!(out.status, 64, "{out:?}");
    assert!(out.stderr.contains("not a broker certificate"), "{out:?}");
}

// ---- Finding 11: weak keys ----

#[test]
fn a_csr_with_a_small_order_key_is_not_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let req = tmp.path().join("req");
    pki(&dir, &["ca", "init"]);
    pki(&dir, &["csr", "web9", "--kind", "node", "--out", &s(&req)]);
    let der = tmp.path().join("web9.der");
    openssl(&[
        "req",
        "-in",
        &s(&req.join("web9.csr")),
        "-outform",
        "DER",
        "-out",
        &s(&der),
    ]);
    let public = tmp.path().join("web9.pub.der");
    openssl(&[
        "pkey",
        "-in",
        &s(&req.join("web9.key")),
        "-pubout",
        "-outform",
        "DER",
        "-out",
        &s(&public),
    ]);
    let key = fs::read(&public).unwrap();
    let key = &key[key.len() - 32..];
    let mut bytes = fs::read(&der).unwrap();
    let at = bytes
        .windows(32)
        .position(|w| w == key)
        .expect("the key is in the CSR");
    // The identity point, of small order: a signature with it verifies for many messages.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    bytes[at..at + 32].copy_from_slice(&weak);
    let tampered = tmp.path().join("weak.der");
    fs::write(&tampered, &bytes).unwrap();
    let b64 = openssl(&["base64", "-in", &s(&tampered)]).stdout;
    let csr = tmp.path().join("weak.csr");
    fs::write(
        &csr,
        format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}-----END CERTIFICATE REQUEST-----\n"),
    )
    .unwrap();
    let index = fs::read(dir.join("index.json")).unwrap();
    let out = Cmd::mco()
        .args(["pki", "--dir", &s(&dir), "sign", &s(&csr)])
        .run();
    assert_ne!(out.status, 0, "{out:?}");
    assert!(out.stderr.contains("weak"), "{out:?}");
    assert!(!dir.join("web9.pem").exists());
    assert_eq!(fs::read(dir.join("index.json")).unwrap(), index);
    // The untampered request is signed.
    pki(&dir, &["sign", &s(&req.join("web9.csr"))]);
}

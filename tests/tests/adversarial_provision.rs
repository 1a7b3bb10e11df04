//! Attacks on a node in provisioning mode, against real parts: a TLS nats-server for the
//! collective and one for provisioning, a responder booted from an image, and the real `mco`.
//!
//! The attacker holds the bootstrap token (it ships in every image) and a `user:` certificate
//! from the collective's CA. Each attack used to work: moving a new node onto a CA and broker of
//! the attacker's, deleting its CRL, acting on a node another provisioner holds, provisioning a
//! node no policy allows them to, sending the token over a clear connection, and re-provisioning
//! a node that lost its certificate. Each now fails, nothing on the node changes, and the node
//! keeps answering.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mco_tests::provisioning::{provisioning_broker, provisioning_client_config, Image, TOKEN};
use mco_tests::replies::replies;
use mco_tests::{bin_path, eventually, ChildGuard, Cmd, NatsServer, Output, SecureCollective};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp paths").to_string()
}

/// `mco` as `user` on the provisioning broker, with its own pins cache.
fn on_prov(c: &SecureCollective, prov: &NatsServer, user: &str) -> Cmd {
    let cfg = provisioning_client_config(c, prov, user);
    Cmd::mco()
        .arg("--config")
        .arg(&cfg)
        .env("XDG_CACHE_HOME", cfg.with_file_name("cache"))
}

fn call(cmd: &Cmd, node: &str, action: &str, args: &[&str]) -> Output {
    cmd.clone()
        .args(["rpc", "-T", "provisioning", "-I", node, "-j", "-t", "20s"])
        .args(["provision", action])
        .arg(format!("token={TOKEN}"))
        .args(args)
        .run()
}

/// The single reply of a `-j` run.
#[track_caller]
fn one(out: &Output) -> serde_json::Map<String, Value> {
    let mut r = replies(out);
    assert_eq!(r.len(), 1, "{out:?}");
    r.remove(0)
}

#[track_caller]
fn ok_data(out: &Output) -> serde_json::Map<String, Value> {
    let r = one(out);
    assert_eq!(r["statuscode"], 0, "{out:?}");
    match r.get("data") {
        Some(Value::Object(d)) => d.clone(),
        other => panic!("no data: {other:?}"),
    }
}

/// The node answered, refusing with a message containing `needle`.
#[track_caller]
fn refused(out: &Output, needle: &str) {
    let r = one(out);
    assert_ne!(r["statuscode"], 0, "{out:?}");
    let msg = r["statusmsg"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}\n{out:?}");
}

/// Every file under `dir` and its bytes, but the audit log (which records the attempts).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.file_name().is_some_and(|n| n != "audit.jsonl") {
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Whether `node` answers `provision state` for the caller of `cmd` in provisioning mode.
fn answers(cmd: &Cmd, node: &str) -> bool {
    let out = cmd
        .clone()
        .args(["rpc", "-T", "provisioning", "-I", node, "-j", "-t", "5s"])
        .args(["provision", "state"])
        .arg(format!("token={TOKEN}"))
        .run();
    out.status == 0 && replies(&out).first().is_some_and(|r| r["statuscode"] == 0)
}

/// A CA of the attacker's own in `dir`, which signs `csr`; returns (CA PEM, certificate PEM,
/// CRL PEM).
fn foreign_ca(dir: &Path, csr: &str) -> (String, String, String) {
    let pki = |args: &[&str]| {
        Cmd::mco()
            .arg("pki")
            .arg("--dir")
            .arg(dir)
            .args(args)
            .run()
            .assert_success();
    };
    pki(&["ca", "init"]);
    let file = dir.join("node.csr");
    fs::write(&file, csr).unwrap();
    pki(&["sign", &s(&file)]);
    pki(&["crl"]);
    let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap();
    (read("ca.pem"), read("fresh-01.pem"), read("ca.crl"))
}

#[test]
fn a_token_holder_cannot_move_a_new_node_onto_another_ca_broker_or_crl() {
    let c = SecureCollective::builder()
        .user("bob")
        .user("mallory")
        .spare_node("fresh-01")
        .start();
    let prov = provisioning_broker(&c);
    let main = format!("tls://127.0.0.1:{}", c.nats().port());
    let mut img = Image::new(
        &c,
        &prov,
        "fresh-01",
        serde_json::json!({"region": "eu"}),
        "[]",
        "[]",
    );
    // The image narrows the brokers a node may be sent to (appended to [provisioning]).
    img.spec = img.spec.extra(&format!(
        "allowed_servers = [\"127.0.0.1:{}\"]\n",
        c.nats().port()
    ));
    // It shipped a CRL newer than one the CA published before.
    let old_crl = fs::read_to_string(c.pki_dir().join("ca.crl")).unwrap();
    c.pki(&["crl"]);
    let shipped_crl = fs::read_to_string(c.pki_dir().join("ca.crl")).unwrap();
    fs::write(img.dir.join("ssl/ca.crl"), &shipped_crl).unwrap();
    let mut node = img.boot(&c);
    let alice = on_prov(&c, &prov, "alice");
    let bob = on_prov(&c, &prov, "bob");
    let mallory = on_prov(&c, &prov, "mallory");
    eventually(WAIT, "the node to answer in provisioning mode", || {
        answers(&alice, "fresh-01")
    });

    // Provisioning mode denies by default: the token and a certificate are not enough.
    for action in ["state", "lock", "gencsr", "disable"] {
        refused(&call(&mallory, "fresh-01", action, &[]), "not authorized");
    }
    // A lock lasts at most a day.
    refused(
        &call(&alice, "fresh-01", "lock", &["expiry=86401"]),
        "between 1 and 86400",
    );
    ok_data(&call(&alice, "fresh-01", "lock", &["expiry=600"]));
    let csr = ok_data(&call(&alice, "fresh-01", "gencsr", &[]))["csr"]
        .as_str()
        .unwrap()
        .to_string();

    // While alice holds the lock, bob (also a provisioner) may change nothing.
    let before = snapshot(&img.dir);
    let ca_pem = fs::read_to_string(c.pki_dir().join("ca.pem")).unwrap();
    let csr_file = c.scratch().join("fresh-01.csr");
    fs::write(&csr_file, &csr).unwrap();
    c.pki(&["sign", &s(&csr_file), "--force"]);
    let cert = fs::read_to_string(c.pki_dir().join("fresh-01.pem")).unwrap();
    let configure_args = [
        format!("certificate={cert}"),
        format!("ca={ca_pem}"),
        format!("servers={main}"),
    ];
    let configure_args: Vec<&str> = configure_args.iter().map(String::as_str).collect();
    for (action, args) in [
        ("gencsr", vec!["regenerate=true"]),
        ("set_master", vec!["name=evil", "address=10.6.6.6"]),
        ("configure", configure_args.clone()),
        ("run", vec![]),
        ("restart", vec![]),
        ("disable", vec![]),
        ("unlock", vec![]),
    ] {
        refused(
            &call(&bob, "fresh-01", action, &args),
            "locked by user:alice",
        );
    }
    assert_eq!(snapshot(&img.dir), before, "bob changed the node");

    // A certificate from the attacker's CA, with or without that CA, is refused.
    let (evil_ca, evil_cert, evil_crl) = foreign_ca(&c.scratch().join("evil-ca"), &csr);
    let evil = |ca: Option<&str>, cert: &str, extra: &[&str]| {
        let mut args = vec![format!("certificate={cert}"), format!("servers={main}")];
        if let Some(ca) = ca {
            args.push(format!("ca={ca}"));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        call(&alice, "fresh-01", "configure", &args)
    };
    refused(&evil(Some(&evil_ca), &evil_cert, &[]), "shipped with");
    refused(&evil(None, &evil_cert, &[]), "does not verify");
    refused(&evil(Some(&ca_pem), &evil_cert, &[]), "does not verify");
    // The right certificate does not carry a foreign or older CRL in, nor brokers the image
    // does not allow.
    let crl_arg = |crl: &str| format!("crl={crl}");
    refused(
        &evil(Some(&ca_pem), &cert, &[&crl_arg(&evil_crl)]),
        "not one of the shipped CA",
    );
    refused(
        &evil(Some(&ca_pem), &cert, &[&crl_arg(&old_crl)]),
        "older than the node's",
    );
    for servers in [
        "servers=tls://evil.example.net:4222",
        "servers=ws://127.0.0.1:4222",
        "servers=tls://user:pw@127.0.0.1:4222",
    ] {
        let out = call(
            &alice,
            "fresh-01",
            "configure",
            &[&format!("certificate={cert}"), servers],
        );
        refused(&out, "broker");
    }
    assert_eq!(
        snapshot(&img.dir),
        before,
        "a refused configure changed the node"
    );
    assert!(node.child.is_running());
    assert!(answers(&alice, "fresh-01"));

    // The provisioner's own configure, without a CRL, keeps the node's CRL and installs the
    // shipped CA.
    ok_data(&call(&alice, "fresh-01", "configure", &configure_args));
    assert_eq!(
        fs::read_to_string(img.dir.join("ssl/ca.crl")).unwrap(),
        shipped_crl,
        "configure without a CRL removed or replaced the node's"
    );
    assert_eq!(
        fs::read_to_string(img.dir.join("ssl/ca.pem")).unwrap(),
        ca_pem
    );
    assert_eq!(img.certificate().as_deref(), Some(cert.as_str()));
    assert!(answers(&alice, "fresh-01"));
    let _ = node.child.kill();
}

#[test]
fn a_clear_provisioning_broker_is_refused_at_start() {
    let c = SecureCollective::builder().start();
    let prov = provisioning_broker(&c);
    let mut img = Image::new(&c, &prov, "fresh-02", serde_json::json!({}), "[]", "[]");
    img.spec.extra_toml = img.spec.extra_toml.replace("tls://", "nats://");
    let mut node = img.boot(&c);
    let status = node
        .child
        .wait_exit(WAIT)
        .expect("a responder with a clear provisioning broker exits");
    assert!(!status.success());
    let err = node.child.stderr_text();
    assert!(
        err.contains("provisioning.servers") && err.contains("in clear"),
        "{err}"
    );
    assert!(!err.contains("PROVISIONING MODE"), "{err}");
    assert!(!img.dir.join("state/node.key").exists(), "it made a key");
}

/// Provisioning mode denies by default: an image without a `provision.policy` would let no one
/// provision it, and with `default_policy = "allow"` every token holder could. The first is
/// refused at start, naming the file; the second starts, warning on every start.
#[test]
fn a_provisioning_image_without_a_provision_policy_does_not_start() {
    let c = SecureCollective::builder().start();
    let prov = provisioning_broker(&c);
    let img = Image::new(&c, &prov, "fresh-05", serde_json::json!({}), "[]", "[]");
    fs::remove_file(c.policy_dir().join("provision.policy")).unwrap();
    let mut node = img.boot(&c);
    let status = node
        .child
        .wait_exit(WAIT)
        .expect("a provisioning image without provision.policy exits");
    assert!(!status.success());
    let err = node.child.stderr_text();
    assert!(
        err.contains("provision.policy") && err.contains("provisioning mode needs"),
        "{err}"
    );
    assert!(!img.dir.join("state/node.key").exists(), "it made a key");

    let mut open = Image::new(&c, &prov, "fresh-06", serde_json::json!({}), "[]", "[]");
    fs::remove_file(c.policy_dir().join("provision.policy")).unwrap();
    open.spec.security = open
        .spec
        .security
        .map(|t| t.replace("default_policy = \"deny\"", "default_policy = \"allow\""));
    let node = open.boot(&c);
    let text = || node.child.stderr_text();
    eventually(WAIT, "the warning", || {
        text().contains("PROVISIONING MODE WITH")
    });
    assert!(
        text().contains("ship a provision.policy instead"),
        "{}",
        text()
    );
}

#[test]
fn a_provisioned_node_that_lost_its_certificate_is_not_provisioned_again() {
    let c = SecureCollective::builder().start();
    let prov = provisioning_broker(&c);
    let img = Image::new(&c, &prov, "fresh-03", serde_json::json!({}), "[]", "[]");
    // The node was provisioned once (configure's marker), then its certificate went missing.
    let marker = img.dir.join("state/configured");
    fs::create_dir_all(marker.parent().unwrap()).unwrap();
    fs::write(&marker, "").unwrap();
    let mut node = img.boot(&c);
    let status = node
        .child
        .wait_exit(WAIT)
        .expect("a provisioned node without its certificate exits");
    assert!(!status.success());
    let err = node.child.stderr_text();
    assert!(
        err.contains("does not fall back into provisioning mode") && err.contains("configured"),
        "{err}"
    );
    assert!(!err.contains("PROVISIONING MODE"), "{err}");

    // The operator marks it for provisioning again by removing the marker.
    fs::remove_file(&marker).unwrap();
    let mut cmd = Command::new(bin_path("mco-responder"));
    cmd.arg("--config").arg(&node.config);
    let mut again = ChildGuard::spawn(cmd);
    let alice = on_prov(&c, &prov, "alice");
    eventually(WAIT, "the node to answer in provisioning mode", || {
        assert!(again.is_running(), "{}", again.stderr_text());
        answers(&alice, "fresh-03")
    });
    assert!(again.stderr_text().contains("PROVISIONING MODE"));
}

#[test]
fn a_fleet_node_that_lost_its_certificate_stays_down_while_the_others_serve() {
    let c = SecureCollective::builder().spare_node("fleet-0000").start();
    let prov = provisioning_broker(&c);
    let img = Image::fleet(&c, &prov, "fleet", serde_json::json!({}), 2);
    let mut fleet = img.boot(&c);
    let alice = on_prov(&c, &prov, "alice");
    for id in ["fleet-0000", "fleet-0001"] {
        eventually(
            WAIT,
            "every virtual node to answer in provisioning mode",
            || answers(&alice, id),
        );
    }
    // fleet-0000 is configured (its own config, certificate and marker), then loses its
    // certificate before the fleet starts again.
    ok_data(&call(&alice, "fleet-0000", "lock", &[]));
    let csr = ok_data(&call(&alice, "fleet-0000", "gencsr", &[]))["csr"]
        .as_str()
        .unwrap()
        .to_string();
    let file = c.scratch().join("fleet-0000.csr");
    fs::write(&file, csr).unwrap();
    c.pki(&["sign", &s(&file), "--force"]);
    let cert = fs::read_to_string(c.pki_dir().join("fleet-0000.pem")).unwrap();
    let ca = fs::read_to_string(c.pki_dir().join("ca.pem")).unwrap();
    ok_data(&call(
        &alice,
        "fleet-0000",
        "configure",
        &[
            &format!("certificate={cert}"),
            &format!("ca={ca}"),
            &format!("servers=tls://127.0.0.1:{}", c.nats().port()),
        ],
    ));
    fleet.child.kill();
    fs::remove_file(img.dir.join("ssl/fleet-0000.pem")).unwrap();

    let mut cmd = Command::new(bin_path("mco-responder"));
    cmd.arg("--config")
        .arg(&fleet.config)
        .args(["--fleet", "2"]);
    let mut again = ChildGuard::spawn(cmd);
    eventually(WAIT, "fleet-0001 to answer in provisioning mode", || {
        assert!(again.is_running(), "{}", again.stderr_text());
        answers(&alice, "fleet-0001")
    });
    eventually(WAIT, "fleet-0000 to say why it stays down", || {
        again.stderr_text().contains("this node stays down")
    });
    let log = again.stderr_text();
    assert!(
        log.contains("does not fall back into provisioning mode") && log.contains("fleet-0000"),
        "{log}"
    );
    assert!(
        !answers(&alice, "fleet-0000"),
        "fleet-0000 is provisioning again"
    );
    assert!(again.is_running());
    assert!(answers(&alice, "fleet-0001"));
}

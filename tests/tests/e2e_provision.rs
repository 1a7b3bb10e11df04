//! Provisioning, node side and the CA over the bus: a responder with no certificate starts in
//! provisioning mode on its own broker, a provisioner user drives its `provision` agent and the
//! CA node's `ca` agent with the real `mco`, and the node comes back in the main collective with
//! the certificate the CA signed for the key it made itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mco_tests::provisioning::{
    self, provisioning_broker, provisioning_client_config, Image, TOKEN,
};
use mco_tests::replies::replies;
use mco_tests::{
    bin_path, eventually, ChildGuard, Cmd, NatsServer, Output, Responder, SecureCollective,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp paths").to_string()
}

/// An image for `identity` in region `eu` with the `bootstrap` command.
fn image(c: &SecureCollective, prov: &NatsServer, identity: &str, bootstrap: &str) -> Image {
    Image::new(
        c,
        prov,
        identity,
        serde_json::json!({"region": "eu"}),
        bootstrap,
        "[]",
    )
}

/// `mco` as `user` on the provisioning broker, with its own pins cache.
fn provisioner(c: &SecureCollective, prov: &NatsServer, user: &str) -> Cmd {
    let cfg = provisioning_client_config(c, prov, user);
    Cmd::mco()
        .arg("--config")
        .arg(&cfg)
        .env("XDG_CACHE_HOME", cfg.with_file_name("cache"))
}

fn pins_file(c: &SecureCollective, user: &str) -> PathBuf {
    c.scratch()
        .join(format!("prov-{user}"))
        .join("cache/mco/provisioning.pins")
}

fn call(cmd: &Cmd, node: &str, agent: &str, action: &str, args: &[&str]) -> Output {
    cmd.clone()
        .args(["rpc", "-T", "provisioning", "-I", node, "-j", "-t", "20s"])
        .args([agent, action])
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

#[track_caller]
fn refused(out: &Output, needle: &str) {
    let r = one(out);
    assert_eq!(r["statuscode"], 1, "{out:?}");
    let msg = r["statusmsg"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}\n{out:?}");
}

fn token_arg() -> String {
    format!("token={TOKEN}")
}

fn ca_node(c: &SecureCollective) -> Responder {
    provisioning::ca_node(c, &["fresh-*"], "alice")
}

fn main_call(c: &SecureCollective, node: &str, agent: &str, action: &str, args: &[&str]) -> Output {
    c.mco("alice")
        .args(["rpc", "-I", node, "-j", "-t", "20s", agent, action])
        .args(args)
        .run()
}

#[test]
fn a_bare_node_is_provisioned_over_the_bus_and_restarts_into_the_fleet() {
    // `fresh-01` is admitted by name on the main broker (its certificate maps to CN=node:fresh-01);
    // the certificate itself is made later, from the node's own CSR.
    let c = SecureCollective::builder()
        .user("bob")
        .spare_node("fresh-01")
        .spare_node("ca-node")
        .start();
    let prov = provisioning_broker(&c);
    let _ca = ca_node(&c);
    let img = image(
        &c,
        &prov,
        "fresh-01",
        r#"["sh", "-c", "echo Notice: applied; exit 2"]"#,
    );
    let mut node = Responder::spawn(c.nats(), img.spec.clone());
    let pid = node.child.pid();
    let alice = provisioner(&c, &prov, "alice");
    let bob = provisioner(&c, &prov, "bob");
    let token = token_arg();

    // It answers in the provisioning collective, signed with its own key.
    eventually(WAIT, "the node to answer in provisioning mode", || {
        alice
            .clone()
            .args([
                "rpc",
                "-T",
                "provisioning",
                "-I",
                "fresh-01",
                "rpcutil",
                "ping",
                "-t",
                "2s",
            ])
            .run()
            .status
            == 0
    });
    assert!(node.child.stderr_text().contains("PROVISIONING MODE"));
    let st = ok_data(&call(&alice, "fresh-01", "provision", "state", &[&token]));
    assert_eq!(st["provisioning"], true);
    assert_eq!(st["cert_present"], false);
    assert_eq!(st["locked"], false);
    let key = st["public_key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 64);
    let pins = fs::read_to_string(pins_file(&c, "alice")).unwrap();
    assert!(pins.contains(&format!("fresh-01 {key}\n")), "{pins}");
    // Its facts are there for a provisioner to choose a master by.
    let inv = ok_data(&call(&alice, "fresh-01", "rpcutil", "inventory", &[]));
    assert_eq!(inv["facts"]["region"], "eu");
    assert_eq!(inv["agents"], serde_json::json!(["provision", "rpcutil"]));

    // A reply signed by another key than the pinned one is refused by the client.
    let good = fs::read_to_string(pins_file(&c, "alice")).unwrap();
    fs::write(pins_file(&c, "alice"), good.replace(&key, &"ab".repeat(32))).unwrap();
    let out = call(&alice, "fresh-01", "rpcutil", "ping", &[]);
    assert_ne!(out.status, 0, "{out:?}");
    assert!(replies(&out).is_empty(), "{out:?}");
    fs::write(pins_file(&c, "alice"), &good).unwrap();

    // Wrong token refused.
    refused(
        &call(&alice, "fresh-01", "provision", "state", &["token=wrong"]),
        "bad token",
    );

    // Locks: one owner at a time; the owner or expiry releases.
    let l = ok_data(&call(
        &alice,
        "fresh-01",
        "provision",
        "lock",
        &[&token, "expiry=600"],
    ));
    assert_eq!(l["owner"], "user:alice");
    refused(
        &call(&bob, "fresh-01", "provision", "lock", &[&token]),
        "locked by user:alice",
    );
    refused(
        &call(&bob, "fresh-01", "provision", "unlock", &[&token]),
        "locked by user:alice",
    );
    ok_data(&call(&alice, "fresh-01", "provision", "unlock", &[&token]));
    ok_data(&call(
        &alice,
        "fresh-01",
        "provision",
        "lock",
        &[&token, "expiry=1"],
    ));
    eventually(WAIT, "alice's one-second lock to expire", || {
        call(
            &bob,
            "fresh-01",
            "provision",
            "lock",
            &[&token, "expiry=600"],
        )
        .status
            == 0
    });
    ok_data(&call(&bob, "fresh-01", "provision", "unlock", &[&token]));
    ok_data(&call(
        &alice,
        "fresh-01",
        "provision",
        "lock",
        &[&token, "expiry=600"],
    ));

    // The master goes into the hosts file, replacing the old puppet line only.
    ok_data(&call(
        &alice,
        "fresh-01",
        "provision",
        "set_master",
        &[&token, "name=m1.eu.example", "address=10.1.2.3"],
    ));
    assert_eq!(
        fs::read_to_string(img.dir.join("hosts")).unwrap(),
        "127.0.0.1 localhost\n10.1.2.3 m1.eu.example puppet\n::1 ip6-localhost\n"
    );
    let st = ok_data(&call(&alice, "fresh-01", "provision", "state", &[&token]));
    assert_eq!(st["master"], "m1.eu.example");
    assert_eq!(st["lock_owner"], "user:alice");

    // The CSR is made on the node; the CA signs it only for its own name.
    let g = ok_data(&call(&alice, "fresh-01", "provision", "gencsr", &[&token]));
    let csr = g["csr"].as_str().unwrap().to_string();
    assert_eq!(g["name"], "node:fresh-01");
    assert_eq!(
        g["public_key"], key,
        "the CSR is for the key the node's replies are signed with"
    );
    let again = ok_data(&call(&alice, "fresh-01", "provision", "gencsr", &[&token]));
    assert_eq!(again["csr"], g["csr"], "gencsr is idempotent");
    let csr_arg = format!("csr={csr}");
    refused(
        &main_call(&c, "ca-node", "ca", "sign", &["name=fresh-02", &csr_arg]),
        "not node:fresh-02",
    );
    refused(
        &main_call(&c, "ca-node", "ca", "sign", &["name=other-01", &csr_arg]),
        "allow_names",
    );
    let signed = ok_data(&main_call(
        &c,
        "ca-node",
        "ca",
        "sign",
        &["name=node:fresh-01", &csr_arg],
    ));
    let cert = signed["certificate"].as_str().unwrap().to_string();
    let serial = signed["serial"].as_str().unwrap().to_string();
    let listed = ok_data(&main_call(&c, "ca-node", "ca", "list", &[]));
    assert!(
        listed["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["serial"] == serial.as_str() && e["name"] == "node:fresh-01"),
        "{listed:?}"
    );
    let crl = ok_data(&main_call(&c, "ca-node", "ca", "crl", &[]))["crl"]
        .as_str()
        .unwrap()
        .to_string();
    let ca_pem = fs::read_to_string(c.pki_dir().join("ca.pem")).unwrap();

    // A certificate for another key is refused by configure.
    let other = fs::read_to_string(c.pki_dir().join("ca-node.pem")).unwrap();
    refused(
        &call(
            &alice,
            "fresh-01",
            "provision",
            "configure",
            &[
                &token,
                &format!("certificate={other}"),
                &format!("ca={ca_pem}"),
                "servers=tls://127.0.0.1:1",
            ],
        ),
        "does not match the key gencsr made",
    );
    let main_url = format!("tls://127.0.0.1:{}", c.nats().port());
    ok_data(&call(
        &alice,
        "fresh-01",
        "provision",
        "configure",
        &[
            &token,
            &format!("certificate={cert}"),
            &format!("ca={ca_pem}"),
            &format!("crl={crl}"),
            &format!("servers={main_url}"),
            "collectives=mcollective",
        ],
    ));
    assert_eq!(
        fs::read_to_string(img.dir.join("ssl/node.pem")).unwrap(),
        cert
    );

    // The bootstrap run: Puppet's exit code 2 means changes applied, a success.
    let run = ok_data(&call(&alice, "fresh-01", "provision", "run", &[&token]));
    assert_eq!(run["exitcode"], 2);
    assert_eq!(run["success"], true);
    assert_eq!(run["output"], "Notice: applied\n");

    // Restart: the same process re-executes itself into normal mode.
    ok_data(&call(&alice, "fresh-01", "provision", "restart", &[&token]));
    eventually(WAIT, "the node to answer in the main collective", || {
        main_call(&c, "fresh-01", "rpcutil", "ping", &[]).status == 0
    });
    assert_eq!(node.child.pid(), pid);
    assert!(node.child.is_running());
    assert!(
        node.child
            .stderr_text()
            .contains("responder stopped; restarting"),
        "the restart went through the graceful stop"
    );
    // ... with its new certificate, and no longer in provisioning.
    let out = c
        .mco("alice")
        .args(["rpc", "-I", "fresh-01", "-j", "rpcutil", "inventory"])
        .run();
    assert_eq!(
        one(&out)["data"]["collectives"],
        serde_json::json!(["mcollective"])
    );
    let out = alice
        .clone()
        .args([
            "rpc",
            "-T",
            "provisioning",
            "-I",
            "fresh-01",
            "-t",
            "2s",
            "rpcutil",
            "ping",
        ])
        .run();
    assert_ne!(out.status, 0, "still in provisioning mode: {out:?}");

    // Revoking puts the serial on the CRL.
    let r = ok_data(&main_call(
        &c,
        "ca-node",
        "ca",
        "revoke",
        &["name=fresh-01"],
    ));
    assert!(r["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == serial.as_str()));
    let crl = ok_data(&main_call(&c, "ca-node", "ca", "crl", &[]))["crl"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = mco_pki::show(crl.as_bytes()).unwrap();
    assert!(
        shown.to_lowercase().contains(&serial.to_lowercase()),
        "{serial} not in\n{shown}"
    );
    // Clean revokes (nothing left to revoke here) and removes the issued files.
    let cleaned = ok_data(&main_call(&c, "ca-node", "ca", "clean", &["name=fresh-01"]));
    assert!(
        cleaned["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().ends_with("/fresh-01.pem")),
        "{cleaned:?}"
    );
    assert!(!c.pki_dir().join("fresh-01.pem").exists());

    // The token never reaches the audit log.
    let audit = fs::read_to_string(img.dir.join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"provision\""), "{audit}");
    assert!(
        !audit.contains(TOKEN),
        "the token leaked into the audit log"
    );
    let _ = node.child.kill();
}

#[test]
fn disable_sticks_across_restarts() {
    let c = SecureCollective::builder().start();
    let prov = provisioning_broker(&c);
    let img = image(&c, &prov, "fresh-09", "[]");
    let mut node = Responder::spawn(c.nats(), img.spec.clone());
    let alice = provisioner(&c, &prov, "alice");
    let token = token_arg();
    eventually(WAIT, "the node to answer in provisioning mode", || {
        call(&alice, "fresh-09", "provision", "state", &[&token]).status == 0
    });
    // Broadcast discovery works on key-signed replies too (the config's collective is
    // `provisioning`, so no -T is needed).
    let found = alice.clone().args(["find"]).run();
    assert_eq!(found.status, 0, "{found:?}");
    assert_eq!(found.stdout.trim(), "fresh-09", "{found:?}");
    // No bootstrap command configured: run says so.
    refused(
        &call(&alice, "fresh-09", "provision", "run", &[&token]),
        "bootstrap_command",
    );
    let d = ok_data(&call(&alice, "fresh-09", "provision", "disable", &[&token]));
    assert_eq!(d["disabled"], true);
    node.child.kill();

    // Started again, still without a certificate, it does not provision.
    let mut cmd = Command::new(bin_path("mco-responder"));
    cmd.arg("--config").arg(&node.config);
    let mut again = ChildGuard::spawn(cmd);
    let status = again
        .wait_exit(WAIT)
        .expect("a disabled node without a certificate exits");
    assert!(!status.success());
    let err = again.stderr_text();
    assert!(!err.contains("PROVISIONING MODE"), "{err}");
    assert!(
        err.contains("fresh-09/ssl/"),
        "it wants its certificate files: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_announces_itself_and_the_library_pins_its_key() {
    use futures::StreamExt;
    use mco_client::pins::KeyPins;
    use mco_client::verify::{Opener, Rejected};
    use mco_security::TrustStore;
    use std::sync::Arc;

    let c = SecureCollective::builder().start();
    let prov = provisioning_broker(&c);
    let client = provisioning::connect(&c, &prov).await;
    let mut sub = client
        .subscribe("provisioning.registration.>")
        .await
        .unwrap();
    client.flush().await.unwrap();
    let img = image(&c, &prov, "fresh-05", "[]");
    let _node = Responder::spawn(c.nats(), img.spec.clone());
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("an announcement")
        .expect("the subscription is open");
    assert_eq!(msg.subject.as_str(), "provisioning.registration.fresh-05");

    let pins = Arc::new(KeyPins::in_memory());
    let opener = Opener {
        trust: Some(Arc::new(
            TrustStore::load(&c.pki_dir().join("ca.pem"), None).unwrap(),
        )),
        max_payload: 1 << 20,
        pins: Some(pins.clone()),
    };
    let reply = opener.open(&msg.payload).expect("a good announcement");
    assert_eq!(reply.sender, "fresh-05");
    assert_eq!(reply.message, "provisioning");
    assert_eq!(reply.data["facts"]["region"], "eu");
    let key = reply.data["public_key"].as_str().unwrap().to_string();
    assert_eq!(pins.get("fresh-05").map(hex_of), Some(key));

    // The same announcement under another pin is refused; without pins, too.
    let other = KeyPins::in_memory();
    other.check("fresh-05", &[9; 32]).unwrap();
    let strict = Opener {
        pins: Some(Arc::new(other)),
        ..opener.clone()
    };
    assert!(matches!(
        strict.open(&msg.payload),
        Err(Rejected::Untrusted(_))
    ));
    let unpinned = Opener {
        pins: None,
        ..opener
    };
    assert!(matches!(
        unpinned.open(&msg.payload),
        Err(Rejected::Untrusted(_))
    ));
}

fn hex_of(k: [u8; 32]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

/// The image of a `--fleet` responder: one shared config whose `{identity}` paths give each
/// virtual node its own provisioning state and certificate files (the CA and CRL are shared).
fn fleet_image(c: &SecureCollective, prov: &NatsServer, base: &str) -> Image {
    Image::fleet(c, prov, base, serde_json::json!({"region": "eu"}), 3)
}

/// Whether `node` answers a ping in the provisioning collective.
fn answers_in_provisioning(provisioner: &Cmd, node: &str) -> bool {
    provisioner
        .clone()
        .args([
            "rpc",
            "-T",
            "provisioning",
            "-I",
            node,
            "-t",
            "2s",
            "rpcutil",
            "ping",
        ])
        .run()
        .status
        == 0
}

/// Whether `node` answers a ping in the main collective with a reply that verifies.
fn answers_in_main(c: &SecureCollective, node: &str) -> bool {
    let out = c
        .mco("alice")
        .args(["rpc", "-I", node, "-j", "-t", "2s", "rpcutil", "ping"])
        .run();
    out.status == 0
        && !out.stderr.contains("failed verification")
        && replies(&out)
            .iter()
            .any(|r| r["sender"] == node && r["statuscode"] == 0)
}

#[test]
fn fleet_nodes_are_provisioned_and_restarted_one_by_one_in_process() {
    let c = SecureCollective::builder()
        .spare_node("fresh-0000")
        .spare_node("fresh-0001")
        .start();
    let prov = provisioning_broker(&c);
    let img = fleet_image(&c, &prov, "fresh");
    let mut fleet = Responder::spawn(c.nats(), img.spec.clone());
    let pid = fleet.child.pid();
    let shared_config = fs::read(&fleet.config).unwrap();
    let alice = provisioner(&c, &prov, "alice");
    let token = token_arg();
    let ids = ["fresh-0000", "fresh-0001", "fresh-0002"];
    for id in ids {
        eventually(
            WAIT,
            "every virtual node to answer in provisioning mode",
            || answers_in_provisioning(&alice, id),
        );
    }

    let main_url = format!("tls://127.0.0.1:{}", c.nats().port());
    let ca_pem = fs::read_to_string(c.pki_dir().join("ca.pem")).unwrap();
    let crl_pem = fs::read_to_string(c.pki_dir().join("ca.crl")).unwrap();
    for id in &ids[..2] {
        ok_data(&call(&alice, id, "provision", "lock", &[&token]));
        let g = ok_data(&call(&alice, id, "provision", "gencsr", &[&token]));
        assert_eq!(g["name"], format!("node:{id}"));
        // The CA signs the node's own CSR (replacing the spare certificate of that name).
        let csr = c.scratch().join(format!("{id}.csr"));
        fs::write(&csr, g["csr"].as_str().unwrap()).unwrap();
        c.pki(&["sign", &s(&csr), "--force"]);
        let cert = fs::read_to_string(c.pki_dir().join(format!("{id}.pem"))).unwrap();
        let conf = ok_data(&call(
            &alice,
            id,
            "provision",
            "configure",
            &[
                &token,
                &format!("certificate={cert}"),
                &format!("ca={ca_pem}"),
                &format!("crl={crl_pem}"),
                &format!("servers={main_url}"),
                "collectives=mcollective",
            ],
        ));
        let own = img.dir.join(format!("state/{id}/responder.toml"));
        assert_eq!(conf["config_file"], s(&own), "{conf:?}");
        assert_eq!(
            fs::read_to_string(img.dir.join(format!("ssl/{id}.pem"))).unwrap(),
            cert
        );
        // The shared file is the template, never rewritten.
        assert_eq!(fs::read(&fleet.config).unwrap(), shared_config);
        ok_data(&call(&alice, id, "provision", "restart", &[&token]));
    }

    for (i, id) in ids[..2].iter().enumerate() {
        eventually(
            WAIT,
            "a restarted node to answer in the main collective",
            || answers_in_main(&c, id),
        );
        let inv = ok_data(&main_call(&c, id, "rpcutil", "inventory", &[]));
        assert_eq!(inv["collectives"], serde_json::json!(["mcollective"]));
        assert_eq!(inv["facts"]["region"], "eu");
        assert_eq!(inv["facts"]["fleet_index"], i);
        assert!(
            !inv["agents"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "provision"),
            "{inv:?}"
        );
        assert!(
            !answers_in_provisioning(&alice, id),
            "{id} still answers in provisioning"
        );
        let own = img.dir.join(format!("state/{id}/responder.toml"));
        let cfg = mco_core::config::ResponderConfig::load(&own).unwrap();
        assert_eq!(cfg.identity.as_deref(), Some(*id));
        assert_eq!(cfg.collectives, vec!["mcollective"]);
        assert_eq!(cfg.nats.servers, vec![main_url.clone()]);
    }
    // The third node was left alone: still provisioning, not in the main collective.
    assert!(answers_in_provisioning(&alice, "fresh-0002"));
    assert!(!answers_in_main(&c, "fresh-0002"));
    let st = ok_data(&call(&alice, "fresh-0002", "provision", "state", &[&token]));
    assert_eq!(st["provisioning"], true);
    assert_eq!(st["cert_present"], false);
    assert!(!img.dir.join("state/fresh-0002/responder.toml").exists());
    // One process all along, each restart logged once.
    assert_eq!(fleet.child.pid(), pid);
    assert!(fleet.child.is_running());
    let log = fleet.child.stderr_text();
    for id in &ids[..2] {
        let lines = log
            .lines()
            .filter(|l| {
                // The log may be coloured: match the message and the identity, not `node=ID`.
                l.contains("provisioned: now serving the main collective") && l.contains(*id)
            })
            .count();
        assert_eq!(lines, 1, "{log}");
    }
    assert!(
        !log.lines()
            .any(|l| l.contains("now serving") && l.contains("fresh-0002")),
        "{log}"
    );
    assert!(
        !log.contains("re-executing"),
        "the process re-executed: {log}"
    );
    assert_eq!(fs::read(&fleet.config).unwrap(), shared_config);

    // Killed and started again, the fleet keeps its provisioned nodes provisioned.
    fleet.child.kill();
    let mut cmd = Command::new(bin_path("mco-responder"));
    cmd.arg("--config")
        .arg(&fleet.config)
        .args(["--fleet", "3"])
        .env("RUST_LOG", "info");
    let again = ChildGuard::spawn(cmd);
    for id in &ids[..2] {
        eventually(
            WAIT,
            "a provisioned node to come back in the main collective",
            || answers_in_main(&c, id),
        );
    }
    eventually(
        WAIT,
        "the third node to come back in provisioning mode",
        || answers_in_provisioning(&alice, "fresh-0002"),
    );
    for id in &ids[..2] {
        assert!(
            !answers_in_provisioning(&alice, id),
            "{id} provisioning again"
        );
    }
    assert!(!answers_in_main(&c, "fresh-0002"));
    assert_eq!(fs::read(&fleet.config).unwrap(), shared_config);
    let log = again.stderr_text();
    assert!(log.contains("PROVISIONING MODE"), "{log}");
}

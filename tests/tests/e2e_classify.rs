//! What the provisioner decides about a node beyond signing it, end to end with real brokers, a
//! real CA node, a master and images booted in provisioning mode:
//!
//! - a registry entry's classification reaches the node, which then advertises its classes and
//!   parameters in the main collective, and `mco classify` drives a real `puppet apply` with
//!   `--node_terminus=exec`;
//! - `[expected] networks` makes a node expected by its (self-reported) address;
//! - a name that is the CA's, a master's or reserved is never cleaned nor signed, even for a
//!   node that is otherwise expected.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mco_tests::provisioning::{ca_node, issued, master, provisioning_broker, Image, Provisioner};
use mco_tests::{eventually, Cmd, Responder, SecureCollective};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(90);

fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp paths").to_string()
}

fn status_of(cfg: &Path, node: &str) -> Option<Value> {
    Provisioner::status(cfg).get(node).cloned()
}

/// The identities `mco find ARGS` prints in the main collective, as alice (exit 1: none).
fn find(c: &SecureCollective, args: &[&str]) -> Vec<String> {
    let out = c.mco("alice").arg("find").args(args).run();
    assert!(out.status == 0 || out.status == 1, "{out:?}");
    let mut ids: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    ids.sort();
    ids
}

#[test]
fn classification_network_autosign_and_reserved_names() {
    let c = SecureCollective::builder()
        .user("bob")
        .spare_node("ca-node")
        .spare_node("m-eu-1")
        .spare_node("m-us-1")
        .spare_node("web-01")
        .spare_node("net-01")
        .start();
    let prov = provisioning_broker(&c);
    let _ca = ca_node(&c, &["*"], "alice");
    let _m = master(&c, "m-eu-1", "eu", "10.0.0.11", 1);
    let _m2 = master(&c, "m-us-1", "us", "10.1.0.11", 1);
    let m_eu_1_before = issued(&c, "m-eu-1");

    let registry = c.scratch().join("expected-nodes");
    fs::write(
        &registry,
        "# what the cloud conductor booted\n\
         web-01 {\"classes\": [\"hadoop::worker\", \"role::web\"], \"parameters\": {\"rack\": \"r7\"}, \"environment\": \"production\"}\n",
    )
    .unwrap();
    let cfg = Provisioner::configure(
        &c,
        &prov,
        "alice",
        &format!(
            "workers = 4\ninterval = \"500ms\"\nbackoff = \"1s\"\n\
             [expected]\nregistry_file = {reg:?}\nnetworks = [\"10.20.0.0/16\"]\n\
             [ca]\nidentity = \"ca-node\"\n\
             [masters]\nidentities = [\"m-*\"]\nclasses = [\"puppet::master\"]\ncriteria = [\"region\"]\n",
            reg = s(&registry)
        ),
    );

    let eu = |ip: &str| json!({"region": "eu", "ipaddress": ip});
    // Their regions come from first-boot fact sources, and choose their masters: web-01's from
    // a key=value file (as cloud user data writes /etc/facts.txt), net-01's from a one-value file.
    let mut web = Image::new(
        &c,
        &prov,
        "web-01",
        json!({"ipaddress": "192.168.1.5"}),
        r#"["true"]"#,
        "[]",
    );
    let facts_txt = c.scratch().join("web-01-facts.txt");
    fs::write(&facts_txt, "# from user data\nregion=us\nrack = r7\n").unwrap();
    web.spec = web
        .spec
        .clone()
        .facts_toml(&format!("keyvalue_files = [{:?}]\n", s(&facts_txt)));
    let mut net1 = Image::new(
        &c,
        &prov,
        "net-01",
        json!({"ipaddress": "10.20.3.4"}),
        r#"["true"]"#,
        "[]",
    );
    let region_file = c.scratch().join("net-01-region");
    fs::write(&region_file, "eu\n").unwrap();
    net1.spec = net1.spec.clone().facts_toml(&format!(
        "value_files = {{ region = {:?} }}\n",
        s(&region_file)
    ));
    let net2 = Image::new(&c, &prov, "net-02", eu("10.21.0.1"), "[]", "[]");
    // In the autosigned range, but named after the master, the CA's files and the CA node.
    let impostor = Image::new(&c, &prov, "m-eu-1", eu("10.20.9.9"), "[]", "[]");
    let ca_named = Image::new(&c, &prov, "ca", eu("10.20.9.10"), "[]", "[]");
    let ca_node_named = Image::new(&c, &prov, "ca-node", eu("10.20.9.11"), "[]", "[]");
    // Named after a user of the collective: only the CA knows that name's kind, and refuses it.
    let user_named = Image::new(&c, &prov, "bob", eu("10.20.9.12"), "[]", "[]");
    let bob_before = issued(&c, "bob");
    let _booted: Vec<Responder> = [
        &web,
        &net1,
        &net2,
        &impostor,
        &ca_named,
        &ca_node_named,
        &user_named,
    ]
    .iter()
    .map(|i| i.boot(&c))
    .collect();
    let mut p = Provisioner::start(&cfg);

    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(LONG, "web-01 and net-01 provisioned", || {
            assert!(p.child.is_running(), "{}", p.child.stderr_text());
            ["web-01", "net-01"]
                .iter()
                .all(|n| status_of(&cfg, n).is_some_and(|r| r["status"] == "provisioned"))
        })
    }));
    if done.is_err() {
        let log = p.child.stderr_text();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "not provisioned: {:#?}\nprovisioner log (newest first):\n{}",
            Provisioner::status(&cfg),
            tail.join("\n")
        );
    }
    eventually(LONG, "the others refused", || {
        ["net-02", "m-eu-1", "ca", "ca-node"]
            .iter()
            .all(|n| status_of(&cfg, n).is_some_and(|r| r["status"] == "refused"))
    });
    let st = Provisioner::status(&cfg);
    assert_eq!(st["web-01"]["master"], "m-us-1", "{st:?}");
    assert_eq!(st["net-01"]["master"], "m-eu-1", "{st:?}");
    assert!(
        st["net-02"]["error"]
            .as_str()
            .unwrap()
            .contains("not expected"),
        "{st:?}"
    );
    for n in ["m-eu-1", "ca", "ca-node"] {
        assert!(
            st[n]["error"].as_str().unwrap().contains("reserved"),
            "{n}: {st:?}"
        );
    }
    assert!(
        st["bob"]["error"]
            .as_str()
            .unwrap()
            .contains("user certificate"),
        "{st:?}"
    );
    assert_eq!(st["bob"]["refusal"], "never", "{st:?}");
    assert_eq!(
        issued(&c, "bob"),
        bob_before,
        "bob's certificate is untouched"
    );
    // Nothing was signed for them, and the master's certificate was never cleaned.
    for img in [&net2, &impostor, &ca_named, &ca_node_named, &user_named] {
        assert!(img.certificate().is_none());
    }
    assert_eq!(issued(&c, "m-eu-1"), m_eu_1_before);
    assert!(issued(&c, "ca").is_empty());

    // The classification reached web-01: its classes and parameters, in the main collective.
    eventually(LONG, "web-01 advertising its classes", || {
        find(&c, &["-C", "hadoop::worker"]) == vec!["web-01".to_string()]
    });
    assert_eq!(find(&c, &["-C", "role::web"]), vec!["web-01"]);
    assert_eq!(find(&c, &["-F", "rack=r7"]), vec!["web-01"]);
    assert_eq!(find(&c, &["-F", "environment=production"]), vec!["web-01"]);
    // net-01 was expected by its address: no classification.
    assert!(!find(&c, &["-C", "hadoop::worker"]).contains(&"net-01".to_string()));

    // `mco classify` answers as an external node classifier.
    let classify = |node: &str| {
        Cmd::mco()
            .args(["classify", node, "--config", &s(&cfg)])
            .run()
    };
    let out = classify("web-01");
    out.assert_success();
    let enc: Value = serde_norway::from_str(&out.stdout).expect("YAML");
    assert_eq!(
        enc,
        json!({"classes": ["hadoop::worker", "role::web"], "parameters": {"rack": "r7"}, "environment": "production"})
    );
    let out = classify("stranger-01");
    assert_eq!(out.status, 1, "{out:?}");
    assert!(out.stderr.contains("not an expected node"), "{out:?}");
    let out = classify("../etc/passwd");
    assert_ne!(out.status, 0, "{out:?}");

    // A real Puppet run classified by it applies the classes it names.
    let pp = c.scratch().join("puppet");
    for d in ["conf", "var", "code/environments/production/manifests"] {
        fs::create_dir_all(pp.join(d)).unwrap();
    }
    let enc_script = pp.join("enc.sh");
    fs::write(
        &enc_script,
        format!(
            "#!/bin/sh\nexec {mco:?} classify \"$1\" --config {cfg:?}\n",
            mco = s(&mco_tests::bin_path("mco")),
            cfg = s(&cfg)
        ),
    )
    .unwrap();
    fs::set_permissions(
        &enc_script,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let applied = pp.join("applied");
    let manifest = pp.join("site.pp");
    fs::write(
        &manifest,
        format!(
            "class hadoop::worker {{\n  file {{ {f:?}: content => \"worker rack=${{::rack}}\\n\" }}\n}}\n\
             class role::web {{\n  file {{ {g:?}: content => \"web\\n\" }}\n}}\n\
             class role::db {{\n  file {{ {h:?}: content => \"db\\n\" }}\n}}\n",
            f = s(&applied.with_extension("worker")),
            g = s(&applied.with_extension("web")),
            h = s(&applied.with_extension("db")),
        ),
    )
    .unwrap();
    let puppet = |certname: &str| {
        Command::new("puppet")
            .arg("apply")
            .arg("--confdir")
            .arg(pp.join("conf"))
            .arg("--vardir")
            .arg(pp.join("var"))
            .arg("--codedir")
            .arg(pp.join("code"))
            .arg("--environmentpath")
            .arg(pp.join("code/environments"))
            .arg("--node_terminus=exec")
            .arg(format!("--external_nodes={}", s(&enc_script)))
            .arg("--certname")
            .arg(certname)
            .arg("--detailed-exitcodes")
            .arg(&manifest)
            .output()
            .expect("puppet runs")
    };
    let run = puppet("web-01");
    // 2: changes applied, no failures.
    assert_eq!(
        run.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        fs::read_to_string(applied.with_extension("worker")).unwrap(),
        "worker rack=r7\n"
    );
    assert_eq!(
        fs::read_to_string(applied.with_extension("web")).unwrap(),
        "web\n"
    );
    assert!(!applied.with_extension("db").exists());
    // A node the classifier does not know is refused by Puppet: nothing is applied.
    let run = puppet("stranger-01");
    assert!(!run.status.success(), "{run:?}");
    assert!(!applied.with_extension("db").exists());

    p.child.kill();
}

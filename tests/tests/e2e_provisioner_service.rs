//! The provisioner as a service of its own: SIGTERM lets the step in flight finish within the
//! grace period and leaves the journal where a restarted provisioner resumes, and its config is
//! never confused with a client config (`MCO_CONFIG`).

use std::path::Path;
use std::time::Duration;

use mco_tests::provisioning::{ca_node, master, provisioning_broker, Image, Provisioner};
use mco_tests::{eventually, Cmd, SecureCollective};
use serde_json::json;

const LONG: Duration = Duration::from_secs(90);

fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp paths").to_string()
}

#[test]
fn sigterm_lets_the_step_in_flight_finish_and_the_next_start_resumes() {
    let c = SecureCollective::builder()
        .spare_node("ca-node")
        .spare_node("m-eu-1")
        .spare_node("slow-01")
        .start();
    let prov = provisioning_broker(&c);
    let _ca = ca_node(&c, &["slow-*"], "alice");
    let _m = master(&c, "m-eu-1", "eu", "10.0.0.11", 1);
    // The bootstrap waits for a file the test writes once the provisioner has been told to stop,
    // so the signal is sure to arrive while the step is in flight.
    let go = c.scratch().join("go");
    let ran = c.scratch().join("bootstrap-ran");
    let bootstrap = format!(
        r#"["sh", "-c", "while [ ! -e {go} ]; do sleep 0.1; done; echo done > {ran}; echo Notice: applied"]"#,
        go = s(&go),
        ran = s(&ran)
    );
    let img = Image::new(
        &c,
        &prov,
        "slow-01",
        json!({"region": "eu"}),
        &bootstrap,
        "[]",
    );
    let cfg = Provisioner::configure(
        &c,
        &prov,
        "alice",
        "workers = 2\ninterval = \"500ms\"\nshutdown_grace = \"60s\"\n\
         [expected]\nidentities = [\"slow-*\"]\n[ca]\nidentity = \"ca-node\"\n\
         [masters]\nidentities = [\"m-*\"]\nclasses = [\"puppet::master\"]\n",
    );
    let _node = img.boot(&c);
    let mut p = Provisioner::start(&cfg);
    eventually(LONG, "slow-01 configured and bootstrapping", || {
        assert!(p.child.is_running(), "{}", p.child.stderr_text());
        Provisioner::status(&cfg)
            .get("slow-01")
            .is_some_and(|r| r["step"] == "configure" && r["status"] == "in_progress")
    });
    assert!(p.child.signal(libc::SIGTERM));
    eventually(
        LONG,
        "the provisioner to wait for the step in flight",
        || {
            p.child
                .stderr_text()
                .contains("waiting for the steps in flight")
        },
    );
    assert!(p.child.is_running(), "it stopped before the step finished");
    std::fs::write(&go, "").unwrap();
    let status = p
        .child
        .wait_exit(LONG)
        .expect("the provisioner exits after the step");
    assert!(status.success(), "{status:?}\n{}", p.child.stderr_text());
    let log = p.child.stderr_text();
    assert!(log.contains("every step in flight finished"), "{log}");
    assert!(ran.exists(), "the bootstrap ran to its end");
    // The journal says where it stopped: bootstrapped, not restarted, not counted as a failure.
    let rec = Provisioner::status(&cfg)["slow-01"].clone();
    assert_eq!(rec["status"], "in_progress", "{rec}");
    assert_eq!(rec["step"], "bootstrap", "{rec}");
    assert_eq!(rec["attempts"], 0, "{rec}");
    assert!(img.certificate().is_some());

    // The next start takes it up from there.
    let mut p = Provisioner::start(&cfg);
    eventually(LONG, "slow-01 provisioned after the restart", || {
        assert!(p.child.is_running(), "{}", p.child.stderr_text());
        Provisioner::status(&cfg)
            .get("slow-01")
            .is_some_and(|r| r["status"] == "provisioned")
    });
    p.child.kill();
}

#[test]
fn the_provisioner_config_is_never_a_client_config() {
    let c = SecureCollective::builder().start();
    let prov = provisioning_broker(&c);
    let cfg = Provisioner::configure(
        &c,
        &prov,
        "alice",
        "[expected]\nidentities = [\"*\"]\n[ca]\nidentity = \"ca-node\"\n\
         [masters]\nidentities = [\"m-*\"]\n",
    );
    let client = c.client_config("alice");
    // An exported MCO_CONFIG (a client config) is not read as the provisioner's.
    let out = Cmd::mco()
        .args(["provision", "status", "--config", &s(&cfg)])
        .env("MCO_CONFIG", &client)
        .run();
    out.assert_success();
    assert!(out.stdout.contains("provisioned: 0"), "{out:?}");
    let out = Cmd::new(mco_tests::bin_path("mco-provisioner"))
        .args(["status"])
        .env("MCO_CONFIG", &client)
        .env_remove("MCO_PROVISIONER_CONFIG")
        .run();
    assert_ne!(out.status, 0, "{out:?}");
    assert!(
        out.stderr.contains("/etc/mco/provisioner.toml"),
        "the default provisioner config is named, not MCO_CONFIG's file: {out:?}"
    );
    assert!(!out.stderr.contains(&s(&client)), "{out:?}");
    // MCO_PROVISIONER_CONFIG is.
    let out = Cmd::new(mco_tests::bin_path("mco-provisioner"))
        .args(["status"])
        .env("MCO_PROVISIONER_CONFIG", &cfg)
        .run();
    out.assert_success();
    // A client config given as the provisioner's is refused with the keys it lacks.
    let out = Cmd::new(mco_tests::bin_path("mco-provisioner"))
        .args(["status", "--config", &s(&client)])
        .run();
    assert_ne!(out.status, 0, "{out:?}");
    assert!(out.stderr.contains("main_config"), "{out:?}");
}

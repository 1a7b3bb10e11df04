//! First-boot fact sources end to end: real responders whose `[facts]` name a `key=value` file
//! (`keyvalue_files`), one-value files (`value_files`) and cloud user data (`userdata_files`),
//! found with `mco find` and read back with `mco inventory`; a `key=value` file with a bad line
//! leaves its responder running, with its good facts, and the bad line named in its log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mco_tests::{eventually, mco, NatsServer, Output, Responder, ResponderSpec};
use serde_json::json;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A path as a TOML string.
fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// The `[facts]` keys naming a node's three first-boot sources.
fn boot_sources(keyvalue: &Path, role: &Path, userdata: &Path) -> String {
    format!(
        "keyvalue_files = [{}]\nvalue_files = {{ role = {} }}\nuserdata_files = [{}]\n",
        toml_path(keyvalue),
        toml_path(role),
        toml_path(userdata)
    )
}

fn find(url: &str, args: &[&str]) -> Output {
    let mut all = vec![
        "find",
        "--nats",
        url,
        "--dt",
        "1s",
        "--discovery-window",
        "500ms",
    ];
    all.extend_from_slice(args);
    mco(all)
}

#[track_caller]
fn assert_finds(url: &str, filter: &str, expected: &str) {
    let out = find(url, &["-F", filter]);
    out.assert_success();
    assert_eq!(out.stdout, expected, "-F {filter}\n{out:?}");
}

fn inventory_facts(url: &str, node: &str) -> serde_json::Value {
    let out = mco(["inventory", node, "-j", "--nats", url]);
    out.assert_success();
    out.stdout_json()["facts"].clone()
}

#[test]
fn first_boot_fact_sources_are_served() {
    let nats = NatsServer::start();
    let url = nats.url();
    let files = tempfile::tempdir().unwrap();
    let dir = files.path();

    // boot-web: what cloud-init would leave on a web node.
    let web_kv = write(
        dir,
        "web-facts.txt",
        "# written from user data\nregion = eu-west-1\ncluster=alpha\ncpus=8\n",
    );
    let web_role = write(dir, "web-role", "web\n");
    let web_ud = write(
        dir,
        "web-user-data.txt",
        "#cloud-config\npackages: [nginx]\nfacts:\n  tier: frontend\n  rack: {row: 3}\n  \
         ports: [80, 443]\n",
    );
    // boot-db: its key=value file has a bad line, its user data is a shell script, and its
    // Ruby-era user data uses the `:facts:` key.
    let db_kv = write(
        dir,
        "db-facts.txt",
        "region=us-east-1\nthis line is bad\ncluster=beta\n",
    );
    let db_role = write(dir, "db-role", "db\n");
    let db_script = write(
        dir,
        "db-user-data.sh",
        "#!/bin/sh\necho 'facts: {tier: x}'\n",
    );
    let db_ud = write(dir, "db-user-data.yaml", "---\n:facts:\n  tier: backend\n");

    let web = Responder::spawn(
        &nats,
        ResponderSpec::new("boot-web").facts_toml(&boot_sources(&web_kv, &web_role, &web_ud)),
    );
    let db = Responder::spawn(
        &nats,
        ResponderSpec::new("boot-db").facts_toml(&format!(
            "keyvalue_files = [{}]\nvalue_files = {{ role = {} }}\nuserdata_files = [{}, {}]\n",
            toml_path(&db_kv),
            toml_path(&db_role),
            toml_path(&db_script),
            toml_path(&db_ud),
        )),
    );
    web.wait_ready(&nats);
    db.wait_ready(&nats);

    // value_files
    assert_finds(&url, "role=web", "boot-web\n");
    assert_finds(&url, "role=db", "boot-db\n");
    // keyvalue_files, including the good line after the bad one
    assert_finds(&url, "region=eu-west-1", "boot-web\n");
    assert_finds(&url, "cluster=beta", "boot-db\n");
    assert_finds(&url, "cpus>4", "boot-web\n");
    // userdata_files, nested and with `:facts:`
    assert_finds(&url, "tier=frontend", "boot-web\n");
    assert_finds(&url, "rack.row=3", "boot-web\n");
    assert_finds(&url, "tier=backend", "boot-db\n");

    // Types: key=value facts are strings, user-data facts keep their YAML types.
    let facts = inventory_facts(&url, "boot-web");
    assert_eq!(facts["role"], "web", "{facts}");
    assert_eq!(facts["region"], "eu-west-1", "{facts}");
    assert_eq!(facts["cpus"], "8", "{facts}");
    assert_eq!(facts["tier"], "frontend", "{facts}");
    assert_eq!(facts["rack"], json!({"row": 3}), "{facts}");
    assert_eq!(facts["ports"], json!([80, 443]), "{facts}");

    let facts = inventory_facts(&url, "boot-db");
    assert_eq!(facts["region"], "us-east-1", "{facts}");
    assert_eq!(facts["cluster"], "beta", "{facts}");
    assert_eq!(facts["tier"], "backend", "{facts}");

    // The bad line is a warning naming the file and line; the shell script is skipped silently.
    let mut db = db;
    let says = format!(
        "{}:2: expected key=value, found \"this line is bad\"",
        db_kv.display()
    );
    eventually(Duration::from_secs(10), "the bad-line warning", || {
        db.child.stderr_text().contains(&says)
    });
    let log = db.child.stderr_text();
    assert!(!log.contains("db-user-data"), "{log}");
    assert!(db.child.is_running(), "{log}");
    // boot-web's sources are all good: its log names none of them.
    let log = web.child.stderr_text();
    assert!(!log.contains(&dir.display().to_string()), "{log}");
}

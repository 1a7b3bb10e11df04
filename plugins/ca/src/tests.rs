//! The agent within the process: settings, names, the external signer, and what every
//! name-taking action refuses, against a real CA directory.

use super::*;

#[test]
fn settings_are_strict() {
    let t: toml::Table = "dir = \"pki\"\nallow_names = [\"web-*\"]\nbogus = 1\n"
        .parse()
        .unwrap();
    let errs = CaSettings::from_table(&t, Path::new("/etc/mco/responder.toml")).unwrap_err();
    assert!(
        errs.0
            .iter()
            .any(|e| e.key == "plugin.ca.bogus" && e.message.starts_with("unknown key")),
        "{errs:?}"
    );
    let t: toml::Table = "dir = \"pki\"\nallow_names = [\"web-*\"]\n"
        .parse()
        .unwrap();
    let s = CaSettings::from_table(&t, Path::new("/etc/mco/responder.toml")).unwrap();
    assert_eq!(s.dir, PathBuf::from("/etc/mco/pki"));
    let a = CaAgent::new(s);
    assert!(a.allow.is_match("web-1"));
    assert!(!a.allow.is_match("db-1"));
}

#[test]
fn two_bad_keys_and_an_unknown_one_are_reported_together() {
    let t: toml::Table = "dir = 7\nsigner_timeout = \"soon\"\nsigner_timout = \"5s\"\n"
        .parse()
        .unwrap();
    let errs = CaSettings::from_table(&t, Path::new("/etc/mco/responder.toml")).unwrap_err();
    let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "plugin.ca.signer_timout",
            "plugin.ca.dir",
            "plugin.ca.signer_timeout"
        ]
    );
    assert!(errs.0[0].message.starts_with("unknown key"), "{errs}");
    assert!(errs.0[1].message.contains("integer"), "{errs}");
    assert!(errs.0.iter().all(|e| e.file == "/etc/mco/responder.toml"));
    // A missing dir is reported along with the rest.
    let t: toml::Table = "allow_names = [\"[\"]\n".parse().unwrap();
    let errs = CaSettings::from_table(&t, Path::new("/etc/mco/responder.toml")).unwrap_err();
    let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["plugin.ca.dir", "plugin.ca.allow_names"]);
}

fn argv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn external_signer_stdin_to_stdout_with_timeout() {
    let good = argv(&[
        "sh",
        "-c",
        "read first; test \"$first\" = CSR || exit 3; printf -- '-----BEGIN CERTIFICATE-----\\nX\\n'",
    ]);
    let pem = run_signer(&good, "CSR\n", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let echo = argv(&["cat"]);
    let e = run_signer(&echo, "CSR\n", Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(e.message.contains("no PEM certificate"), "{}", e.message);
    let failing = argv(&["sh", "-c", "echo nope >&2; exit 1"]);
    let e = run_signer(&failing, "", Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(e.message.contains("nope"), "{}", e.message);
    let slow = argv(&["sleep", "5"]);
    let e = run_signer(&slow, "", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(e.message.contains("did not finish"), "{}", e.message);
}

#[test]
fn names() {
    assert_eq!(node_name("node:a").unwrap(), "a");
    assert_eq!(node_name("a").unwrap(), "a");
    assert!(node_name("user:a").is_err());
    assert!(node_name("broker:a").is_err());
}

struct Node;

impl mco_core::agent::NodeInfo for Node {
    fn identity(&self) -> &str {
        "ca-node"
    }
    fn collectives(&self) -> &[String] {
        &[]
    }
    fn facts(&self) -> std::sync::Arc<mco_core::facts::FactMap> {
        std::sync::Arc::new(Map::new())
    }
    fn classes(&self) -> std::sync::Arc<Vec<String>> {
        std::sync::Arc::new(Vec::new())
    }
    fn agents(&self) -> Vec<mco_core::agent::AgentSummary> {
        Vec::new()
    }
    fn stats(&self) -> Map<String, Value> {
        Map::new()
    }
    fn uptime(&self) -> Duration {
        Duration::ZERO
    }
}

fn ctx() -> RequestContext {
    RequestContext {
        request_id: "r".into(),
        caller: "user:prov".into(),
        sender: "prov".into(),
        collective: "mcollective".into(),
        node: std::sync::Arc::new(Node),
    }
}

/// A CA with a user `alice`, the broker, the CA node, nodes web-1, web-2, and a second
/// broker certificate `nats-2` (more names than its own).
fn lab(allow: &[&str]) -> (tempfile::TempDir, CaAgent) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let ca = Ca::init(&dir, &Default::default()).unwrap();
    let opts = pki::IssueOptions::default();
    ca.issue("alice", pki::Kind::User, &opts).unwrap();
    for n in ["broker", "ca-node", "web-1", "web-2"] {
        ca.issue(n, pki::Kind::Node, &opts).unwrap();
    }
    let broker = pki::IssueOptions {
        dns: vec!["nats-2.example.net".into()],
        ..pki::IssueOptions::default()
    };
    ca.issue("nats-2", pki::Kind::Node, &broker).unwrap();
    ca.crl(&CrlOptions::default()).unwrap();
    let agent = CaAgent::new(CaSettings {
        dir,
        allow_names: allow.iter().map(|s| s.to_string()).collect(),
        reserved_names: vec!["nats-1".into()],
        signer: Vec::new(),
        signer_timeout: Duration::from_secs(5),
    });
    (tmp, agent)
}

/// Every file of the PKI directory and its bytes.
fn snapshot(a: &CaAgent) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(&a.settings.dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn call(a: &CaAgent, action: &str, name: &str) -> ActionResult {
    let input = json!({"name": name}).as_object().cloned().unwrap();
    a.call(action, &input, &ctx()).await
}

#[tokio::test]
async fn every_name_taking_action_refuses_what_it_must_not_touch() {
    let (_tmp, a) = lab(&["*"]);
    let before = snapshot(&a);
    let alice_serial = Index::load(&a.settings.dir)
        .unwrap()
        .certs
        .iter()
        .find(|e| e.name == "alice")
        .unwrap()
        .serial
        .clone();
    for action in ["revoke", "clean", "sign"] {
        for (name, why) in [
            ("ca", "reserved"),
            ("CA", "reserved"),
            ("node:ca", "reserved"),
            ("broker", "reserved"),
            ("nats-1", "reserved"),
            ("ca-node", "reserved"),
            ("alice", "user certificate"),
            ("nats-2", "more names than its own"),
            ("user:alice", "node certificates only"),
            ("", "empty"),
            ("../ca", "not a valid name"),
            ("a/../../ca", "not allowed"),
        ] {
            let e = call(&a, action, name).await.unwrap_err();
            assert!(e.message.contains(why), "{action} {name:?}: {}", e.message);
            // Marked as a refusal, for callers that must not retry it.
            let kind = e.data.get("refused").and_then(|v| v.as_str());
            assert!(
                matches!(
                    kind,
                    Some("reserved" | "other_kind" | "invalid" | "not_allowed")
                ),
                "{action} {name:?}: {:?}",
                e.data
            );
            if why == "reserved" {
                assert_eq!(kind, Some("reserved"));
            }
        }
    }
    // A serial is a name like any other: it revokes nothing of alice's.
    let e = call(&a, "revoke", &alice_serial).await.unwrap_err();
    assert!(
        e.message.contains("no unrevoked certificate"),
        "{}",
        e.message
    );
    assert_eq!(snapshot(&a), before, "nothing changed on disk");
}

#[tokio::test]
async fn allow_names_binds_revoke_and_clean_too() {
    let (_tmp, a) = lab(&["web-1"]);
    let before = snapshot(&a);
    for action in ["revoke", "clean", "sign"] {
        let e = call(&a, action, "web-2").await.unwrap_err();
        assert!(e.message.contains("allow_names"), "{action}: {}", e.message);
        assert_eq!(
            e.data.get("refused").and_then(|v| v.as_str()),
            Some("not_allowed")
        );
    }
    assert_eq!(snapshot(&a), before);
    let r = call(&a, "clean", "node:web-1").await.unwrap();
    assert_eq!(r["revoked"].as_array().unwrap().len(), 1);
    assert!(!a.settings.dir.join("web-1.pem").exists());
    assert!(a.settings.dir.join("web-2.pem").exists());
    assert!(a.settings.dir.join("ca.key").exists());
}

#[tokio::test]
async fn clean_leaves_a_file_that_is_not_the_nodes_certificate() {
    let (_tmp, a) = lab(&["*"]);
    // web-2.pem replaced by a user's certificate: not web-2's to remove.
    let dir = &a.settings.dir;
    std::fs::copy(dir.join("alice.pem"), dir.join("web-2.pem")).unwrap();
    let before = snapshot(&a);
    let e = call(&a, "clean", "web-2").await.unwrap_err();
    assert!(e.message.contains("left alone"), "{}", e.message);
    assert_eq!(snapshot(&a), before);
}

//! Tests of `provisioner.toml` parsing.

use super::*;

const GOOD: &str = r#"
main_config = "main.toml"
provisioning_config = "/etc/mco/prov.toml"
workers = 8
backoff = "2s"
max_backoff = "10s"
metrics_listen = "127.0.0.1:9464"
[expected]
identities = ["web-*"]
registry_file = "expected.txt"
[ca]
identities = ["ca-*"]
[masters]
identities = ["puppet-*"]
classes = ["puppet::master"]
facts = ["role=master"]
criteria = ["datacenter", "region"]
servers_fact = "mco_servers"
[steps]
final_run = true
[[notify]]
type = "webhook"
url = "http://127.0.0.1:8080/hook"
[[notify]]
type = "exec"
command = ["logger", "-t", "mco"]
"#;

#[test]
fn masters_and_the_ca_must_be_named() {
    let bare = GOOD
        .replace("identities = [\"puppet-*\"]\n", "")
        .replace("[ca]\nidentities = [\"ca-*\"]\n", "");
    let err = ProvisionerConfig::from_toml(Path::new("/p.toml"), &bare)
        .unwrap_err()
        .to_string();
    assert!(err.contains("masters.identities"), "{err}");
    assert!(err.contains("name the CA node"), "{err}");
    let c = ProvisionerConfig::from_toml(Path::new("/p.toml"), GOOD).unwrap();
    assert_eq!(c.masters.filter.identity, ["puppet-*"]);
    assert_eq!(c.ca_identities, ["ca-*"]);
}

#[test]
fn reads_a_full_config_relative_to_its_file() {
    let c = ProvisionerConfig::from_toml(Path::new("/srv/p/provisioner.toml"), GOOD).unwrap();
    assert_eq!(c.main_config, PathBuf::from("/srv/p/main.toml"));
    assert_eq!(c.provisioning_config, PathBuf::from("/etc/mco/prov.toml"));
    assert_eq!(
        c.expected.registry_file,
        Some(PathBuf::from("/srv/p/expected.txt"))
    );
    assert_eq!(
        c.state_file,
        PathBuf::from("/srv/p/provisioner.state.jsonl")
    );
    assert_eq!(c.pins_file, PathBuf::from("/srv/p/provisioner.state.pins"));
    assert_eq!(c.workers, 8);
    assert_eq!(c.masters.filter.class, vec!["puppet::master"]);
    assert_eq!(c.masters.filter.fact.len(), 1);
    assert_eq!(c.masters.criteria, vec!["datacenter", "region"]);
    assert!(c.steps.final_run && c.steps.sign);
    assert_eq!(c.notify.len(), 2);
    assert_eq!(c.delay_after(1), Duration::from_secs(2));
    assert_eq!(c.delay_after(2), Duration::from_secs(4));
    assert_eq!(c.delay_after(9), Duration::from_secs(10));
}

#[test]
fn refuses_what_would_be_unsafe_or_wrong() {
    let bad = r#"
main_config = "m.toml"
workers = 0
colour = "blue"
[masters]
criteria = ["region"]
[steps]
sign = false
[[notify]]
type = "webhook"
url = "ftp://example.com/x"
"#;
    let e = ProvisionerConfig::from_toml(Path::new("p.toml"), bad)
        .unwrap_err()
        .to_string();
    for needle in [
        "provisioning_config",
        "workers",
        "colour",
        "expected",
        "masters are discovered",
        "steps.configure",
        "notify[0].url",
        "http:// or https://",
    ] {
        assert!(e.contains(needle), "{needle:?} missing from {e}");
    }
}

/// GOOD with its `[[notify]]` tables replaced by `notify`.
fn with_notify(notify: &str) -> String {
    let cut = GOOD.find("[[notify]]").unwrap();
    format!("{}{notify}", &GOOD[..cut])
}

#[test]
fn webhooks_take_https_a_ca_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    mco_pki::Ca::init(&dir.path().join("pki"), &mco_pki::CaOptions::default()).unwrap();
    let text = with_notify(
        r#"
[[notify]]
type = "webhook"
url = "https://hooks.example.com/provisioned"
ca = "pki/ca.pem"
timeout = "3s"
headers = { Authorization = "Bearer s3cret", X-Tenant = "eu" }
[[notify]]
type = "webhook"
url = "https://hooks.example.com/public"
"#,
    );
    let c = ProvisionerConfig::from_toml(&dir.path().join("p.toml"), &text).unwrap();
    let [Notifier::Webhook(a), Notifier::Webhook(b)] = &c.notify[..] else {
        panic!("two webhooks: {:?}", c.notify);
    };
    assert_eq!(a.timeout(), Duration::from_secs(3));
    let mut names = a.header_names();
    names.sort();
    assert_eq!(names, ["authorization", "x-tenant"]);
    assert!(!format!("{:?}", c.notify).contains("s3cret"));
    assert!(b.header_names().is_empty());
}

#[test]
fn a_bad_webhook_is_refused_at_load_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.pem"), "no certificate here\n").unwrap();
    let text = with_notify(
        r#"
[[notify]]
type = "webhook"
url = "https://h/x"
ca = "missing.pem"
[[notify]]
type = "webhook"
url = "https://h/x"
ca = "empty.pem"
[[notify]]
type = "webhook"
url = "https://h/x"
headers = { Authorization = "Bearer s3cret\n", "bad name" = "x", X-Number = 3 }
[[notify]]
type = "webhook"
url = "https://h/x"
insecure = true
[[notify]]
type = "webhook"
url = "http://h/x"
ca = "empty.pem"
[[notify]]
type = "webhook"
url = "https://h/x"
headers = "Authorization: x"
"#,
    );
    let e = ProvisionerConfig::from_toml(&dir.path().join("p.toml"), &text)
        .unwrap_err()
        .to_string();
    for needle in [
        "notify[0].ca",
        "missing.pem",
        "notify[1].ca",
        "holds no certificate",
        "notify[2].headers.Authorization",
        "notify[2].headers.bad name",
        "notify[2].headers.X-Number",
        "notify[3].insecure",
        "notify[4].ca",
        "https:// URLs only",
        "notify[5].headers",
    ] {
        assert!(e.contains(needle), "{needle:?} missing from {e}");
    }
    assert!(!e.contains("s3cret"), "{e}");
}

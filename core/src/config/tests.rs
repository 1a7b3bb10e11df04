use super::*;

#[test]
fn durations() {
    assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
    assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
    assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
    assert!(parse_duration("5x").is_err());
    assert!(parse_duration("").is_err());
}

#[test]
fn responder_design_example_loads() {
    let text = r#"
identity = "web-01.example.net"
collectives = ["mcollective", "eu"]
[nats]
servers = ["nats://127.0.0.1:4222"]
[facts]
files = ["/etc/mco/facts.yaml", "/etc/mco/facts.d/extra.json"]
commands = []
classes_file = "/var/lib/puppet/state/classes.txt"
refresh = "5m"
[agents]
enabled = ["rpcutil", "resource", "nrpe"]
ddl_dirs = []
[security]
ca = "/etc/mco/ssl/ca.pem"
cert = "/etc/mco/ssl/node.pem"
key = "/etc/mco/ssl/node.key"
crl = "/etc/mco/ssl/ca.crl"
insecure = false
policy_dir = "/etc/mco/policies"
default_policy = "deny"
audit_log = "/var/log/mco/audit.jsonl"
[plugin.nrpe]
conf_dir = "/etc/nagios/nrpe.d"
"#;
    let c = ResponderConfig::from_toml(Path::new("r.toml"), text).unwrap();
    assert!(
        !c.security.presign,
        "RFC 8032 deterministic signing is the default"
    );
    assert_eq!(c.security.max_ttl, DEFAULT_MAX_TTL);
    assert_eq!(c.security.replay_cache, DEFAULT_REPLAY_CACHE);
    let on = text.replace(
        "insecure = false",
        "presign = true\nmax_ttl = \"90s\"\nreplay_cache = 7",
    );
    let on = ResponderConfig::from_toml(Path::new("r.toml"), &on).unwrap();
    assert!(on.security.presign);
    assert_eq!(on.security.max_ttl, Duration::from_secs(90));
    assert_eq!(on.security.replay_cache, 7);
    for bad in ["max_ttl = \"0s\"", "replay_cache = 0"] {
        let t = text.replace("insecure = false", bad);
        let e = ResponderConfig::from_toml(Path::new("r.toml"), &t).unwrap_err();
        assert!(e.to_string().contains("security."), "{bad}: {e}");
    }
    assert_eq!(c.collectives, vec!["mcollective", "eu"]);
    assert_eq!(c.facts.refresh, Duration::from_secs(300));
    assert!(c.plugin["nrpe"].contains_key("conf_dir"));
}

#[test]
fn every_bad_key_reported_at_once() {
    let text = r#"
identiti = "x"
collectives = "eu"
[nats]
servers = [1]
[facts]
refresh = "5 fortnights"
colour = "red"
"#;
    let e = ResponderConfig::from_toml(Path::new("/etc/r.toml"), text).unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|x| x.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "identiti",
            "collectives",
            "nats.servers",
            "facts.colour",
            "facts.refresh"
        ],
        "{e}"
    );
    assert!(e.to_string().contains("/etc/r.toml: identiti: unknown key"));
}

#[test]
fn client_design_example_loads() {
    let text = r#"
identity = "alice"
collective = "mcollective"
[nats]
servers = ["nats://127.0.0.1:4222"]
[security]
ca = "~/.config/mco/ssl/ca.pem"
cert = "~/.config/mco/ssl/alice.pem"
key = "~/.config/mco/ssl/alice.key"
insecure = false
ddl_dirs = ["/opt/ddl"]
[discovery]
timeout = "2s"
window = "300ms"
"#;
    let c = ClientConfig::from_toml(Path::new("c.toml"), text).unwrap();
    assert_eq!(c.identity, "alice");
    assert_eq!(c.ddl_dirs, vec![PathBuf::from("/opt/ddl")]);
    assert_eq!(c.discovery_window, Duration::from_millis(300));
    let e = ClientConfig::from_toml(Path::new("c.toml"), "[discovery]\nwindw = 1\n").unwrap_err();
    assert_eq!(e.0[0].key, "discovery.windw");
}

#[test]
fn a_table_reader_names_keys_under_its_table() {
    let t: Table = "timeout = true\ncolour = 1\n[sub]\nx = 2\n"
        .parse()
        .unwrap();
    let mut r = Reader::for_table(Path::new("/etc/mco/r.toml"), "plugin.p");
    r.unknown(&t, "", &["timeout", "sub"]);
    assert_eq!(r.duration(&t, "", "timeout"), None);
    let sub = r.table(&t, "", "sub").unwrap();
    r.unknown(sub, "sub", &["y"]);
    r.error("sub.y", "is required");
    let e = r.finish().unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "plugin.p.colour",
            "plugin.p.timeout",
            "plugin.p.sub.x",
            "plugin.p.sub.y"
        ]
    );
    assert!(e.0.iter().all(|e| e.file == "/etc/mco/r.toml"));
    assert!(e
        .to_string()
        .starts_with("/etc/mco/r.toml: plugin.p.colour: unknown key"));
    assert!(Reader::for_table(Path::new("x"), "plugin.p")
        .finish()
        .is_ok());
}

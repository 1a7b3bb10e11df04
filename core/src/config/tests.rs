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

#[test]
fn first_boot_fact_sources_load() {
    let text = r#"
[facts]
files = ["/etc/mco/facts.yaml"]
keyvalue_files = ["/etc/facts.txt", "~/extra.txt"]
value_files = { role = "/etc/role", "ec2.region" = "/etc/region" }
userdata_files = ["/var/lib/cloud/instance/user-data.txt"]
"#;
    let c = ResponderConfig::from_toml(Path::new("r.toml"), text).unwrap();
    assert_eq!(
        c.facts.keyvalue_files,
        vec![PathBuf::from("/etc/facts.txt"), expand_home("~/extra.txt")]
    );
    let names: Vec<(&str, &Path)> = c
        .facts
        .value_files
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_path()))
        .collect();
    assert_eq!(
        names,
        [
            ("ec2.region", Path::new("/etc/region")),
            ("role", Path::new("/etc/role"))
        ]
    );
    assert_eq!(
        c.facts.userdata_files,
        vec![PathBuf::from("/var/lib/cloud/instance/user-data.txt")]
    );

    // Absent, they are empty.
    let c = ResponderConfig::from_toml(Path::new("r.toml"), "[facts]\n").unwrap();
    assert!(c.facts.keyvalue_files.is_empty());
    assert!(c.facts.value_files.is_empty());
    assert!(c.facts.userdata_files.is_empty());
    assert_eq!(FactsConfig::default(), c.facts);

    // The table form with a [facts.value_files] header works too.
    let c = ResponderConfig::from_toml(
        Path::new("r.toml"),
        "[facts.value_files]\nrole = \"/etc/role\"\n",
    )
    .unwrap();
    assert_eq!(c.facts.value_files["role"], PathBuf::from("/etc/role"));
}

#[test]
fn first_boot_fact_sources_of_the_wrong_type_are_named() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "keyvalue_files = \"/etc/facts.txt\"",
            "facts.keyvalue_files",
            "expected an array of strings, found string",
        ),
        (
            "keyvalue_files = [\"/etc/facts.txt\", 3]",
            "facts.keyvalue_files",
            "expected an array of strings, found array",
        ),
        (
            "userdata_files = { a = \"/x\" }",
            "facts.userdata_files",
            "expected an array of strings, found table",
        ),
        (
            "value_files = [\"/etc/role\"]",
            "facts.value_files",
            "expected a table of fact names to paths, like { role = \"/etc/role\" }, found array",
        ),
        (
            "value_files = \"/etc/role\"",
            "facts.value_files",
            "expected a table of fact names to paths, like { role = \"/etc/role\" }, found string",
        ),
        (
            "value_files = { role = 1 }",
            "facts.value_files.role",
            "expected a path (a string), found integer",
        ),
        (
            "value_files = { role = { path = \"/etc/role\" } }",
            "facts.value_files.role",
            "expected a path (a string), found table",
        ),
        (
            "value_files = { \"my role\" = \"/etc/role\" }",
            "facts.value_files.my role",
            "a fact name holds only letters, digits, '_', '-' and '.', not ' '",
        ),
        (
            "value_files = { \"\" = \"/etc/role\" }",
            "facts.value_files.",
            "a fact name cannot be empty",
        ),
        (
            "value_file = { role = \"/etc/role\" }",
            "facts.value_file",
            "unknown key (known here: files, keyvalue_files, value_files, userdata_files, commands",
        ),
    ];
    for (line, key, message) in cases {
        let text = format!("[facts]\n{line}\n");
        let e = ResponderConfig::from_toml(Path::new("/etc/r.toml"), &text).unwrap_err();
        assert_eq!(e.0.len(), 1, "{line}: {e}");
        assert_eq!(e.0[0].key, *key, "{line}: {e}");
        assert!(e.0[0].message.starts_with(message), "{line}: {e}");
        assert!(
            e.to_string().starts_with(&format!("/etc/r.toml: {key}: ")),
            "{line}: {e}"
        );
    }
    // Every bad value of the table is reported at once.
    let e = ResponderConfig::from_toml(
        Path::new("r.toml"),
        "[facts]\nvalue_files = { a = 1, \"b c\" = \"/x\", d = true, ok = \"/y\" }\n",
    )
    .unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|x| x.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "facts.value_files.a",
            "facts.value_files.d",
            "facts.value_files.b c"
        ],
        "{e}"
    );
}

#[test]
fn cluster_connection_settings_load_and_are_bounded() {
    let base = "identity = \"n1\"\n[nats]\nservers = [\"nats://a:4222\", \"nats://b:4222\"]\n";
    let c = ResponderConfig::from_toml(Path::new("r.toml"), base).unwrap();
    assert_eq!(c.nats.ping_interval, DEFAULT_PING_INTERVAL);
    assert!(!c.nats.servers_in_order);
    let text = format!("{base}ping_interval = \"1s\"\nservers_in_order = true\n");
    let c = ResponderConfig::from_toml(Path::new("r.toml"), &text).unwrap();
    assert_eq!(c.nats.ping_interval, Duration::from_secs(1));
    assert!(c.nats.servers_in_order);
    for bad in [
        "ping_interval = \"1ms\"",
        "ping_interval = \"1h\"",
        "servers_in_order = 1",
    ] {
        let e =
            ResponderConfig::from_toml(Path::new("r.toml"), &format!("{base}{bad}\n")).unwrap_err();
        assert!(e.to_string().contains("nats."), "{bad}: {e}");
    }
}

//! `configure`: where the certificate files go, and the responder config
//! that brings the node up in normal mode.

use std::path::{Path, PathBuf};

use mco_core::config::{ResponderConfig, SecurityConfig};
use mco_core::provisioning::files;
use toml::{Table, Value};

/// Where `configure` writes the node's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The node certificate.
    pub cert: PathBuf,
    /// The node's certificate key (copied from the gencsr key).
    pub key: PathBuf,
    /// The CA certificate.
    pub ca: PathBuf,
    /// The CRL.
    pub crl: PathBuf,
}

/// The `[security]` paths of the current config (with `{identity}`
/// replaced), or, where it names none, `state_dir/ssl/...`.
pub fn paths(security: &SecurityConfig, state_dir: &Path, identity: &str) -> Paths {
    let ssl = state_dir.join(files::SSL_DIR);
    let pick = |p: &Option<PathBuf>, default: &str| match p {
        Some(p) => PathBuf::from(p.to_string_lossy().replace("{identity}", identity)),
        None => ssl.join(default),
    };
    Paths {
        cert: pick(&security.cert, "node.pem"),
        key: pick(&security.key, "node.key"),
        ca: pick(&security.ca, "ca.pem"),
        crl: pick(&security.crl, "ca.crl"),
    }
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.clone())).collect())
}

fn sub<'t>(t: &'t mut Table, key: &str) -> &'t mut Table {
    if !matches!(t.get(key), Some(Value::Table(_))) {
        t.insert(key.to_string(), Value::Table(Table::new()));
    }
    match t.get_mut(key) {
        Some(Value::Table(inner)) => inner,
        // Inserted just above.
        _ => unreachable!("a table was just inserted"),
    }
}

/// The config text for normal mode: `original` with identity, collectives,
/// broker URLs and certificate paths set, and `provisioning.enabled`
/// removed (with the certificate in place, provisioning then stays off).
/// The result is checked with the responder's own config reader; `file`
/// names it in errors.
pub fn new_config(
    file: &Path,
    original: &str,
    identity: &str,
    collectives: &[String],
    servers: &[String],
    paths: &Paths,
) -> Result<String, String> {
    let mut t: Table = original
        .parse()
        .map_err(|e| format!("{}: the current config does not parse: {e}", file.display()))?;
    t.insert("identity".into(), Value::String(identity.to_string()));
    t.insert("collectives".into(), strings(collectives));
    sub(&mut t, "nats").insert("servers".into(), strings(servers));
    let sec = sub(&mut t, "security");
    for (k, p) in [
        ("cert", &paths.cert),
        ("key", &paths.key),
        ("ca", &paths.ca),
        ("crl", &paths.crl),
    ] {
        sec.insert(k.into(), Value::String(p.display().to_string()));
    }
    sec.remove("insecure");
    if let Some(Value::Table(p)) = t.get_mut("provisioning") {
        p.remove("enabled");
    }
    let text = toml::to_string(&t).map_err(|e| format!("cannot write the config: {e}"))?;
    ResponderConfig::from_toml(file, &text).map_err(|e| e.to_string())?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_what_it_must_and_validates() {
        let original = r#"
collectives = ["mcollective"]
[nats]
servers = ["nats://old:4222"]
max_payload = 2048
[security]
cert = "/ssl/{identity}.pem"
key = "/ssl/{identity}.key"
policy_dir = "/etc/mco/policies"
[provisioning]
enabled = true
servers = ["tls://prov:4222"]
token_file = "/t"
ca = "/ca.pem"
[facts]
system = false
"#;
        let sec = ResponderConfig::from_toml(Path::new("r.toml"), original)
            .unwrap()
            .security;
        let p = paths(&sec, Path::new("/state"), "n1");
        assert_eq!(p.cert, PathBuf::from("/ssl/n1.pem"));
        assert_eq!(p.ca, PathBuf::from("/state/ssl/ca.pem"));
        let text = new_config(
            Path::new("r.toml"),
            original,
            "n1",
            &["mcollective".into(), "eu".into()],
            &["tls://a:1".into()],
            &p,
        )
        .unwrap();
        let cfg = ResponderConfig::from_toml(Path::new("r.toml"), &text).unwrap();
        assert_eq!(cfg.identity.as_deref(), Some("n1"));
        assert_eq!(cfg.collectives, vec!["mcollective", "eu"]);
        assert_eq!(cfg.nats.servers, vec!["tls://a:1"]);
        assert_eq!(cfg.nats.max_payload, 2048);
        assert_eq!(cfg.security.crl, Some(PathBuf::from("/state/ssl/ca.crl")));
        assert_eq!(
            cfg.security.policy_dir,
            Some(PathBuf::from("/etc/mco/policies"))
        );
        assert!(!cfg.facts.system);
        assert_eq!(cfg.provisioning.unwrap().enabled, None);

        let bad = new_config(
            Path::new("r.toml"),
            original,
            "n1",
            &["a.b".into()],
            &[],
            &p,
        )
        .unwrap_err();
        assert!(bad.contains("collectives"), "{bad}");
    }
}

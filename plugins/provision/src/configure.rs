//! `configure`: the action, where the certificate files go, and the
//! responder config that brings the node up in normal mode.

use std::path::{Path, PathBuf};

use mco_core::agent::{outputs, ActionError, ActionResult};
use mco_core::classification::Classification;
use mco_core::config::{ResponderConfig, SecurityConfig};
use mco_core::provisioning::files;
use mco_core::wire::Kind;
use mco_pki::{KEY_MODE, PUBLIC_MODE};
use mco_security::{Credentials, TrustStore};
use serde_json::{json, Map};
use toml::{Table, Value};

use crate::{aborted, cert_serial, lock_allows, now_s, str_in, trust, write, Provision};

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

/// Where `configure` keeps a node's classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassFiles {
    /// Its classes, one per line: one of the responder's `classes_files`.
    pub classes: PathBuf,
    /// Its parameters (and environment): a JSON fact file the responder reads.
    pub facts: PathBuf,
}

/// The fact file for a classification: its parameters, and its environment
/// as `environment` unless a parameter has that name.
pub fn class_facts(c: &Classification) -> Map<String, serde_json::Value> {
    let mut facts = c.parameters.clone();
    if let Some(env) = &c.environment {
        facts
            .entry("environment")
            .or_insert_with(|| serde_json::Value::String(env.clone()));
    }
    facts
}

/// The config text for normal mode: `original` with identity, collectives,
/// broker URLs and certificate paths set, and `provisioning.enabled`
/// removed (with the certificate in place, provisioning then stays off).
/// With a classification, its fact file is added to `[facts] files` and its
/// classes file to `[facts] classes_files` (besides any `classes_file`, such
/// as Puppet's own). The result is checked with the responder's own config reader;
/// `file` names it in errors.
pub fn new_config(
    file: &Path,
    original: &str,
    identity: &str,
    collectives: &[String],
    servers: &[String],
    paths: &Paths,
    classified: Option<&ClassFiles>,
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
    if let Some(cf) = classified {
        let facts = sub(&mut t, "facts");
        let fact_file = Value::String(cf.facts.display().to_string());
        match facts.get_mut("files") {
            Some(Value::Array(files)) => {
                if !files.contains(&fact_file) {
                    files.push(fact_file);
                }
            }
            _ => {
                facts.insert("files".into(), Value::Array(vec![fact_file]));
            }
        }
        let classes_file = Value::String(cf.classes.display().to_string());
        match facts.get_mut("classes_files") {
            Some(Value::Array(files)) => {
                if !files.contains(&classes_file) {
                    files.push(classes_file);
                }
            }
            _ => {
                facts.insert("classes_files".into(), Value::Array(vec![classes_file]));
            }
        }
    }
    let text = toml::to_string(&t).map_err(|e| format!("cannot write the config: {e}"))?;
    ResponderConfig::from_toml(file, &text).map_err(|e| e.to_string())?;
    Ok(text)
}

impl Provision {
    /// `configure`: checks what came over the bus against what the image
    /// shipped and installs it. Refused, with nothing on disk changed: a
    /// `ca` other than the shipped one, a certificate that does not chain to
    /// the shipped CA (or is revoked, or is for another node or key), a CRL
    /// not signed by the shipped CA or older than the node's, brokers that
    /// `allowed_servers` does not allow, and a caller other than the lock's
    /// owner. A CRL in place is never removed.
    pub(crate) fn configure(
        &self,
        identity: &str,
        dir: &Path,
        input: &Map<String, serde_json::Value>,
        caller: &str,
    ) -> ActionResult {
        if let Some(want) = input.get("identity").and_then(serde_json::Value::as_str) {
            if want != identity {
                return Err(aborted(format!("this node is {identity:?}, not {want:?}")));
            }
        }
        let prov = &self.settings.provisioning;
        let servers = mco_core::agent::split_list(str_in(input, "servers"));
        mco_core::provisioning::check_fleet_servers(&servers, &prov.allowed_servers)
            .map_err(aborted)?;
        let collectives = match input.get("collectives").and_then(serde_json::Value::as_str) {
            Some(c) => mco_core::agent::split_list(c),
            None => vec!["mcollective".to_string()],
        };
        let (_, csr_key) = Self::csr_paths(dir, identity);
        if !csr_key.exists() {
            return Err(aborted("no key yet: run gencsr first"));
        }
        let _g = self.lock_guard();
        lock_allows(dir, caller)?;
        // The only CA this node trusts is the one its image shipped.
        let shipped = prov
            .ca
            .clone()
            .ok_or_else(|| aborted("provisioning.ca is not set"))?;
        let shipped_pem = std::fs::read(&shipped)
            .map_err(|e| aborted(format!("the shipped CA {}: {e}", shipped.display())))?;
        let ca_pem = str_in(input, "ca");
        if !ca_pem.is_empty() {
            trust::same_ca(&shipped_pem, ca_pem).map_err(aborted)?;
        }
        // Stage what came over the bus, then check it exactly as the
        // responder will: the certificate must be for this node, match the
        // gencsr key and chain to the shipped CA (within validity, not
        // revoked by the CRL it will run with).
        let stage = dir.join("staging");
        let _ = std::fs::remove_dir_all(&stage);
        let staged = |name: &str, text: &str| -> Result<PathBuf, ActionError> {
            let p = stage.join(name);
            write(&p, text.as_bytes(), PUBLIC_MODE)?;
            Ok(p)
        };
        let outcome = self.check_and_install(
            identity,
            dir,
            input,
            &servers,
            &collectives,
            &shipped,
            &shipped_pem,
            &csr_key,
            &staged,
        );
        let _ = std::fs::remove_dir_all(&stage);
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    fn check_and_install(
        &self,
        identity: &str,
        dir: &Path,
        input: &Map<String, serde_json::Value>,
        servers: &[String],
        collectives: &[String],
        shipped: &Path,
        shipped_pem: &[u8],
        csr_key: &Path,
        staged: &dyn Fn(&str, &str) -> Result<PathBuf, ActionError>,
    ) -> ActionResult {
        let cert_pem = str_in(input, "certificate");
        let classification = match str_in(input, "classification") {
            "" => None,
            text => Some(Classification::from_json(text).map_err(|e| {
                ActionError::new(
                    mco_core::Status::InvalidData,
                    format!("the classification: {e}"),
                )
            })?),
        };
        let crl_pem = input
            .get("crl")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        let cert = staged("node.pem", cert_pem)?;
        let creds = Credentials::load(&cert, csr_key).map_err(|e| {
            aborted(format!(
                "the certificate does not match the key gencsr made: {}",
                e.message
            ))
        })?;
        if creds.name() != format!("node:{identity}") {
            return Err(aborted(format!(
                "the certificate is for {:?}, not node:{identity}",
                creds.name()
            )));
        }
        let paths = paths(&self.settings.security, dir, identity);
        // A CRL is never removed, and only replaced by a newer one signed
        // by the shipped CA.
        let present = trust::present_crl(&paths.crl).map_err(aborted)?;
        let new_crl = if crl_pem.is_empty() {
            None
        } else {
            let p = staged("ca.crl", crl_pem)?;
            TrustStore::load(shipped, Some(&p)).map_err(|e| {
                aborted(format!(
                    "the CRL given is not one of the shipped CA: {}",
                    e.message
                ))
            })?;
            let offered = trust::crl_age(crl_pem.as_bytes()).map_err(aborted)?;
            let install = match &present {
                None => true,
                Some(now) => {
                    trust::decide(now, &offered).map_err(aborted)? == trust::CrlDecision::Install
                }
            };
            install.then_some(p)
        };
        let crl_for_check = match (&new_crl, &present) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(_)) => Some(paths.crl.clone()),
            (None, None) => None,
        };
        let trust =
            TrustStore::load(shipped, crl_for_check.as_deref()).map_err(|e| aborted(e.message))?;
        let probe = creds.seal(Kind::Reply, b"configure".to_vec());
        trust
            .verify(&probe, now_s())
            .map_err(|e| aborted(format!("the certificate does not verify: {e}")))?;

        // The shared file is the template; a virtual node of a fleet gets
        // its own copy, so that the others stay in provisioning mode.
        let shared = &self.settings.config_file;
        let original = std::fs::read_to_string(shared)
            .map_err(|e| aborted(format!("{}: {e}", shared.display())))?;
        let own;
        let file = if self.settings.per_node_config {
            own = dir.join(files::NODE_CONFIG);
            &own
        } else {
            shared
        };
        let class_files = classification.as_ref().map(|_| ClassFiles {
            classes: dir.join(files::CLASSES),
            facts: dir.join(files::CLASS_FACTS),
        });
        let text = new_config(
            file,
            &original,
            identity,
            collectives,
            servers,
            &paths,
            class_files.as_ref(),
        )
        .map_err(|e| aborted(format!("the new configuration is not valid: {e}")))?;
        let key_pem =
            std::fs::read(csr_key).map_err(|e| aborted(format!("{}: {e}", csr_key.display())))?;
        write(&paths.key, &key_pem, KEY_MODE)?;
        write(&paths.cert, cert_pem.as_bytes(), PUBLIC_MODE)?;
        write(&paths.ca, shipped_pem, PUBLIC_MODE)?;
        if new_crl.is_some() {
            write(&paths.crl, crl_pem.as_bytes(), PUBLIC_MODE)?;
        }
        write(file, text.as_bytes(), PUBLIC_MODE)?;
        if let (Some(c), Some(cf)) = (&classification, &class_files) {
            let mut classes = c.classes.join("\n");
            classes.push('\n');
            write(&cf.classes, classes.as_bytes(), PUBLIC_MODE)?;
            let facts = serde_json::to_vec_pretty(&class_facts(c)).map_err(aborted)?;
            write(&cf.facts, &facts, PUBLIC_MODE)?;
        }
        write(&dir.join(files::CONFIGURED), b"", PUBLIC_MODE)?;
        Ok(outputs(json!({
            "config_file": file.display().to_string(),
            "certificate_file": paths.cert.display().to_string(),
            "serial": cert_serial(cert_pem).unwrap_or_default(),
        })))
    }
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
            None,
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
            None,
        )
        .unwrap_err();
        assert!(bad.contains("collectives"), "{bad}");

        // A classification: its fact file joins [facts] files, its classes
        // file [facts] classes_files; a classes_file stays.
        let cf = ClassFiles {
            classes: PathBuf::from("/state/classification.classes"),
            facts: PathBuf::from("/state/classification.json"),
        };
        let with = |original: &str| {
            let text = new_config(
                Path::new("r.toml"),
                original,
                "n1",
                &["mcollective".into()],
                &["tls://a:1".into()],
                &p,
                Some(&cf),
            )
            .unwrap();
            ResponderConfig::from_toml(Path::new("r.toml"), &text)
                .unwrap()
                .facts
        };
        let facts = with(original);
        assert_eq!(facts.files, vec![cf.facts.clone()]);
        assert_eq!(facts.classes_files, vec![cf.classes.clone()]);
        assert_eq!(facts.classes_file, None);
        let own = original.replace(
            "[facts]\n",
            "[facts]\nfiles = [\"/etc/facts.yaml\"]\nclasses_file = \"/var/lib/puppet/classes.txt\"\n",
        );
        let facts = with(&own);
        assert_eq!(
            facts.files,
            vec![PathBuf::from("/etc/facts.yaml"), cf.facts.clone()]
        );
        assert_eq!(
            facts.classes_file,
            Some(PathBuf::from("/var/lib/puppet/classes.txt"))
        );
        assert_eq!(facts.classes_files, vec![cf.classes.clone()]);
    }

    #[test]
    fn class_facts_are_the_parameters_and_the_environment() {
        let c = Classification::from_json(
            r#"{"classes": ["hadoop::worker"], "parameters": {"rack": "r1"}, "environment": "production"}"#,
        )
        .unwrap();
        assert_eq!(
            serde_json::Value::Object(class_facts(&c)),
            serde_json::json!({"rack": "r1", "environment": "production"})
        );
        let c = Classification::from_json(
            r#"{"parameters": {"environment": "mine"}, "environment": "production"}"#,
        )
        .unwrap();
        assert_eq!(class_facts(&c)["environment"], "mine");
    }
}

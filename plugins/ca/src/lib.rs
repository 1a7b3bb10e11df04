//! The `ca` agent: the collective's CA reachable over the bus (split CA).
//!
//! It runs on the CA node only, configured by `[plugin.ca]`:
//!
//! ```toml
//! [plugin.ca]
//! dir = "/etc/mco/pki"            # the directory `mco pki` manages
//! allow_names = ["*.example.net"] # globs of node names it may sign
//! signer = ["cfssl-sign", "-"]    # optional: CSR on stdin, certificate PEM on stdout
//! signer_timeout = "30s"
//! ```
//!
//! It signs only `node:` requests, only for a name that matches
//! `allow_names` and is the name the caller asked for — so a provisioner
//! that checked a node's identity cannot be tricked into signing another
//! name by the CSR itself. Masters never sign; they receive the CRL.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use mco_core::agent::{outputs, ActionError, ActionResult, Agent, RequestContext};
use mco_core::pki::{self, index::format_unix, Ca, CrlOptions, Index, PkiError, SignPolicy};
use mco_core::{Ddl, Status};
use serde_json::{json, Map, Value};

/// The DDL shipped in `ddl/ca.json`.
pub const DDL_JSON: &str = include_str!("../../../ddl/ca.json");

/// `[plugin.ca]`.
#[derive(Debug, Clone)]
pub struct CaSettings {
    /// The PKI directory (`ca.pem`, `ca.key`, `index.json`, ...).
    pub dir: PathBuf,
    /// Glob patterns of node names the CA will sign.
    pub allow_names: Vec<String>,
    /// An external signer's argv, replacing the built-in CA for `sign`.
    pub signer: Vec<String>,
    /// How long the external signer may run.
    pub signer_timeout: Duration,
}

impl CaSettings {
    /// Reads `[plugin.ca]`; relative paths are relative to `base`. Returns
    /// every problem, each naming its key.
    pub fn from_table(t: &toml::Table, base: &Path) -> Result<CaSettings, Vec<String>> {
        let mut errs = Vec::new();
        for k in t.keys() {
            if !["dir", "allow_names", "signer", "signer_timeout"].contains(&k.as_str()) {
                errs.push(format!(
                    "{k}: unknown key (known here: dir, allow_names, signer, signer_timeout)"
                ));
            }
        }
        let strings = |k: &str, errs: &mut Vec<String>| -> Vec<String> {
            match t.get(k) {
                None => Vec::new(),
                Some(v) => match v.as_array().and_then(|a| {
                    a.iter()
                        .map(|x| x.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                }) {
                    Some(v) => v,
                    None => {
                        errs.push(format!("{k}: expected an array of strings"));
                        Vec::new()
                    }
                },
            }
        };
        let dir = match t.get("dir").and_then(|v| v.as_str()) {
            Some(d) => base.join(mco_core::config::expand_home(d)),
            None => {
                errs.push("dir: is required (the PKI directory of `mco pki`)".to_string());
                PathBuf::new()
            }
        };
        let allow_names = strings("allow_names", &mut errs);
        for g in &allow_names {
            if let Err(e) = Glob::new(g) {
                errs.push(format!("allow_names: {g:?}: {e}"));
            }
        }
        let signer = strings("signer", &mut errs);
        let signer_timeout = match t.get("signer_timeout") {
            None => Duration::from_secs(30),
            Some(toml::Value::Integer(i)) if *i > 0 => Duration::from_secs(*i as u64),
            Some(toml::Value::String(s)) => match mco_core::config::parse_duration(s) {
                Ok(d) => d,
                Err(e) => {
                    errs.push(format!("signer_timeout: {e}"));
                    Duration::from_secs(30)
                }
            },
            Some(_) => {
                errs.push("signer_timeout: expected a duration like \"30s\"".to_string());
                Duration::from_secs(30)
            }
        };
        if errs.is_empty() {
            Ok(CaSettings {
                dir,
                allow_names,
                signer,
                signer_timeout,
            })
        } else {
            Err(errs)
        }
    }
}

/// The ca agent.
pub struct CaAgent {
    ddl: Ddl,
    settings: CaSettings,
    allow: GlobSet,
    /// The index is read, changed and written whole: one change at a time.
    guard: Mutex<()>,
}

fn aborted(m: impl std::fmt::Display) -> ActionError {
    ActionError::aborted(m.to_string())
}

/// `node:NAME` or `NAME` → `NAME`; a `user:` name is refused.
pub fn node_name(certname: &str) -> Result<&str, ActionError> {
    if let Some(rest) = certname.strip_prefix("user:") {
        return Err(aborted(format!(
            "the CA agent handles node certificates only, not user:{rest}"
        )));
    }
    Ok(certname.strip_prefix("node:").unwrap_or(certname))
}

/// The common name a CSR asks for.
pub fn csr_common_name(pem: &str) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&p.contents).ok()?;
    let cn = csr
        .certification_request_info
        .subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

impl CaAgent {
    /// Builds the agent.
    pub fn new(settings: CaSettings) -> CaAgent {
        static DDL: OnceLock<Ddl> = OnceLock::new();
        let ddl = DDL
            .get_or_init(|| {
                Ddl::from_json("ddl/ca.json", DDL_JSON).expect("the shipped ca DDL loads")
            })
            .clone();
        let mut b = GlobSetBuilder::new();
        for g in &settings.allow_names {
            if let Ok(g) = Glob::new(g) {
                b.add(g);
            }
        }
        let allow = b.build().unwrap_or_else(|_| GlobSet::empty());
        CaAgent {
            ddl,
            settings,
            allow,
            guard: Mutex::new(()),
        }
    }

    fn ca(&self) -> Result<Ca, ActionError> {
        Ca::load(&self.settings.dir).map_err(aborted)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.guard.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn list(&self) -> ActionResult {
        let index = Index::load(&self.settings.dir).map_err(aborted)?;
        let certs: Vec<Value> = index
            .certs
            .iter()
            .map(|e| {
                json!({
                    "name": e.kind.identity(&e.name),
                    "serial": e.serial,
                    "not_after": format_unix(e.not_after),
                    "revoked": e.revoked_at.is_some(),
                })
            })
            .collect();
        Ok(outputs(
            json!({"count": certs.len(), "certificates": certs}),
        ))
    }

    async fn sign(&self, input: &Map<String, Value>) -> ActionResult {
        let certname = input
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let csr = input.get("csr").and_then(Value::as_str).unwrap_or_default();
        let name = node_name(certname)?;
        pki::check_name(name).map_err(aborted)?;
        if !self.allow.is_match(name) {
            return Err(aborted(format!(
                "node:{name} is not a name this CA may sign (allow_names)"
            )));
        }
        let asked = csr_common_name(csr).ok_or_else(|| aborted("the CSR does not parse"))?;
        if asked != format!("node:{name}") {
            return Err(aborted(format!(
                "the CSR asks for {asked:?}, not node:{name}"
            )));
        }
        if !self.settings.signer.is_empty() {
            let pem = run_signer(&self.settings.signer, csr, self.settings.signer_timeout).await?;
            return Ok(outputs(
                json!({"certificate": pem, "name": format!("node:{name}")}),
            ));
        }
        let _g = self.lock();
        let policy = SignPolicy {
            allowed_kinds: vec![pki::Kind::Node],
            name_pattern: regex::Regex::new(&format!("^{}$", regex::escape(name))).ok(),
            force: true,
            // A sign repeated after a lost reply, or by a provisioner that
            // resumed, gets the certificate already issued for that key.
            reuse_same_key: true,
            ..SignPolicy::default()
        };
        let issued = self.ca()?.sign_csr(csr, &policy).map_err(aborted)?;
        Ok(outputs(json!({
            "certificate": issued.cert_pem,
            "serial": issued.serial,
            "name": format!("node:{}", issued.name),
        })))
    }

    /// Revokes `name`'s certificates (none is fine when `lenient`) and writes the CRL.
    fn revoke(&self, name: &str, lenient: bool) -> Result<(Vec<String>, String), ActionError> {
        let ca = self.ca()?;
        let revoked = match ca.revoke(name) {
            Ok(r) => r.into_iter().map(|e| e.serial).collect(),
            Err(PkiError::NotFound(_)) if lenient => Vec::new(),
            Err(e) => return Err(aborted(e)),
        };
        let crl = ca.crl(&CrlOptions::default()).map_err(aborted)?;
        Ok((revoked, crl))
    }
}

/// Most of an external signer's output kept: a certificate chain in PEM.
const SIGNER_OUTPUT_KEEP: usize = 1024 * 1024;

/// Runs the external signer: CSR on stdin, certificate PEM on stdout.
async fn run_signer(argv: &[String], csr: &str, timeout: Duration) -> Result<String, ActionError> {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    let Some((program, args)) = argv.split_first() else {
        return Err(aborted("empty signer command"));
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| aborted(format!("cannot run the signer {program:?}: {e}")))?;
    // Kills the signer and anything it started if it runs out of time.
    let mut guard = mco_process::GroupGuard::new(child.id());
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let input = csr.as_bytes().to_vec();
    let work = async {
        let feed = async {
            if let Some(mut s) = stdin.take() {
                let _ = s.write_all(&input).await;
            }
        };
        let ((), stdout, stderr) = tokio::join!(
            feed,
            mco_process::read_head(stdout.as_mut(), SIGNER_OUTPUT_KEEP),
            mco_process::read_head(stderr.as_mut(), 4096)
        );
        (stdout, stderr, child.wait().await)
    };
    let (stdout, stderr, status) = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| aborted(format!("the signer did not finish within {timeout:?}")))?;
    // The signer was reaped: its group is no longer ours to kill.
    guard.disarm();
    let out = std::process::Output {
        status: status.map_err(|e| aborted(format!("the signer failed: {e}")))?,
        stdout,
        stderr,
    };
    if !out.status.success() {
        return Err(aborted(format!(
            "the signer exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let pem = String::from_utf8_lossy(&out.stdout).into_owned();
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(aborted("the signer printed no PEM certificate"));
    }
    Ok(pem)
}

#[async_trait::async_trait]
impl Agent for CaAgent {
    fn ddl(&self) -> &Ddl {
        &self.ddl
    }

    async fn call(
        &self,
        action: &str,
        input: &Map<String, Value>,
        _ctx: &RequestContext,
    ) -> ActionResult {
        let name_in = || {
            node_name(
                input
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            )
        };
        match action {
            "list" => self.list(),
            "sign" => self.sign(input).await,
            "revoke" => {
                let name = name_in()?;
                let _g = self.lock();
                let (revoked, crl) = self.revoke(name, false)?;
                Ok(outputs(json!({"revoked": revoked, "crl": crl})))
            }
            "clean" => {
                let name = name_in()?;
                pki::check_name(name).map_err(aborted)?;
                let _g = self.lock();
                let (revoked, _) = self.revoke(name, true)?;
                let mut removed = Vec::new();
                for ext in ["pem", "key", "csr"] {
                    let p = self.settings.dir.join(format!("{name}.{ext}"));
                    if p.exists() {
                        pki::remove_if_present(&p).map_err(aborted)?;
                        removed.push(p.display().to_string());
                    }
                }
                Ok(outputs(json!({"revoked": revoked, "removed": removed})))
            }
            "crl" => {
                let path = self.settings.dir.join(pki::CA_CRL);
                let crl = match std::fs::read_to_string(&path) {
                    Ok(c) => c,
                    Err(_) => {
                        let _g = self.lock();
                        self.ca()?.crl(&CrlOptions::default()).map_err(aborted)?
                    }
                };
                Ok(outputs(json!({"crl": crl})))
            }
            other => Err(ActionError::new(
                Status::UnknownAction,
                format!("unknown action {other:?}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_strict() {
        let t: toml::Table = "dir = \"pki\"\nallow_names = [\"web-*\"]\nbogus = 1\n"
            .parse()
            .unwrap();
        let errs = CaSettings::from_table(&t, Path::new("/etc/mco")).unwrap_err();
        assert!(
            errs.iter().any(|e| e.starts_with("bogus: unknown key")),
            "{errs:?}"
        );
        let t: toml::Table = "dir = \"pki\"\nallow_names = [\"web-*\"]\n"
            .parse()
            .unwrap();
        let s = CaSettings::from_table(&t, Path::new("/etc/mco")).unwrap();
        assert_eq!(s.dir, PathBuf::from("/etc/mco/pki"));
        let a = CaAgent::new(s);
        assert!(a.allow.is_match("web-1"));
        assert!(!a.allow.is_match("db-1"));
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
    }
}

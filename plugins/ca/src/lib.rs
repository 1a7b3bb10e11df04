//! The `ca` agent: the collective's CA reachable over the bus (split CA).
//!
//! It runs on the CA node only, configured by `[plugin.ca]`:
//!
//! ```toml
//! [plugin.ca]
//! dir = "/etc/mco/pki"            # the directory `mco pki` manages
//! allow_names = ["*.example.net"] # globs of node names it may sign, revoke and clean
//! reserved_names = ["nats-1"]     # more names it never touches (besides ca, broker, itself)
//! signer = ["cfssl-sign", "-"]    # optional: CSR on stdin, certificate PEM on stdout
//! signer_timeout = "30s"
//! ```
//!
//! It signs only `node:` requests, only for a name that matches
//! `allow_names` and is the name the caller asked for — so a provisioner
//! that checked a node's identity cannot be tricked into signing another
//! name by the CSR itself. Masters never sign; they receive the CRL.
//!
//! Every action that takes a name (`sign`, `revoke`, `clean`) takes a node
//! name only ([`CaAgent::checked_name`]): one matching `allow_names`, never
//! a reserved name (`ca`, `broker`, the CA node's own identity and
//! `reserved_names`), never a name the index holds a `user:` certificate
//! for (the PKI directory names files by NAME alone, so `alice.pem` could
//! be a user's), never a name whose certificate carries more names than
//! its own (a broker's host names and addresses), and never a serial number: `revoke` and `clean` revoke the
//! node certificates of that name and nothing else.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use mco_core::agent::{outputs, ActionError, ActionResult, Agent, RequestContext};
use mco_core::config::{ConfigErrors, Reader};
use mco_core::{Ddl, Status};
use mco_pki::{self as pki, index::format_unix, Ca, CrlOptions, Index, PkiError, SignPolicy};
use serde_json::{json, Map, Value};

/// The DDL shipped in `ddl/ca.json`.
pub const DDL_JSON: &str = include_str!("../../../ddl/ca.json");

/// `[plugin.ca]`.
#[derive(Debug, Clone)]
pub struct CaSettings {
    /// The PKI directory (`ca.pem`, `ca.key`, `index.json`, ...).
    pub dir: PathBuf,
    /// Glob patterns of node names the CA will sign, revoke and clean.
    pub allow_names: Vec<String>,
    /// Names it never signs, revokes or cleans, besides [`RESERVED_NAMES`]
    /// and the CA node's own identity (e.g. the broker certificate's name
    /// when it is not `broker`).
    pub reserved_names: Vec<String>,
    /// An external signer's argv, replacing the built-in CA for `sign`.
    pub signer: Vec<String>,
    /// How long the external signer may run.
    pub signer_timeout: Duration,
}

impl CaSettings {
    /// Reads `[plugin.ca]` of the responder config `file`; relative paths
    /// are relative to the file's directory. Every bad or unknown key is
    /// reported at once, each by its full name (`plugin.ca.dir`).
    pub fn from_table(t: &toml::Table, file: &Path) -> Result<CaSettings, ConfigErrors> {
        let base = file.parent().unwrap_or(Path::new("."));
        let mut r = Reader::for_table(file, "plugin.ca");
        r.unknown(t, "", KEYS);
        let dir = match r.path(t, "", "dir") {
            Some(d) => base.join(d),
            None => {
                if !t.contains_key("dir") {
                    r.error("dir", "is required (the PKI directory of `mco pki`)");
                }
                PathBuf::new()
            }
        };
        let allow_names = r.strings(t, "", "allow_names").unwrap_or_default();
        for g in &allow_names {
            if let Err(e) = Glob::new(g) {
                r.error("allow_names", format!("{g:?}: {e}"));
            }
        }
        let reserved_names = r.strings(t, "", "reserved_names").unwrap_or_default();
        let signer = r.strings(t, "", "signer").unwrap_or_default();
        let signer_timeout = r
            .duration(t, "", "signer_timeout")
            .unwrap_or(Duration::from_secs(30));
        if signer_timeout.is_zero() {
            r.error("signer_timeout", "must be more than zero");
        }
        r.finish()?;
        Ok(CaSettings {
            dir,
            allow_names,
            reserved_names,
            signer,
            signer_timeout,
        })
    }
}

/// The keys `[plugin.ca]` knows.
const KEYS: &[&str] = &[
    "dir",
    "allow_names",
    "reserved_names",
    "signer",
    "signer_timeout",
];

/// Names the agent never signs, revokes or cleans: the CA's own files
/// (`ca.pem`, `ca.key`, `ca.crl`) and the broker certificate `mco pki
/// broker-config` uses by default.
pub const RESERVED_NAMES: &[&str] = &["ca", "broker"];

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

/// `e` marked as a name this agent never acts on, and why.
fn refusal(e: ActionError, why: &str) -> ActionError {
    e.with_data(mco_core::agent::outputs(json!({ "refused": why })))
}

/// `node:NAME` or `NAME` → `NAME`; a `user:` name (or any other kind) is
/// refused.
pub fn node_name(certname: &str) -> Result<&str, ActionError> {
    if let Some(rest) = certname.strip_prefix("user:") {
        return Err(aborted(format!(
            "the CA agent handles node certificates only, not user:{rest}"
        )));
    }
    let name = certname.strip_prefix("node:").unwrap_or(certname);
    if name.contains(':') {
        return Err(aborted(format!(
            "the CA agent handles node certificates only, not {certname:?}"
        )));
    }
    Ok(name)
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

    /// The node name of `certname` if this agent may act on it: a valid
    /// name matching `allow_names`, not reserved (see [`RESERVED_NAMES`],
    /// `reserved_names`, and `own` — the CA node's identity), and not a
    /// name the index holds a certificate of another kind for.
    /// A refusal carries `refused` in its data (`reserved`, `not_allowed`,
    /// `other_kind` or `invalid`), so a caller such as the provisioner tells
    /// a name never to be signed from a failure to retry.
    pub fn checked_name<'a>(&self, certname: &'a str, own: &str) -> Result<&'a str, ActionError> {
        let name = node_name(certname).map_err(|e| refusal(e, "other_kind"))?;
        pki::check_name(name).map_err(|e| refusal(aborted(e), "invalid"))?;
        let lower = name.to_ascii_lowercase();
        if RESERVED_NAMES.contains(&lower.as_str())
            || self
                .settings
                .reserved_names
                .iter()
                .any(|r| r.eq_ignore_ascii_case(name))
            || name.eq_ignore_ascii_case(own)
        {
            return Err(refusal(
                aborted(format!(
                    "{name:?} is reserved: the CA agent never signs, revokes or cleans it"
                )),
                "reserved",
            ));
        }
        if !self.allow.is_match(name) {
            return Err(refusal(
                aborted(format!(
                    "node:{name} is not a name this CA may act on (allow_names)"
                )),
                "not_allowed",
            ));
        }
        if let Some(sans) = extra_sans(&self.settings.dir.join(format!("{name}.pem")), name) {
            return Err(refusal(
                aborted(format!(
                    "{name:?} holds a certificate with more names than its own ({sans}), as a \
                     broker's does: the CA agent never touches it"
                )),
                "other_kind",
            ));
        }
        let index = Index::load(&self.settings.dir).map_err(aborted)?;
        if let Some(e) = index
            .certs
            .iter()
            .find(|e| e.name == name && e.kind != pki::Kind::Node)
        {
            return Err(refusal(
                aborted(format!(
                    "{name:?} is the name of a {} certificate: the CA agent handles node certificates only",
                    e.kind
                )),
                "other_kind",
            ));
        }
        Ok(name)
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

    async fn sign(&self, input: &Map<String, Value>, own: &str) -> ActionResult {
        let certname = input
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let csr = input.get("csr").and_then(Value::as_str).unwrap_or_default();
        let name = self.checked_name(certname, own)?;
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

    /// Revokes the unrevoked node certificates named `name` — by name only,
    /// never by serial, and never another kind's — (none is fine when
    /// `lenient`) and writes the CRL.
    fn revoke(&self, name: &str, lenient: bool) -> Result<(Vec<String>, String), ActionError> {
        let ca = self.ca()?;
        let dir = &self.settings.dir;
        let mut index = Index::load(dir).map_err(aborted)?;
        let now = pki::index::unix_now();
        let mut revoked = Vec::new();
        for e in index
            .certs
            .iter_mut()
            .filter(|e| e.name == name && e.kind == pki::Kind::Node && e.revoked_at.is_none())
        {
            e.revoked_at = Some(now);
            revoked.push(e.serial.clone());
        }
        if revoked.is_empty() {
            if !lenient {
                return Err(aborted(PkiError::NotFound(format!("node:{name}"))));
            }
        } else {
            index.save(dir).map_err(aborted)?;
        }
        let crl = ca.crl(&CrlOptions::default()).map_err(aborted)?;
        Ok((revoked, crl))
    }
}

/// The subject alternative names of the certificate at `path` other than
/// `DNS:NAME`, if it has any (a broker's certificate carries its host names
/// and addresses; a node's only its own name).
fn extra_sans(path: &Path, name: &str) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let pem = std::fs::read(path).ok()?;
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    let (_, c) = x509_parser::parse_x509_certificate(&p.contents).ok()?;
    let san = c.subject_alternative_name().ok()??;
    let extra: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter(|g| !matches!(g, GeneralName::DNSName(d) if d.eq_ignore_ascii_case(name)))
        .map(|g| g.to_string())
        .collect();
    (!extra.is_empty()).then(|| extra.join(", "))
}

/// Checks that `path`, if it exists, is a certificate for `node:NAME`.
fn check_is_node_cert(path: &Path, name: &str) -> Result<(), ActionError> {
    let pem = match std::fs::read(path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(aborted(format!("{}: {e}", path.display()))),
    };
    let cn = x509_parser::pem::parse_x509_pem(&pem)
        .ok()
        .and_then(|(_, p)| {
            let (_, c) = x509_parser::parse_x509_certificate(&p.contents).ok()?;
            let cn = c
                .subject()
                .iter_common_name()
                .next()?
                .as_str()
                .ok()?
                .to_string();
            Some(cn)
        });
    match cn {
        Some(cn) if cn == format!("node:{name}") => Ok(()),
        other => Err(refusal(
            aborted(format!(
                "{} is not the certificate of node:{name} ({}): left alone",
                path.display(),
                other.unwrap_or_else(|| "not a certificate".into())
            )),
            "other_kind",
        )),
    }
}

/// Most of an external signer's output kept: a certificate chain in PEM.
const SIGNER_OUTPUT_KEEP: usize = 1024 * 1024;

/// Runs the external signer (through [`mco_process::run`]: its process
/// group is killed if it runs out of time): CSR on stdin, certificate PEM
/// on stdout.
async fn run_signer(argv: &[String], csr: &str, timeout: Duration) -> Result<String, ActionError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(aborted("empty signer command"));
    };
    let limits = mco_process::Limits {
        timeout,
        stdout_keep: SIGNER_OUTPUT_KEEP,
        stderr_keep: 4096,
        kill_group: true,
    };
    let cmd = mco_process::Cmd::new(program)
        .args(args)
        .stdin(csr.as_bytes());
    let out = match mco_process::run(cmd, &limits).await {
        Ok(out) => out,
        Err(mco_process::RunError::Spawn(e)) => {
            return Err(aborted(format!("cannot run the signer {program:?}: {e}")))
        }
        Err(mco_process::RunError::Wait(e)) => {
            return Err(aborted(format!("the signer failed: {e}")))
        }
    };
    if out.timed_out {
        return Err(aborted(format!(
            "the signer did not finish within {timeout:?}"
        )));
    }
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

/// Publishes a new CRL through the node the agent runs on (see
/// [`mco_core::agent::NodeInfo::publish_crl`]): outputs `published` (the bucket's revision, or 0)
/// and, when it could not be published, `publish_error`. A revocation stands either
/// way; an operator who sees the error publishes with `mco pki crl --publish`.
async fn publish(ctx: &RequestContext, crl: Vec<u8>) -> mco_core::agent::Outputs {
    match ctx.node.publish_crl(crl).await {
        Ok(revision) => outputs(json!({ "published": revision })),
        Err(e) => {
            tracing::warn!("the new CRL was not published: {e}");
            outputs(json!({ "published": 0, "publish_error": e }))
        }
    }
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
        ctx: &RequestContext,
    ) -> ActionResult {
        let own = ctx.node.identity().to_string();
        let name_in = || {
            self.checked_name(
                input
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                &own,
            )
        };
        match action {
            "list" => self.list(),
            "sign" => self.sign(input, &own).await,
            "revoke" => {
                let name = name_in()?;
                let (revoked, crl) = {
                    let _g = self.lock();
                    self.revoke(name, false)?
                };
                let mut out = outputs(json!({"revoked": revoked}));
                out.extend(publish(ctx, crl.as_bytes().to_vec()).await);
                out.insert("crl".into(), crl.into());
                Ok(out)
            }
            "clean" => {
                let name = name_in()?;
                let (revoked, crl, removed) = {
                    let _g = self.lock();
                    // The files go only if NAME.pem is this node's certificate
                    // (or absent): never a file of another kind or a stranger.
                    check_is_node_cert(&self.settings.dir.join(format!("{name}.pem")), name)?;
                    let (revoked, crl) = self.revoke(name, true)?;
                    let mut removed = Vec::new();
                    for ext in ["pem", "key", "csr"] {
                        let p = self.settings.dir.join(format!("{name}.{ext}"));
                        if p.exists() {
                            pki::remove_if_present(&p).map_err(aborted)?;
                            removed.push(p.display().to_string());
                        }
                    }
                    (revoked, crl, removed)
                };
                let mut out = outputs(json!({"revoked": revoked, "removed": removed}));
                if !revoked.is_empty() {
                    out.extend(publish(ctx, crl.into_bytes()).await);
                }
                Ok(out)
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
mod tests;

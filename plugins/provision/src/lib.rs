//! The `provision` agent: the node side of provisioning (ARCHITECTURE.md §9).
//!
//! A node in provisioning mode hosts only `rpcutil` and this agent, on the
//! `provisioning` collective. Every action requires the bootstrap token
//! (compared in constant time) on top of, never instead of, the policy:
//! the token ships in every image, so `provision.policy` names who may
//! provision (provisioning mode denies by default, as every mode does).
//! While a caller holds the node's lock, only it may change the node
//! (`set_master`, `gencsr`, `configure`, `run`, `restart`, `disable`); a
//! lock lasts at most a day. `configure` trusts only the CA the image
//! shipped and never removes a CRL (see [`configure`] and [`trust`]).
//! The actions are small and idempotent, so a
//! provisioner that dies mid-way can run them again: `gencsr` returns the
//! CSR it already made unless asked to regenerate, `lock` renews the
//! caller's own lock, `set_master` replaces the `puppet` line.
//!
//! State lives in `state_dir` (where `{identity}` is replaced, so one
//! process can serve a fleet of virtual nodes): `node.key` (the reply
//! signing key), `lock.json`, `master.json`, `csr/IDENTITY.{key,csr}`,
//! `disabled`. The private certificate key never leaves the node.

#![forbid(unsafe_code)]

pub mod bootstrap;
pub mod configure;
pub mod state;
pub mod trust;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use mco_core::agent::{outputs, ActionError, ActionResult, Agent, RequestContext};
use mco_core::config::SecurityConfig;
use mco_core::provisioning::{files, ProvisioningConfig};
use mco_core::{Ddl, Status};
use mco_pki::{self as pki, CsrOptions, PUBLIC_MODE};
use mco_security::NodeKey;
use serde_json::{json, Map, Value};

use state::{Lock, Master};

/// The longest lock, seconds (see [`mco_core::provisioning::MAX_LOCK_EXPIRY_S`]).
pub const MAX_LOCK_EXPIRY: i64 = mco_core::provisioning::MAX_LOCK_EXPIRY_S as i64;

/// The DDL shipped in `ddl/provision.json`.
pub const DDL_JSON: &str = include_str!("../../../ddl/provision.json");

/// How `restart` hands over to the daemon: called after the splay with the
/// identity of the node to restart. A single-node daemon stops taking
/// requests, finishes in-flight ones, flushes the audit log and re-executes
/// itself; a `--fleet` daemon restarts only that virtual node, in-process.
/// The process's life is the responder's business, not the agent's: without
/// a hook the agent only says it cannot restart.
pub type RestartHook = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// What the agent needs from the responder's config.
#[derive(Clone)]
pub struct ProvisionSettings {
    /// `[provisioning]`.
    pub provisioning: ProvisioningConfig,
    /// `[security]`: where `configure` puts the certificate, key, CA and CRL.
    pub security: SecurityConfig,
    /// The responder's config file, which `configure` rewrites.
    pub config_file: PathBuf,
    /// Whether the responder runs in provisioning mode now.
    pub active: bool,
    /// The daemon's graceful restart, if it offers one.
    pub restart: Option<RestartHook>,
    /// Whether each node gets a config file of its own: set by a `--fleet`
    /// daemon, whose virtual nodes share `config_file`. `configure` then
    /// writes node X's normal-mode config to `<state_dir of X>/responder.toml`
    /// (see [`node_config_file`]) and leaves `config_file` untouched; the
    /// daemon starts X from that file on `restart` and at start-up.
    pub per_node_config: bool,
}

impl std::fmt::Debug for ProvisionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisionSettings")
            .field("provisioning", &self.provisioning)
            .field("config_file", &self.config_file)
            .field("active", &self.active)
            .field("restart", &self.restart.is_some())
            .field("per_node_config", &self.per_node_config)
            .finish()
    }
}

/// The provision agent.
pub struct Provision {
    ddl: Ddl,
    settings: ProvisionSettings,
    /// Serializes read-modify-write of state files (lock, hosts).
    guard: Mutex<()>,
}

impl Provision {
    /// Builds the agent.
    pub fn new(settings: ProvisionSettings) -> Provision {
        static DDL: OnceLock<Ddl> = OnceLock::new();
        let ddl = DDL
            .get_or_init(|| {
                Ddl::from_json("ddl/provision.json", DDL_JSON)
                    .expect("the shipped provision DDL loads")
            })
            .clone();
        Provision {
            ddl,
            settings,
            guard: Mutex::new(()),
        }
    }

    /// The state directory of node `identity`.
    pub fn state_dir(&self, identity: &str) -> PathBuf {
        for_identity(&self.settings.provisioning.state_dir, identity)
    }

    fn lock_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.guard.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where `configure` writes a virtual node's own config when
/// [`ProvisionSettings::per_node_config`] is set: `responder.toml` in its
/// state directory (`state_dir` with `{identity}` replaced).
pub fn node_config_file(state_dir: &Path, identity: &str) -> PathBuf {
    for_identity(state_dir, identity).join(files::NODE_CONFIG)
}

pub use mco_core::config::for_identity;

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

fn now_s() -> i64 {
    (mco_core::wire::now_ms() / 1000) as i64
}

fn str_in<'a>(input: &'a Map<String, Value>, k: &str) -> &'a str {
    input.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// The least time between `restart`'s reply and the node's stop.
pub const RESTART_MIN_DELAY_MS: u64 = 100;

fn aborted(m: impl std::fmt::Display) -> ActionError {
    ActionError::aborted(m.to_string())
}

/// A lock refusal, with `locked_by` and `locked_until` in its data so that a
/// provisioner tells it from any other failure without reading the message.
fn refused(r: state::LockRefused) -> ActionError {
    let state::LockRefused::HeldBy(l) = &r;
    let data = outputs(json!({"locked_by": l.owner, "locked_until": l.expires}));
    ActionError::aborted(r.to_string()).with_data(data)
}

fn write(path: &Path, data: &[u8], mode: u32) -> Result<(), ActionError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| aborted(format!("{}: {e}", dir.display())))?;
    }
    pki::write_atomic(path, data, mode, true).map_err(aborted)
}

#[async_trait::async_trait]
impl Agent for Provision {
    fn ddl(&self) -> &Ddl {
        &self.ddl
    }

    async fn call(
        &self,
        action: &str,
        input: &Map<String, Value>,
        ctx: &RequestContext,
    ) -> ActionResult {
        let want = self
            .settings
            .provisioning
            .read_token()
            .map_err(|e| aborted(format!("the token file cannot be read: {e}")))?;
        if want.is_empty() || !constant_time_eq(str_in(input, "token").as_bytes(), want.as_bytes())
        {
            return Err(ActionError::aborted("bad token"));
        }
        let identity = ctx.node.identity().to_string();
        let dir = self.state_dir(&identity);
        match action {
            "state" => self.state(&identity, &dir),
            "lock" => {
                let expiry = input.get("expiry").and_then(Value::as_i64).unwrap_or(300);
                if !(1..=MAX_LOCK_EXPIRY).contains(&expiry) {
                    return Err(ActionError::new(
                        Status::InvalidData,
                        format!("expiry must be between 1 and {MAX_LOCK_EXPIRY} seconds"),
                    ));
                }
                let _g = self.lock_guard();
                let path = dir.join(files::LOCK);
                let current: Option<Lock> = state::read_json(&path);
                let lock =
                    Lock::take(current.as_ref(), &ctx.caller, expiry, now_s()).map_err(refused)?;
                let text = serde_json::to_vec(&lock).map_err(aborted)?;
                write(&path, &text, PUBLIC_MODE)?;
                Ok(outputs(
                    json!({"owner": lock.owner, "expires": lock.expires}),
                ))
            }
            "unlock" => {
                let _g = self.lock_guard();
                let path = dir.join(files::LOCK);
                if let Some(current) = state::read_json::<Lock>(&path) {
                    Lock::may_release(&current, &ctx.caller, now_s()).map_err(refused)?;
                }
                pki::remove_if_present(&path).map_err(aborted)?;
                Ok(outputs(json!({"locked": false})))
            }
            "set_master" => {
                let name = str_in(input, "name");
                let address = str_in(input, "address");
                let _g = self.lock_guard();
                lock_allows(&dir, &ctx.caller)?;
                let hosts = for_identity(&self.settings.provisioning.hosts_file, &identity);
                let before = match std::fs::read_to_string(&hosts) {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                    Err(e) => return Err(aborted(format!("{}: {e}", hosts.display()))),
                };
                let after = state::update_hosts(&before, name, address);
                write(&hosts, after.as_bytes(), PUBLIC_MODE)?;
                let master = Master {
                    name: name.to_string(),
                    address: address.to_string(),
                };
                let text = serde_json::to_vec(&master).map_err(aborted)?;
                write(&dir.join(files::MASTER), &text, PUBLIC_MODE)?;
                Ok(outputs(json!({
                    "line": state::master_line(name, address),
                    "hosts_file": hosts.display().to_string(),
                })))
            }
            "gencsr" => {
                let regenerate = input
                    .get("regenerate")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                self.gencsr(&identity, &dir, regenerate, &ctx.caller)
            }
            "configure" => self.configure(&identity, &dir, input, &ctx.caller),
            "run" => {
                {
                    let _g = self.lock_guard();
                    lock_allows(&dir, &ctx.caller)?;
                }
                self.run_bootstrap(input).await
            }
            "restart" => {
                let _g = self.lock_guard();
                lock_allows(&dir, &ctx.caller)?;
                self.restart(&identity)
            }
            "disable" => {
                let _g = self.lock_guard();
                lock_allows(&dir, &ctx.caller)?;
                write(&dir.join(files::DISABLED), b"", PUBLIC_MODE)?;
                Ok(outputs(json!({"disabled": true})))
            }
            other => Err(ActionError::new(
                Status::UnknownAction,
                format!("unknown action {other:?}"),
            )),
        }
    }
}

/// Refuses a change to the node while someone other than `caller` holds an
/// unexpired lock on it: the lock's owner is the only one who may change
/// the node (set_master, gencsr, configure, run, restart, disable). Call
/// with the agent's guard held, so that no lock is taken in between.
fn lock_allows(dir: &Path, caller: &str) -> Result<(), ActionError> {
    let now = now_s();
    match state::read_json::<Lock>(&dir.join(files::LOCK)) {
        Some(l) if l.live(now) && l.owner != caller => Err(refused(state::LockRefused::HeldBy(l))),
        _ => Ok(()),
    }
}

impl Provision {
    fn csr_paths(dir: &Path, identity: &str) -> (PathBuf, PathBuf) {
        let d = dir.join(files::CSR_DIR);
        (
            d.join(format!("{identity}.csr")),
            d.join(format!("{identity}.key")),
        )
    }

    fn state(&self, identity: &str, dir: &Path) -> ActionResult {
        let now = now_s();
        let lock = state::read_json::<Lock>(&dir.join(files::LOCK)).filter(|l| l.live(now));
        let master: Option<Master> = state::read_json(&dir.join(files::MASTER));
        let paths = configure::paths(&self.settings.security, dir, identity);
        let cert_present = paths.cert.exists() && paths.key.exists();
        let public_key = NodeKey::load_or_create(&dir.join(files::NODE_KEY))
            .map(|k| k.public_hex())
            .map_err(aborted)?;
        let (csr, _) = Self::csr_paths(dir, identity);
        Ok(outputs(json!({
            "identity": identity,
            "provisioning": self.settings.active,
            "provisioned": cert_present && dir.join(files::CONFIGURED).exists(),
            "cert_present": cert_present,
            "locked": lock.is_some(),
            "lock_owner": lock.as_ref().map(|l| l.owner.clone()).unwrap_or_default(),
            "lock_expires": lock.as_ref().map(|l| l.expires).unwrap_or(0),
            "master": master.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
            "master_address": master.as_ref().map(|m| m.address.clone()).unwrap_or_default(),
            "disabled": dir.join(files::DISABLED).exists(),
            "public_key": public_key,
            "csr_present": csr.exists(),
        })))
    }

    fn gencsr(&self, identity: &str, dir: &Path, regenerate: bool, caller: &str) -> ActionResult {
        let (csr_path, key_path) = Self::csr_paths(dir, identity);
        let _g = self.lock_guard();
        lock_allows(dir, caller)?;
        let csr_pem = match std::fs::read_to_string(&csr_path) {
            Ok(pem) if !regenerate && key_path.exists() => pem,
            _ => {
                // The certificate is for the key the node's replies are
                // signed with, which the provisioner has pinned.
                let opts = CsrOptions {
                    force: true,
                    key: Some(dir.join(files::NODE_KEY)),
                    ..CsrOptions::default()
                };
                pki::request_csr(&dir.join(files::CSR_DIR), identity, pki::Kind::Node, &opts)
                    .map_err(aborted)?
                    .csr_pem
            }
        };
        let public_key = csr_public_key(&csr_pem).unwrap_or_default();
        Ok(outputs(json!({
            "csr": csr_pem,
            "name": format!("node:{identity}"),
            "public_key": public_key,
        })))
    }

    async fn run_bootstrap(&self, input: &Map<String, Value>) -> ActionResult {
        let p = &self.settings.provisioning;
        let command = match input.get("phase").and_then(Value::as_str) {
            Some("final") if p.final_command.is_empty() => {
                return Ok(outputs(json!({
                    "skipped": true,
                    "success": true,
                    "summary": "no final_command is configured",
                })));
            }
            Some("final") => &p.final_command,
            _ if p.bootstrap_command.is_empty() => {
                return Err(aborted("no [provisioning] bootstrap_command is configured"));
            }
            _ => &p.bootstrap_command,
        };
        let r = bootstrap::run(command, p.bootstrap_timeout)
            .await
            .map_err(|e| {
                aborted(format!(
                    "cannot run {:?}: {e}",
                    command.first().cloned().unwrap_or_default()
                ))
            })?;
        let (ok, summary) = bootstrap::interpret(r.exitcode, r.timed_out);
        let data = outputs(json!({
            "exitcode": r.exitcode,
            "summary": summary,
            "output": r.output,
            "success": ok,
        }));
        if ok {
            Ok(data)
        } else {
            Err(ActionError::aborted(format!("bootstrap {summary}")).with_data(data))
        }
    }

    fn restart(&self, identity: &str) -> ActionResult {
        let dir = self.state_dir(identity);
        let paths = configure::paths(&self.settings.security, &dir, identity);
        if !(paths.cert.exists() && paths.key.exists()) {
            return Err(aborted("not configured yet: run configure first"));
        }
        let splay = self.settings.provisioning.splay.as_millis() as u64;
        let jitter = if splay == 0 {
            0
        } else {
            rand_core::RngCore::next_u64(&mut rand_core::OsRng) % (splay + 1)
        };
        // At least a moment, so that this reply is on the wire first (the
        // stop that follows is graceful besides: replies in flight are sent).
        let delay = Duration::from_millis(jitter.max(RESTART_MIN_DELAY_MS));
        let hook = self.settings.restart.clone();
        let identity = identity.to_string();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            match hook {
                Some(h) => h(&identity),
                None => tracing::error!(
                    "provision restart: this responder gave the agent no way to restart; restart it by hand"
                ),
            }
        });
        Ok(outputs(json!({"delay_ms": delay.as_millis() as u64})))
    }
}

/// The hex public key of a CSR.
fn csr_public_key(pem: &str) -> Option<String> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let (_, csr) =
        <x509_parser::certification_request::X509CertificationRequest<'_> as x509_parser::prelude::FromDer<_>>::from_der(&p.contents).ok()?;
    Some(hex::encode(
        csr.certification_request_info
            .subject_pki
            .subject_public_key
            .data
            .as_ref(),
    ))
}

/// The hex serial of a certificate.
fn cert_serial(pem: &str) -> Option<String> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&p.contents).ok()?;
    Some(pki::index::serial_hex(cert.raw_serial()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_lock_owner_may_change_the_node_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        assert!(lock_allows(dir.path(), "user:b").is_ok(), "no lock");
        let now = now_s();
        let live = Lock {
            owner: "user:a".into(),
            expires: now + 600,
        };
        std::fs::write(
            dir.path().join(files::LOCK),
            serde_json::to_vec(&live).unwrap(),
        )
        .unwrap();
        assert!(lock_allows(dir.path(), "user:a").is_ok());
        let e = lock_allows(dir.path(), "user:b").unwrap_err();
        assert!(e.message.contains("locked by user:a"), "{}", e.message);
        assert_eq!(e.data.get("locked_by"), Some(&json!("user:a")));
        assert_eq!(e.data.get("locked_until"), Some(&json!(now + 600)));
        let expired = Lock {
            expires: now - 1,
            ..live
        };
        std::fs::write(
            dir.path().join(files::LOCK),
            serde_json::to_vec(&expired).unwrap(),
        )
        .unwrap();
        assert!(lock_allows(dir.path(), "user:b").is_ok(), "expired");
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn ddl_loads_and_marks_the_token_sensitive() {
        let p = Provision::new(ProvisionSettings {
            provisioning: ProvisioningConfig::default(),
            security: SecurityConfig::default(),
            config_file: PathBuf::from("r.toml"),
            active: true,
            restart: None,
            per_node_config: false,
        });
        for a in &p.ddl().actions {
            let t = a.input.get("token").expect("every action takes the token");
            assert!(t.sensitive, "{}", a.action);
        }
    }
}

//! The responder's side of message security: its own credentials, the shared
//! trust store (CA and CRL, re-read when the CRL changes and on SIGHUP) and a
//! replay cache per node.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use mco_core::config::SecurityConfig;
use mco_core::wire::{Envelope, Kind};
pub use mco_security::Presigner;
use mco_security::{Credentials, LoadError, NodeKey, ReplayCache, TrustStore};
use tracing::{error, info, warn};

/// Replay cache bound per node until [`NodeSecurity::bounded_by`] sets the configured one.
const REPLAY_LIMIT: usize = mco_core::config::DEFAULT_REPLAY_CACHE;

/// The CA and CRL, swapped whole when the CRL file changes.
///
/// Revocation fails closed: a configured CRL must load at start (see
/// [`TrustStore::load`]), and a replacement that cannot be read, is not
/// signed by the CA, or is older than the CRL in force (see
/// [`mco_security::CrlInfo::check_successor`]) is refused: the CRL in
/// force stays, the refusal is logged as an error and counted
/// (`rpcutil daemon_stats`: `crl.refused`). A CRL past its `nextUpdate`
/// stays in force and is reported as a warning (at most once an hour).
pub struct SharedTrust {
    ca: PathBuf,
    crl: Option<PathBuf>,
    current: RwLock<Arc<TrustStore>>,
    /// The CRL file as last looked at, so that each change is handled once.
    seen: Mutex<Option<FileStamp>>,
    /// Replacement CRLs refused.
    refused: AtomicU64,
    /// When a stale CRL was last reported.
    stale_reported: Mutex<Option<Instant>>,
}

/// How often a CRL past its `nextUpdate` is reported.
const STALE_REPORT_INTERVAL: Duration = Duration::from_secs(3600);

/// What tells one version of a file from another: modification time, size
/// and inode (an atomic rename changes the inode); `None` if it is missing.
type FileStamp = Option<(SystemTime, u64, u64)>;

fn stamp(p: &Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

fn now_s() -> i64 {
    mco_pki::index::unix_now()
}

impl SharedTrust {
    /// Loads the CA and the CRL; a configured CRL that does not load is an
    /// error.
    pub fn load(ca: &Path, crl: Option<&Path>) -> Result<SharedTrust, LoadError> {
        let seen = crl.map(stamp);
        let store = TrustStore::load(ca, crl)?.with_memo();
        Ok(SharedTrust::with_store(ca, crl, seen, store))
    }

    /// As [`load`](Self::load), for a node in provisioning mode: the CRL may
    /// not exist yet (`configure` writes it); it is enforced from the moment
    /// it appears, and cannot go away afterwards.
    pub fn load_provisioning(ca: &Path, crl: Option<&Path>) -> Result<SharedTrust, LoadError> {
        match crl {
            Some(p) if stamp(p).is_none() => {
                info!(
                    "no CRL at {} yet: it is enforced once it is written",
                    p.display()
                );
                let store = TrustStore::load(ca, None)?.with_memo();
                Ok(SharedTrust::with_store(ca, crl, Some(None), store))
            }
            _ => SharedTrust::load(ca, crl),
        }
    }

    fn with_store(
        ca: &Path,
        crl: Option<&Path>,
        seen: Option<FileStamp>,
        store: TrustStore,
    ) -> SharedTrust {
        let trust = SharedTrust {
            ca: ca.to_path_buf(),
            crl: crl.map(Path::to_path_buf),
            seen: Mutex::new(seen),
            current: RwLock::new(Arc::new(store)),
            refused: AtomicU64::new(0),
            stale_reported: Mutex::new(None),
        };
        if let (Some(p), Some(info)) = (crl, trust.get().crl()) {
            info!("loaded the CRL {}: {info}", p.display());
        }
        trust.report_stale();
        trust
    }

    /// The trust store in force.
    pub fn get(&self) -> Arc<TrustStore> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many replacement CRLs were refused.
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// The CRL in force, for `rpcutil daemon_stats`: its number, what it
    /// revokes, its dates, whether it is past its next update, and how many
    /// replacements were refused.
    pub fn crl_stats(&self) -> Option<serde_json::Value> {
        self.crl.as_ref()?;
        let store = self.get();
        let mut m = serde_json::Map::new();
        m.insert("refused".into(), self.refused().into());
        if let Some(info) = store.crl() {
            m.insert("number".into(), info.number().into());
            m.insert("revoked".into(), info.revoked().into());
            m.insert("this_update".into(), info.this_update().into());
            m.insert("next_update".into(), info.next_update().into());
            m.insert("stale".into(), info.is_stale(now_s()).into());
        }
        Some(serde_json::Value::Object(m))
    }

    /// Re-reads the CRL if its file changed (see [`SharedTrust`] for what is
    /// refused).
    pub fn refresh(&self) {
        self.reload(false);
    }

    /// Re-reads the CRL whether or not its file changed (SIGHUP).
    pub fn reload_now(&self) {
        self.reload(true);
    }

    fn reload(&self, force: bool) {
        let Some(path) = &self.crl else { return };
        let now = stamp(path);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if !force && *seen == Some(now) {
                drop(seen);
                self.report_stale();
                return;
            }
            *seen = Some(now);
        }
        let current = self.get();
        if now.is_none() && current.crl().is_none() {
            // Provisioning mode before any CRL was written.
            return;
        }
        let loaded = TrustStore::load(&self.ca, Some(path))
            .map_err(|e| e.to_string())
            .and_then(|store| match (current.crl(), store.crl()) {
                (Some(old), Some(new)) => old
                    .check_successor(&new)
                    .map(|()| store)
                    .map_err(|e| format!("{}: {e}", path.display())),
                _ => Ok(store),
            });
        match loaded {
            Ok(store) if store.crl() == current.crl() => {}
            Ok(store) => {
                let info = store.crl().map(|i| i.to_string()).unwrap_or_default();
                *self.current.write().unwrap_or_else(|e| e.into_inner()) =
                    Arc::new(store.with_memo());
                info!("re-read the CRL {}: {info}", path.display());
            }
            Err(e) => {
                let refused = self.refused.fetch_add(1, Relaxed) + 1;
                let in_force = current
                    .crl()
                    .map_or_else(|| "none".to_string(), |i| i.to_string());
                error!(
                    refused,
                    "refusing the CRL: {e}; the CRL in force stays ({in_force})"
                );
            }
        }
        self.report_stale();
    }

    /// Takes a CRL published on the bus (`crl_watch`): if the CA signed it and it is newer than
    /// the one in force, it replaces the configured CRL file (atomically, so the last good CRL
    /// is what a restart finds, bus or no bus) and is put in force. Returns whether it was;
    /// the same CRL again is `Ok(false)`. Refusals are counted as for the file's.
    pub fn offer_crl(&self, der_or_pem: &[u8]) -> Result<bool, String> {
        let Some(path) = &self.crl else {
            return Err("no [security] crl file to keep a published CRL in".into());
        };
        let mut incoming = path.as_os_str().to_owned();
        incoming.push(".incoming");
        let incoming = PathBuf::from(incoming);
        let refuse = |why: String| {
            let _ = std::fs::remove_file(&incoming);
            let refused = self.refused.fetch_add(1, Relaxed) + 1;
            error!(
                refused,
                "refusing the published CRL: {why}; the CRL in force stays"
            );
            Err(why)
        };
        if let Err(e) = mco_core::atomic::write_atomic(
            &incoming,
            der_or_pem,
            &mco_core::atomic::WriteOptions::new(0o644),
        ) {
            return refuse(format!("{}: {e}", incoming.display()));
        }
        let store = match TrustStore::load(&self.ca, Some(&incoming)) {
            Ok(s) => s,
            Err(e) => return refuse(e.to_string()),
        };
        let current = self.get();
        match (current.crl(), store.crl()) {
            (Some(old), Some(new)) if old == new => {
                let _ = std::fs::remove_file(&incoming);
                return Ok(false);
            }
            (Some(old), Some(new)) => {
                if let Err(e) = old.check_successor(&new) {
                    return refuse(e);
                }
            }
            _ => {}
        }
        if let Err(e) = std::fs::rename(&incoming, path) {
            return refuse(format!("{}: {e}", path.display()));
        }
        self.reload_now();
        Ok(true)
    }

    /// Warns, at most once per [`STALE_REPORT_INTERVAL`], while the CRL in
    /// force is past its next update.
    fn report_stale(&self) {
        let store = self.get();
        let Some(info) = store.crl().filter(|i| i.is_stale(now_s())) else {
            return;
        };
        let mut last = self
            .stale_reported
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < STALE_REPORT_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        warn!(
            "the CRL {} is past its next update ({info}): it is still enforced, but \
             certificates revoked since are not known here; publish a new one (`mco pki crl`)",
            self.crl.as_deref().unwrap_or(Path::new("")).display()
        );
    }
}

/// What a node signs its replies with.
pub enum Signer {
    /// Its certificate and key: normal mode.
    Cert(Credentials),
    /// The key it made at first boot, sent along as a raw public key:
    /// provisioning mode, before it has a certificate.
    Key(NodeKey),
}

impl Signer {
    /// Signs `body` into an envelope.
    pub fn seal(&self, kind: Kind, body: Vec<u8>) -> Envelope {
        match self {
            Signer::Cert(c) => c.seal(kind, body),
            Signer::Key(k) => k.seal_with_key(kind, body),
        }
    }

    /// The presigner a certificate signer uses, for its counters.
    pub fn presigner(&self) -> Option<&Presigner> {
        match self {
            Signer::Cert(c) => c.presigner(),
            Signer::Key(_) => None,
        }
    }
}

/// Nonces kept ready for a process hosting `nodes` nodes: two calls' worth
/// of replies from each, and a floor for a single node answering a burst.
/// 64 bytes each; filling the pool costs one scalar multiplication per
/// nonce, the work each signature would otherwise do when it is made.
pub fn presign_capacity(nodes: usize) -> usize {
    64usize.saturating_add(nodes.saturating_mul(2)).min(1 << 16)
}

/// A presigner for this process (see [`Presigner`]), its thread at idle
/// priority; if that thread cannot be started, signatures are made inline.
pub fn presigner(nodes: usize) -> Arc<Presigner> {
    Arc::new(
        Presigner::start(presign_capacity(nodes), mco_process::idle_priority).unwrap_or_else(|e| {
            warn!("signing without prepared nonces: cannot start their thread: {e}");
            Presigner::inline()
        }),
    )
}

/// One node's security state.
pub struct NodeSecurity {
    /// What the node signs replies with.
    pub signer: Signer,
    /// The collective's CA and CRL.
    pub trust: Arc<SharedTrust>,
    /// Request ids seen.
    pub replay: ReplayCache,
    /// The longest TTL a request may carry, seconds.
    pub max_ttl_s: u32,
}

pub use mco_core::config::for_identity;

/// The missing `[security]` keys secure mode needs, as one message.
pub fn missing_keys(cfg: &SecurityConfig, file: &Path) -> Option<String> {
    let missing: Vec<&str> = [
        ("ca", cfg.ca.is_none()),
        ("cert", cfg.cert.is_none()),
        ("key", cfg.key.is_none()),
    ]
    .iter()
    .filter(|(_, m)| *m)
    .map(|(k, _)| *k)
    .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{}: secure mode needs [security] {} (or `insecure = true` for a throw-away demo)",
            file.display(),
            missing.join(", ")
        )
    })
}

impl NodeSecurity {
    /// Takes `[security] max_ttl` and `replay_cache` from `cfg`.
    pub fn bounded_by(mut self, cfg: &SecurityConfig) -> NodeSecurity {
        self.replay = ReplayCache::new(cfg.replay_cache);
        self.max_ttl_s = u32::try_from(cfg.max_ttl.as_secs()).unwrap_or(u32::MAX);
        self
    }

    /// Provisioning mode: replies signed with `key`, requests checked
    /// against the shipped CA as in normal mode.
    pub fn provisioning(key: NodeKey, trust: Arc<SharedTrust>) -> NodeSecurity {
        NodeSecurity {
            signer: Signer::Key(key),
            trust,
            replay: ReplayCache::new(REPLAY_LIMIT),
            max_ttl_s: mco_core::config::DEFAULT_MAX_TTL.as_secs() as u32,
        }
    }

    /// Loads the credentials of `identity` against a shared trust store;
    /// it signs with the process's `presigner`.
    pub fn load(
        cfg: &SecurityConfig,
        identity: &str,
        trust: Arc<SharedTrust>,
        presigner: &Arc<Presigner>,
    ) -> Result<NodeSecurity, LoadError> {
        let cert = for_identity(cfg.cert.as_deref().unwrap_or(Path::new("")), identity);
        let key = for_identity(cfg.key.as_deref().unwrap_or(Path::new("")), identity);
        let creds = Credentials::load(&cert, &key)?;
        let want = format!("node:{identity}");
        if creds.name() != want {
            return Err(LoadError {
                path: cert.display().to_string(),
                message: format!(
                    "the certificate is for {:?}, but this node is {want:?}",
                    creds.name()
                ),
            });
        }
        Ok(NodeSecurity {
            signer: Signer::Cert(creds.with_presigner(presigner.clone())),
            trust,
            replay: ReplayCache::new(REPLAY_LIMIT),
            max_ttl_s: mco_core::config::DEFAULT_MAX_TTL.as_secs() as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mco_pki::{Ca, CaOptions, CrlOptions, IssueOptions, Kind};

    fn crl_number(t: &SharedTrust) -> Option<String> {
        t.get().crl().and_then(|c| c.number())
    }

    #[test]
    fn a_provisioning_node_takes_its_first_crl_and_never_loses_it() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::init(tmp.path(), &CaOptions::default()).unwrap();
        ca.issue("alice", Kind::User, &IssueOptions::default())
            .unwrap();
        let ca_pem = tmp.path().join("ca.pem");
        let crl = tmp.path().join("node.crl");

        // Normal mode: a configured CRL that is missing is an error.
        let err = SharedTrust::load(&ca_pem, Some(&crl)).err().unwrap();
        assert!(err.message.contains("missing"), "{err}");

        // Provisioning mode: none yet, then the first one is taken.
        let t = SharedTrust::load_provisioning(&ca_pem, Some(&crl)).unwrap();
        assert_eq!(crl_number(&t), None);
        t.refresh();
        assert_eq!((crl_number(&t), t.refused()), (None, 0));
        let first = ca.crl(&CrlOptions::default()).unwrap();
        std::fs::write(&crl, &first).unwrap();
        t.refresh();
        assert_eq!(crl_number(&t).as_deref(), Some("1"));

        // Gone, older or broken: the CRL in force stays, each refusal is counted once.
        ca.revoke("alice").unwrap();
        let second = ca.crl(&CrlOptions::default()).unwrap();
        std::fs::write(&crl, &second).unwrap();
        t.refresh();
        assert_eq!(crl_number(&t).as_deref(), Some("2"));
        assert_eq!(t.get().crl().unwrap().revoked(), 1);
        std::fs::remove_file(&crl).unwrap();
        t.refresh();
        t.refresh();
        assert_eq!((crl_number(&t).as_deref(), t.refused()), (Some("2"), 1));
        std::fs::write(&crl, &first).unwrap();
        t.refresh();
        assert_eq!((crl_number(&t).as_deref(), t.refused()), (Some("2"), 2));
        t.reload_now();
        assert_eq!((crl_number(&t).as_deref(), t.refused()), (Some("2"), 3));
        std::fs::write(&crl, "junk").unwrap();
        t.refresh();
        assert_eq!((crl_number(&t).as_deref(), t.refused()), (Some("2"), 4));
        let stats = t.crl_stats().unwrap();
        assert_eq!(stats["refused"], 4);
        assert_eq!(stats["number"], "2");
        assert_eq!(stats["stale"], false);

        // The same CRL again changes nothing; a newer one is taken.
        std::fs::write(&crl, &second).unwrap();
        t.reload_now();
        assert_eq!((crl_number(&t).as_deref(), t.refused()), (Some("2"), 4));
        // (As long as the previous one: a coarse clock could hide the change from refresh.)
        std::fs::write(&crl, ca.crl(&CrlOptions::default()).unwrap()).unwrap();
        t.reload_now();
        assert_eq!((crl_number(&t).as_deref(), t.refused()), (Some("3"), 4));
    }
}

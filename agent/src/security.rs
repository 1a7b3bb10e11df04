//! The responder's side of message security: its own credentials, the shared
//! trust store (CA and CRL, re-read when the CRL changes) and a replay cache
//! per node.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use mco_core::config::SecurityConfig;
pub use mco_core::security::Presigner;
use mco_core::security::{Credentials, LoadError, NodeKey, ReplayCache, TrustStore};
use mco_core::wire::{Envelope, Kind};
use tracing::{info, warn};

/// Replay cache bound per node until [`NodeSecurity::bounded_by`] sets the configured one.
const REPLAY_LIMIT: usize = mco_core::config::DEFAULT_REPLAY_CACHE;

/// The CA and CRL, swapped whole when the CRL file changes.
pub struct SharedTrust {
    ca: PathBuf,
    crl: Option<PathBuf>,
    current: RwLock<(Arc<TrustStore>, Option<SystemTime>)>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl SharedTrust {
    /// Loads the CA and CRL.
    pub fn load(ca: &Path, crl: Option<&Path>) -> Result<SharedTrust, LoadError> {
        let store = TrustStore::load(ca, crl)?.with_memo();
        Ok(SharedTrust {
            ca: ca.to_path_buf(),
            crl: crl.map(Path::to_path_buf),
            current: RwLock::new((Arc::new(store), crl.and_then(mtime))),
        })
    }

    /// The trust store in force.
    pub fn get(&self) -> Arc<TrustStore> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Re-reads the CRL if its file changed; a CRL that fails to load keeps
    /// the previous one in force and is reported.
    pub fn refresh(&self) {
        let Some(crl) = &self.crl else { return };
        let now = mtime(crl);
        if now == self.current.read().unwrap_or_else(|e| e.into_inner()).1 {
            return;
        }
        match TrustStore::load(&self.ca, Some(crl)).map(TrustStore::with_memo) {
            Ok(store) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = (Arc::new(store), now);
                info!("re-read the CRL {}", crl.display());
            }
            Err(e) => warn!("keeping the previous CRL: {e}"),
        }
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

/// Paths in `[security]` may hold `{identity}`, replaced per (virtual) node.
pub fn for_identity(p: &Path, identity: &str) -> PathBuf {
    PathBuf::from(p.to_string_lossy().replace("{identity}", identity))
}

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

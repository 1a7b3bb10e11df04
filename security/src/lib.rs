//! Message security (ARCHITECTURE.md §7): signing envelopes and verifying them.
//!
//! Every request carries the caller's certificate and an Ed25519 signature
//! over the exact body bytes; every reply likewise for the node. A receiver
//! checks that the certificate was issued by the collective's CA, is within
//! its validity and not revoked, that the signature verifies, and that the
//! name the body claims is the name the certificate proves. Parsed
//! certificates are cached by the SHA-256 of their DER bytes, so the cost per
//! message is one signature check; a short-lived client can keep them in a
//! known-certificates file between runs (see [`TrustStore::export_known`]).
//!
//! Authorization lives here too: [`policy`] is the actionpolicy language and
//! the [`policy::Authorizer`] the responder asks before an action runs.

#![forbid(unsafe_code)]

mod crl;
mod known;
mod nodekey;
pub mod policy;
mod presign;
mod replay;
mod verified;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use sha2::{Digest, Sha256};

use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use x509_parser::prelude::*;

use mco_core::limits::MAX_CERT_LEN;
use mco_core::wire::{Envelope, Kind, PROTOCOL_VERSION};

pub use crl::CrlInfo;
pub use nodekey::{verify_key_signed, NodeKey};
pub use presign::Presigner;
pub use replay::{ReplayCache, Seen};

#[cfg(test)]
mod tests;

/// Why a message was not trusted. Each kind has its own counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    /// No signature or no certificate.
    #[error("the message is not signed")]
    Unsigned,
    /// The certificate does not parse.
    #[error("the certificate does not parse: {0}")]
    BadCertificate(String),
    /// The certificate was not issued by this collective's CA.
    #[error("the certificate of {0:?} was not issued by the collective's CA")]
    UntrustedCertificate(String),
    /// Before its not-before time.
    #[error("the certificate of {0:?} is not valid yet")]
    NotYetValid(String),
    /// After its not-after time.
    #[error("the certificate of {0:?} has expired")]
    Expired(String),
    /// On the CRL.
    #[error("the certificate of {0:?} is revoked")]
    Revoked(String),
    /// The signature does not verify over the body.
    #[error("the signature of {0:?} does not verify")]
    BadSignature(String),
    /// The body names someone else than the certificate.
    #[error("the message claims to be from {claimed:?} but is signed by {signer:?}")]
    NameMismatch {
        /// The name in the body.
        claimed: String,
        /// The certificate's name.
        signer: String,
    },
    /// A certificate of the wrong kind (a node acting as a caller).
    #[error("{0:?} may not send this kind of message")]
    WrongPrincipal(String),
    /// The request id was seen before within its TTL.
    #[error("request id {0} was already seen")]
    Replay(String),
}

impl SecurityError {
    /// A short stable name for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            SecurityError::Unsigned => "unsigned",
            SecurityError::BadCertificate(_) => "bad_certificate",
            SecurityError::UntrustedCertificate(_) => "untrusted_certificate",
            SecurityError::NotYetValid(_) => "certificate_not_yet_valid",
            SecurityError::Expired(_) => "certificate_expired",
            SecurityError::Revoked(_) => "certificate_revoked",
            SecurityError::BadSignature(_) => "bad_signature",
            SecurityError::NameMismatch { .. } => "name_mismatch",
            SecurityError::WrongPrincipal(_) => "wrong_principal",
            SecurityError::Replay(_) => "replay",
        }
    }
}

/// Loading keys, certificates or CRLs failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct LoadError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn load_err(path: &Path, message: impl std::fmt::Display) -> LoadError {
    LoadError {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Reads the DER bytes of the first PEM block in a file (or the file itself if DER).
fn read_der(path: &Path) -> Result<Vec<u8>, LoadError> {
    let bytes = std::fs::read(path).map_err(|e| load_err(path, e))?;
    der_of(bytes).map_err(|e| load_err(path, e))
}

/// The DER bytes of the first PEM block in `bytes` (or `bytes` itself if DER).
fn der_of(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if bytes.starts_with(b"-----BEGIN") {
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(&bytes).map_err(|e| format!("not PEM: {e}"))?;
        Ok(pem.contents)
    } else {
        Ok(bytes)
    }
}

/// A party's own key and certificate, for signing.
pub struct Credentials {
    key: SigningKey,
    /// The key's SHA-512 expansion, derived once from `key` rather than on
    /// every signature (ed25519-dalek's `SigningKey::sign` re-derives it each
    /// time), so a signature is the same RFC 8032 signature `key.sign`
    /// makes, byte for byte.
    expanded: ExpandedSecretKey,
    cert_der: Vec<u8>,
    name: String,
    /// Prepared nonces, for a party that signs many messages (a responder).
    presigner: Option<Arc<Presigner>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("name", &self.name)
            .finish()
    }
}

impl Credentials {
    /// Loads a certificate and its Ed25519 private key (PKCS#8 PEM), checking they belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<Credentials, LoadError> {
        let cert_der = read_der(cert)?;
        let text = std::fs::read_to_string(key).map_err(|e| load_err(key, e))?;
        let key_pair = SigningKey::from_pkcs8_pem(&text)
            .map_err(|e| load_err(key, format!("not an Ed25519 PKCS#8 private key: {e}")))?;
        let (_, parsed) = parse_x509_certificate(&cert_der).map_err(|e| load_err(cert, e))?;
        let name = common_name(&parsed).ok_or_else(|| load_err(cert, "no common name"))?;
        if parsed.public_key().subject_public_key.data.as_ref()
            != key_pair.verifying_key().as_bytes()
        {
            return Err(load_err(
                key,
                format!(
                    "this key does not belong to the certificate {}",
                    cert.display()
                ),
            ));
        }
        Ok(Credentials {
            expanded: ExpandedSecretKey::from(key_pair.as_bytes()),
            key: key_pair,
            cert_der,
            name,
            presigner: None,
        })
    }

    /// Signs with nonces prepared ahead of time by `presigner` (see
    /// [`Presigner`]) while it has any, instead of deriving each nonce when
    /// signing.
    pub fn with_presigner(mut self, presigner: Arc<Presigner>) -> Credentials {
        self.presigner = Some(presigner);
        self
    }

    /// The presigner this party signs with, if any.
    pub fn presigner(&self) -> Option<&Presigner> {
        self.presigner.as_deref()
    }

    /// A 32-byte secret derived from the private key for `purpose`: what
    /// authenticates files only this party should write (its known
    /// certificates).
    pub fn derive_secret(&self, purpose: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"mco derived secret\0");
        h.update(purpose.as_bytes());
        h.update([0]);
        h.update(self.key.to_bytes());
        h.finalize().into()
    }

    /// The certificate's name, e.g. `user:alice`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Signs `body` into an envelope carrying our certificate.
    pub fn seal(&self, kind: Kind, body: Vec<u8>) -> Envelope {
        let public = self.key.verifying_key();
        let sig = match &self.presigner {
            Some(p) => p.sign(&self.expanded, &public, &body).0,
            None => raw_sign::<sha2::Sha512>(&self.expanded, &body, &public),
        }
        .to_bytes()
        .to_vec();
        Envelope {
            v: PROTOCOL_VERSION,
            kind,
            body,
            sig,
            cert: self.cert_der.clone(),
            key: Vec::new(),
        }
    }
}

fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

/// What a verified certificate proves.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `user:NAME` or `node:IDENTITY`.
    pub name: String,
    not_before: i64,
    not_after: i64,
    serial: Vec<u8>,
    key: VerifyingKey,
}

impl Principal {
    /// Whether this is a `user:` caller.
    pub fn is_user(&self) -> bool {
        self.name.starts_with("user:")
    }

    /// The node identity for a `node:` principal.
    pub fn node_identity(&self) -> Option<&str> {
        self.name.strip_prefix("node:")
    }
}

/// The collective's CA and CRL: what every message is checked against.
pub struct TrustStore {
    ca_key: VerifyingKey,
    /// The CA's certificate, which a replacement CRL must be signed by.
    ca_der: Vec<u8>,
    /// The CRL in force, if one is configured, and the serials it revokes: replaced whole, in
    /// place, by a newer CRL ([`apply_crl`](Self::apply_crl)).
    revocation: RwLock<Arc<crl::Revocation>>,
    ca_subject: Vec<u8>,
    /// Certificates that checked good in this process, by the SHA-256 of
    /// their DER. Only the CA can add to it, so it grows with the fleet.
    cache: RwLock<HashMap<[u8; 32], Arc<Principal>>>,
    /// Certificates refused in this process, by the SHA-256 of their DER:
    /// anyone can send these, so the map is small and cleared when full.
    refused: RwLock<HashMap<[u8; 32], SecurityError>>,
    /// Certificates from a known-certificates file, by the SHA-256 of their DER.
    imported: RwLock<HashMap<[u8; 32], Arc<Imported>>>,
    /// Certificates checked in this process, not yet in the known file.
    learned: std::sync::atomic::AtomicUsize,
    memo: Option<Mutex<HashMap<[u8; 64], [u8; 32]>>>,
    /// Envelopes verified before, by digest (see [`verified`]).
    verified: verified::Verified,
}

/// What a remembered signature covered: the SHA-256 of the certificate and
/// body, each prefixed by its length, so a hit needs the same bytes without
/// the memo holding them.
fn covered(cert: &[u8], body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((cert.len() as u64).to_be_bytes());
    h.update(cert);
    h.update((body.len() as u64).to_be_bytes());
    h.update(body);
    h.finalize().into()
}

/// Ed25519 signatures that verify under the batch equation but not under
/// RFC 8032's strict rules: a non-canonical `R` (its y at or above the field
/// prime) or an `R` of small order. The batch path refuses these up front, so
/// both paths accept exactly what `verify_strict` accepts (the key's own
/// order is checked once, when its certificate is).
fn strict_r_ok(sig: &Signature) -> bool {
    let r = sig.r_bytes();
    let mut y = *r;
    y[31] &= 0x7f;
    // y >= p = 2^255 - 19: the top 31 bytes all 0xff (0x7f for the last) and the first >= 0xed.
    let non_canonical = y[0] >= 0xed && y[1..31].iter().all(|b| *b == 0xff) && y[31] == 0x7f;
    !non_canonical && !small_order_ys().contains(&y)
}

/// The y-coordinate encodings (sign bit cleared) of the eight points of small order.
fn small_order_ys() -> &'static [[u8; 32]; 8] {
    static YS: OnceLock<[[u8; 32]; 8]> = OnceLock::new();
    YS.get_or_init(|| {
        curve25519_dalek::constants::EIGHT_TORSION.map(|p| {
            let mut y = p.compress().to_bytes();
            y[31] &= 0x7f;
            y
        })
    })
}

/// A certificate from a known-certificates file. Its public key is turned
/// into a curve point (a square root in the field, tens of microseconds: most
/// of the cost of loading a fleet's file) only when first needed, or ahead
/// of time by [`TrustStore::warm_known`] on another thread, so loading the
/// file does not hold up the caller's start.
struct Imported {
    entry: known::Entry,
    principal: OnceLock<Option<Arc<Principal>>>,
}

impl Imported {
    /// The principal, or `None` if the stored key is not a curve point (the
    /// certificate is then checked against the CA as an unknown one).
    fn principal(&self) -> Option<Arc<Principal>> {
        self.principal
            .get_or_init(|| {
                let key = VerifyingKey::from_bytes(&self.entry.key).ok()?;
                Some(Arc::new(Principal {
                    name: self.entry.name.clone(),
                    not_before: self.entry.not_before,
                    not_after: self.entry.not_after,
                    serial: self.entry.serial.clone(),
                    key,
                }))
            })
            .clone()
    }
}

/// The SHA-256 of a certificate's DER: its key in the cache.
fn cert_digest(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Bound on remembered envelopes (see [`TrustStore::with_memo`]): each entry
/// is 96 bytes, whatever the size of the message.
const MEMO_LIMIT: usize = 1024;

/// Bound on remembered refused certificates (each entry a digest and an
/// error naming at most one certificate's name).
const REFUSED_LIMIT: usize = 1024;

/// The Ed25519 signature algorithm's OID, 1.3.101.112.
const ED25519_OID: &str = "1.3.101.112";

/// A certificate checked against the CA.
type Checked = Result<Arc<Principal>, SecurityError>;

/// Bound on cached good certificates (a fleet's worth; cleared when full).
const CACHE_LIMIT: usize = 100_000;

impl TrustStore {
    /// Loads the CA certificate and, if given, the CRL. A CRL that is given must be read and
    /// signed by the CA: a missing or unreadable CRL is an error, never "nothing revoked".
    pub fn load(ca: &Path, crl: Option<&Path>) -> Result<TrustStore, LoadError> {
        let ca_der = read_der(ca)?;
        let (_, parsed) = parse_x509_certificate(&ca_der).map_err(|e| load_err(ca, e))?;
        let ca_key =
            ed25519_key(&parsed).ok_or_else(|| load_err(ca, "the CA key is not Ed25519"))?;
        let ca_subject = parsed.subject().as_raw().to_vec();
        let revocation = match crl {
            Some(p) => crl::read_crl(p, &ca_der)?,
            None => crl::Revocation::default(),
        };
        Ok(TrustStore {
            ca_key,
            ca_der,
            revocation: RwLock::new(Arc::new(revocation)),
            ca_subject,
            cache: RwLock::new(HashMap::new()),
            refused: RwLock::new(HashMap::new()),
            imported: RwLock::new(HashMap::new()),
            learned: std::sync::atomic::AtomicUsize::new(0),
            memo: None,
            verified: verified::Verified::default(),
        })
    }

    /// Loads a known-certificates file written by [`export_known`](Self::export_known)
    /// with the same `secret` for this CA: its certificates are not checked
    /// against the CA again (validity and the CRL still are). Returns how many
    /// were loaded, or why the file was refused (nothing is loaded then).
    pub fn import_known(&self, bytes: &[u8], secret: &[u8; 32]) -> Result<usize, &'static str> {
        let entries = known::decode(bytes, self.ca_key.as_bytes(), secret)?;
        let mut imported = self.imported.write().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for e in entries {
            if imported.len() >= CACHE_LIMIT {
                break;
            }
            imported.insert(
                e.digest,
                Arc::new(Imported {
                    entry: e,
                    principal: OnceLock::new(),
                }),
            );
            n += 1;
        }
        Ok(n)
    }

    /// Prepares every imported certificate's key now rather than on its
    /// first message: worth calling on a spare thread right after
    /// [`import_known`](Self::import_known), while the caller connects and
    /// sends its request. Checks nothing and changes no result.
    pub fn warm_known(&self) {
        self.warm_known_matching(|_| true);
    }

    /// As [`warm_known`](Self::warm_known), for the certificates whose name
    /// (`node:IDENTITY`) `wanted` accepts: the nodes a request goes to, so a
    /// call to a few nodes does not prepare a whole fleet's keys.
    pub fn warm_known_matching(&self, wanted: impl Fn(&str) -> bool) {
        let some: Vec<Arc<Imported>> = self
            .imported
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|imp| wanted(&imp.entry.name))
            .cloned()
            .collect();
        for imp in some {
            imp.principal();
        }
    }

    /// Whether certificates were checked since the last export.
    pub fn learned_any(&self) -> bool {
        self.learned.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    /// Every certificate checked good and not expired at `now_s`, as a
    /// known-certificates file authenticated with `secret`.
    pub fn export_known(&self, secret: &[u8; 32], now_s: i64) -> Vec<u8> {
        let mut all: HashMap<[u8; 32], known::Entry> = self
            .imported
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(d, imp)| (*d, imp.entry.clone()))
            .collect();
        for (digest, p) in self.cache.read().unwrap_or_else(|e| e.into_inner()).iter() {
            all.insert(
                *digest,
                known::Entry {
                    digest: *digest,
                    key: p.key.to_bytes(),
                    not_before: p.not_before,
                    not_after: p.not_after,
                    serial: p.serial.clone(),
                    name: p.name.clone(),
                },
            );
        }
        let mut entries: Vec<known::Entry> =
            all.into_values().filter(|e| e.not_after >= now_s).collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        self.learned.store(0, std::sync::atomic::Ordering::Relaxed);
        known::encode(self.ca_key.as_bytes(), &entries, secret)
    }

    /// Remembers envelopes whose signature verified, so the same bytes are
    /// not verified twice. Worth it where one process receives each message
    /// many times (a responder serving virtual nodes gets every broadcast once
    /// per node); validity and the CRL are still checked every time.
    pub fn with_memo(mut self) -> TrustStore {
        self.memo = Some(Mutex::new(HashMap::new()));
        self
    }

    /// Checks an envelope's certificate and signature at time `now_s` (Unix
    /// seconds); returns who signed it.
    pub fn verify(&self, env: &Envelope, now_s: i64) -> Result<Arc<Principal>, SecurityError> {
        if env.sig.len() != 64 || env.cert.is_empty() {
            return Err(SecurityError::Unsigned);
        }
        let digest = certificate_digest(&env.cert)?;
        let p = self.principal(&env.cert, &digest)?;
        if now_s < p.not_before {
            return Err(SecurityError::NotYetValid(p.name.clone()));
        }
        if now_s > p.not_after {
            return Err(SecurityError::Expired(p.name.clone()));
        }
        if self.revocation().revokes(&p.serial) {
            return Err(SecurityError::Revoked(p.name.clone()));
        }
        // The memo is keyed by the signature and holds a digest of the bytes
        // it covered: a hit needs the same certificate and body, byte for byte.
        let sig_bytes: Option<[u8; 64]> = env.sig.as_slice().try_into().ok();
        let seen = self.memo.as_ref().map(|_| covered(&env.cert, &env.body));
        if let (Some(memo), Some(k), Some(seen)) = (&self.memo, &sig_bytes, &seen) {
            let hit = memo
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(k)
                .copied();
            if hit.as_ref() == Some(seen) {
                return Ok(p);
            }
        }
        let sig = Signature::from_slice(&env.sig)
            .map_err(|_| SecurityError::BadSignature(p.name.clone()))?;
        p.key
            .verify_strict(&env.body, &sig)
            .map_err(|_| SecurityError::BadSignature(p.name.clone()))?;
        if let (Some(memo), Some(k), Some(seen)) = (&self.memo, sig_bytes, seen) {
            let mut m = memo.lock().unwrap_or_else(|e| e.into_inner());
            if m.len() >= MEMO_LIMIT {
                m.clear();
            }
            m.insert(k, seen);
        }
        Ok(p)
    }

    /// Checks many envelopes at once, as [`verify`](Self::verify) does one:
    /// every signature involved — each message's, and the CA's on each
    /// certificate not yet cached — is checked in one Ed25519 batch, about
    /// twice as fast per signature. If the batch fails, each envelope is
    /// checked alone, so one bad message never condemns the others.
    pub fn verify_many(
        &self,
        envs: &[&Envelope],
        now_s: i64,
    ) -> Vec<Result<Arc<Principal>, SecurityError>> {
        if envs.len() < 2 {
            return envs.iter().map(|e| self.verify(e, now_s)).collect();
        }
        // Gather what to check; anything unusual takes the one-by-one path.
        struct Fresh {
            digest: [u8; 32],
            principal: Principal,
            tbs: Vec<u8>,
            sig: Signature,
        }
        let mut messages: Vec<&[u8]> = Vec::with_capacity(envs.len() * 2);
        let mut sigs = Vec::with_capacity(envs.len() * 2);
        let mut keys = Vec::with_capacity(envs.len() * 2);
        let mut fresh: Vec<Fresh> = Vec::new();
        let mut principals: Vec<Arc<Principal>> = Vec::with_capacity(envs.len());
        for env in envs {
            let Ok(sig) = Signature::from_slice(&env.sig) else {
                return envs.iter().map(|e| self.verify(e, now_s)).collect();
            };
            let Ok(digest) = certificate_digest(&env.cert) else {
                return envs.iter().map(|e| self.verify(e, now_s)).collect();
            };
            if !strict_r_ok(&sig) {
                return envs.iter().map(|e| self.verify(e, now_s)).collect();
            }
            let cached = self.cached(&digest);
            let p = match cached {
                Some(Ok(p)) => p,
                Some(Err(_)) => return envs.iter().map(|e| self.verify(e, now_s)).collect(),
                None => match self.parse_unverified(&env.cert) {
                    Some(f) => {
                        let p = Arc::new(f.0.clone());
                        fresh.push(Fresh {
                            digest,
                            principal: f.0,
                            tbs: f.1,
                            sig: f.2,
                        });
                        p
                    }
                    None => return envs.iter().map(|e| self.verify(e, now_s)).collect(),
                },
            };
            messages.push(&env.body);
            sigs.push(sig);
            keys.push(p.key);
            principals.push(p);
        }
        for f in &fresh {
            messages.push(&f.tbs);
            sigs.push(f.sig);
            keys.push(self.ca_key);
        }
        if ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_err() {
            return envs.iter().map(|e| self.verify(e, now_s)).collect();
        }
        {
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            if cache.len() + fresh.len() >= CACHE_LIMIT {
                cache.clear();
            }
            self.learned
                .fetch_add(fresh.len(), std::sync::atomic::Ordering::Relaxed);
            for f in fresh {
                cache.insert(f.digest, Arc::new(f.principal));
            }
        }
        let revocation = self.revocation();
        principals
            .into_iter()
            .map(|p| {
                if now_s < p.not_before {
                    Err(SecurityError::NotYetValid(p.name.clone()))
                } else if now_s > p.not_after {
                    Err(SecurityError::Expired(p.name.clone()))
                } else if revocation.revokes(&p.serial) {
                    Err(SecurityError::Revoked(p.name.clone()))
                } else {
                    Ok(p)
                }
            })
            .collect()
    }

    /// A certificate's principal, its to-be-signed bytes and the CA's
    /// signature on them, without checking that signature; `None` if the
    /// certificate is not one the CA could have issued.
    fn parse_unverified(&self, der: &[u8]) -> Option<(Principal, Vec<u8>, Signature)> {
        let (_, cert) = parse_x509_certificate(der).ok()?;
        if cert.issuer().as_raw() != self.ca_subject.as_slice()
            || cert.signature_algorithm.algorithm.to_id_string() != ED25519_OID
        {
            return None;
        }
        let sig = Signature::from_slice(cert.signature_value.data.as_ref()).ok()?;
        if !strict_r_ok(&sig) {
            return None;
        }
        let principal = Principal {
            name: common_name(&cert)?,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            serial: cert.raw_serial().to_vec(),
            key: ed25519_key(&cert)?,
        };
        Some((principal, cert.tbs_certificate.as_ref().to_vec(), sig))
    }

    /// How many good and refused certificates are remembered.
    #[cfg(test)]
    fn cache_sizes(&self) -> (usize, usize) {
        (
            self.cache.read().unwrap_or_else(|e| e.into_inner()).len(),
            self.refused.read().unwrap_or_else(|e| e.into_inner()).len(),
        )
    }

    /// How many envelopes the memo remembers.
    #[cfg(test)]
    fn memo_len(&self) -> usize {
        self.memo
            .as_ref()
            .map_or(0, |m| m.lock().unwrap_or_else(|e| e.into_inner()).len())
    }

    /// A certificate checked before, in this process or (through the known
    /// file) an earlier one.
    /// A known certificate is not copied into `cache`: its entry keeps the
    /// prepared key, and a short-lived client sees each certificate about
    /// once.
    fn cached(&self, digest: &[u8; 32]) -> Option<Checked> {
        if let Some(hit) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
        {
            return Some(Ok(hit.clone()));
        }
        if let Some(refused) = self
            .refused
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
        {
            return Some(Err(refused.clone()));
        }
        let imp = {
            let imported = self.imported.read().unwrap_or_else(|e| e.into_inner());
            if imported.is_empty() {
                return None;
            }
            imported.get(digest)?.clone()
        };
        imp.principal().map(Ok)
    }

    /// The name, validity and serial of a certificate checked good before, in this process or
    /// through the known file, without preparing its key; `None` if it was not (or was
    /// refused).
    fn certificate_facts(&self, digest: &[u8; 32]) -> Option<verified::Facts> {
        if let Some(p) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
        {
            return Some(verified::facts_of(p));
        }
        let imported = self.imported.read().unwrap_or_else(|e| e.into_inner());
        let e = &imported.get(digest)?.entry;
        Some((e.name.clone(), e.not_before, e.not_after, e.serial.clone()))
    }

    fn principal(&self, der: &[u8], digest: &[u8; 32]) -> Result<Arc<Principal>, SecurityError> {
        if let Some(hit) = self.cached(digest) {
            return hit;
        }
        match self.check_chain(der) {
            Ok(p) => {
                let p = Arc::new(p);
                self.learned
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= CACHE_LIMIT {
                    cache.clear();
                }
                cache.insert(*digest, p.clone());
                Ok(p)
            }
            Err(e) => {
                let mut refused = self.refused.write().unwrap_or_else(|e| e.into_inner());
                if refused.len() >= REFUSED_LIMIT {
                    refused.clear();
                }
                refused.insert(*digest, e.clone());
                Err(e)
            }
        }
    }

    fn check_chain(&self, der: &[u8]) -> Result<Principal, SecurityError> {
        let (_, cert) = parse_x509_certificate(der)
            .map_err(|e| SecurityError::BadCertificate(e.to_string()))?;
        let name = common_name(&cert)
            .ok_or_else(|| SecurityError::BadCertificate("no common name".into()))?;
        let untrusted = || SecurityError::UntrustedCertificate(name.clone());
        if cert.issuer().as_raw() != self.ca_subject.as_slice()
            || cert.signature_algorithm.algorithm.to_id_string() != ED25519_OID
        {
            return Err(untrusted());
        }
        let sig =
            Signature::from_slice(cert.signature_value.data.as_ref()).map_err(|_| untrusted())?;
        self.ca_key
            .verify_strict(cert.tbs_certificate.as_ref(), &sig)
            .map_err(|_| untrusted())?;
        let key = ed25519_key(&cert).ok_or_else(|| {
            SecurityError::BadCertificate(format!(
                "{name}: not an Ed25519 key, or one of small order"
            ))
        })?;
        Ok(Principal {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            serial: cert.raw_serial().to_vec(),
            key,
            name,
        })
    }
}

/// The Ed25519 public key of a certificate, if it has one that is not of
/// small order (a weak key verifies signatures it never made).
fn ed25519_key(cert: &X509Certificate<'_>) -> Option<VerifyingKey> {
    let raw: [u8; 32] = cert
        .public_key()
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .ok()?;
    VerifyingKey::from_bytes(&raw).ok().filter(|k| !k.is_weak())
}

/// The SHA-256 of a certificate from an envelope, refusing one over
/// [`MAX_CERT_LEN`] bytes before anything parses or remembers it.
fn certificate_digest(der: &[u8]) -> Result<[u8; 32], SecurityError> {
    if der.len() > MAX_CERT_LEN {
        return Err(SecurityError::BadCertificate(format!(
            "a certificate of {} bytes is over the {MAX_CERT_LEN} byte bound",
            der.len()
        )));
    }
    Ok(cert_digest(der))
}

//! Envelopes this party already verified, remembered across runs: what makes reading a fleet's
//! inventory registry cheap when little of it changed since the last read.
//!
//! A registry holds one signed entry per node, rewritten only when the node's facts change and
//! at its interval, so most of what one `mco` run reads the next run reads again, byte for byte.
//! [`TrustStore::verify_entries`] checks each entry as [`TrustStore::verify_many`] does, except
//! that an envelope whose exact bytes (certificate, body, signature) it verified before skips the
//! signature check: the SHA-256 of those bytes stands for "this signature verified". The
//! certificate is still looked up (checked against the CA now or before, through the known
//! certificates) and its validity and revocation are checked on every read, so a remembered
//! entry of a revoked or expired node is refused like any other.
//!
//! The digests are kept in a file beside the known certificates, authenticated the same way (an
//! HMAC-SHA256 keyed by a secret derived from the owner's private key, and naming the CA): a file
//! written under another CA or key, altered, or truncated is ignored whole, and everything is
//! verified again. A digest can only enter the file after its envelope verified in this process.
//!
//! Layout: `MCOVE1\n`, the CA's 32-byte key, a u32 count, the digests (32 bytes each), then the
//! HMAC; integers little-endian.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use sha2::{Digest, Sha256};

use super::known::hmac;
use super::{certificate_digest, Principal, SecurityError, TrustStore};
use mco_core::wire::Envelope;

const MAGIC: &[u8] = b"MCOVE1\n";

/// Most digests remembered: a registry's bound on entries.
pub const VERIFIED_LIMIT: usize = 100_000;

/// The remembered digests, and which of them this process used.
#[derive(Default)]
pub(super) struct Verified {
    /// Digests of envelopes that verified, in this run or (from the file) an earlier one.
    known: RwLock<HashSet<[u8; 32]>>,
    /// The digests this process met again or verified: what is worth writing back.
    used: Mutex<HashSet<[u8; 32]>>,
    /// Whether a digest was added since the file was read.
    added: AtomicBool,
}

/// What stands for an envelope's exact bytes: the SHA-256 of its certificate, body and
/// signature, each prefixed by its length.
fn envelope_digest(env: &Envelope) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [&env.cert, &env.body, &env.sig] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

impl TrustStore {
    /// Loads a file written by [`export_verified`](Self::export_verified) with the same `secret`
    /// for this CA. Returns how many digests were loaded, or why the file was refused (nothing
    /// is loaded then).
    pub fn import_verified(&self, bytes: &[u8], secret: &[u8; 32]) -> Result<usize, &'static str> {
        let header = MAGIC.len() + 32 + 4;
        if bytes.len() < header + 32 || !bytes.starts_with(MAGIC) {
            return Err("not a verified-entries file");
        }
        let (data, mac) = bytes.split_at(bytes.len() - 32);
        if hmac(secret, data).as_slice() != mac {
            return Err("written with another key, or altered");
        }
        if &data[MAGIC.len()..MAGIC.len() + 32] != self.ca_key.as_bytes() {
            return Err("written for another CA");
        }
        let count = u32::from_le_bytes(
            data[MAGIC.len() + 32..header]
                .try_into()
                .map_err(|_| "truncated")?,
        ) as usize;
        let digests = &data[header..];
        if count > VERIFIED_LIMIT || digests.len() != count * 32 {
            return Err("a wrong count");
        }
        let mut known = self
            .verified
            .known
            .write()
            .unwrap_or_else(|e| e.into_inner());
        known.extend(
            digests
                .chunks_exact(32)
                .filter_map(|d| <[u8; 32]>::try_from(d).ok()),
        );
        Ok(count)
    }

    /// The digests this process met again or verified, as a file authenticated with `secret`;
    /// `None` when nothing was added since the file was read (it need not be written).
    pub fn export_verified(&self, secret: &[u8; 32]) -> Option<Vec<u8>> {
        if !self.verified.added.swap(false, Ordering::Relaxed) {
            return None;
        }
        let used = self.verified.used.lock().unwrap_or_else(|e| e.into_inner());
        let mut digests: Vec<&[u8; 32]> = used.iter().take(VERIFIED_LIMIT).collect();
        digests.sort();
        let mut out = Vec::with_capacity(MAGIC.len() + 68 + digests.len() * 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(self.ca_key.as_bytes());
        out.extend_from_slice(&(digests.len() as u32).to_le_bytes());
        for d in digests {
            out.extend_from_slice(d);
        }
        let mac = hmac(secret, &out);
        out.extend_from_slice(&mac);
        Some(out)
    }

    /// Checks many envelopes as [`verify_many`](Self::verify_many) does, and returns each
    /// signer's name; an envelope whose exact bytes verified before (in this process or, through
    /// [`import_verified`](Self::import_verified), an earlier one) skips the signature check,
    /// never the certificate's validity and revocation.
    pub fn verify_entries(
        &self,
        envs: &[&Envelope],
        now_s: i64,
    ) -> Vec<Result<String, SecurityError>> {
        let digests: Vec<[u8; 32]> = envs.iter().map(|e| envelope_digest(e)).collect();
        let mut out: Vec<Option<Result<String, SecurityError>>> = Vec::with_capacity(envs.len());
        let mut fresh: Vec<usize> = Vec::new();
        {
            let known = self
                .verified
                .known
                .read()
                .unwrap_or_else(|e| e.into_inner());
            for (i, env) in envs.iter().enumerate() {
                // The certificate's digest (and its size bound) is taken once, by
                // `remembered_signer`.
                let remembered = known.contains(&digests[i]) && env.sig.len() == 64;
                match remembered
                    .then(|| self.remembered_signer(&env.cert, now_s))
                    .flatten()
                {
                    Some(result) => out.push(Some(result)),
                    None => {
                        out.push(None);
                        fresh.push(i);
                    }
                }
            }
        }
        let to_check: Vec<&Envelope> = fresh.iter().map(|&i| envs[i]).collect();
        let checked = self.verify_many(&to_check, now_s);
        let mut used = self.verified.used.lock().unwrap_or_else(|e| e.into_inner());
        let mut known = self
            .verified
            .known
            .write()
            .unwrap_or_else(|e| e.into_inner());
        for (i, result) in fresh.iter().zip(checked) {
            if result.is_ok() && known.len() < VERIFIED_LIMIT && known.insert(digests[*i]) {
                self.verified.added.store(true, Ordering::Relaxed);
            }
            out[*i] = Some(result.map(|p| p.name.clone()));
        }
        for (i, result) in out.iter().enumerate() {
            if matches!(result, Some(Ok(_))) && used.len() < VERIFIED_LIMIT {
                used.insert(digests[i]);
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or(Err(SecurityError::Unsigned)))
            .collect()
    }

    /// The signer of a remembered envelope from its certificate alone, if the certificate was
    /// checked before (in this process or through the known certificates): its name if valid
    /// at `now_s` and not revoked. `None` sends the envelope down the full path.
    fn remembered_signer(&self, cert: &[u8], now_s: i64) -> Option<Result<String, SecurityError>> {
        let digest = certificate_digest(cert).ok()?;
        let (name, not_before, not_after, serial) = self.certificate_facts(&digest)?;
        Some(if now_s < not_before {
            Err(SecurityError::NotYetValid(name))
        } else if now_s > not_after {
            Err(SecurityError::Expired(name))
        } else if self.revocation().revokes(&serial) {
            Err(SecurityError::Revoked(name))
        } else {
            Ok(name)
        })
    }
}

/// A principal's name, validity and serial.
pub(super) type Facts = (String, i64, i64, Vec<u8>);

/// The facts of `p`.
pub(super) fn facts_of(p: &Arc<Principal>) -> Facts {
    (p.name.clone(), p.not_before, p.not_after, p.serial.clone())
}

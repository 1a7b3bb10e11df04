//! The collective's CRL as a receiver holds it: read and checked against the CA, and compared
//! with the CRL it replaces.
//!
//! Revocation fails closed. A CRL that is configured must be read: a missing, unreadable,
//! foreign or malformed file is an error ([`TrustStore::load`] fails), never "nothing revoked".
//! CRLs only move forward: a replacement whose CRL number (then `thisUpdate`) is older than the
//! CRL in force is refused ([`CrlInfo::check_successor`]), so an old CRL copied back over a newer
//! one cannot un-revoke anyone. A CRL past its `nextUpdate` stays in force: its revocations are
//! still true, and refusing every message because the CA did not publish in time would take the
//! whole fleet down; the holder reports it loudly instead ([`CrlInfo::is_stale`]).

use std::collections::HashSet;
use std::path::Path;

use sha2::{Digest, Sha256};
use x509_parser::num_bigint::BigUint;
use x509_parser::prelude::*;

use super::{der_of, load_err, read_der, LoadError, TrustStore};

/// The CRL in force and the raw serials it revokes.
#[derive(Debug, Default)]
pub(super) struct Revocation {
    info: Option<CrlInfo>,
    revoked: HashSet<Vec<u8>>,
}

impl Revocation {
    /// Whether the CRL in force revokes `serial`.
    pub(super) fn revokes(&self, serial: &[u8]) -> bool {
        self.revoked.contains(serial)
    }
}

/// What a loaded CRL says about itself (its revoked serials live in the [`TrustStore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    number: Option<BigUint>,
    this_update: i64,
    next_update: Option<i64>,
    revoked: usize,
    digest: [u8; 32],
}

impl CrlInfo {
    /// The CRL number, in decimal, if the CRL has one.
    pub fn number(&self) -> Option<String> {
        self.number.as_ref().map(BigUint::to_string)
    }

    /// `thisUpdate`, Unix seconds.
    pub fn this_update(&self) -> i64 {
        self.this_update
    }

    /// `nextUpdate`, Unix seconds, if the CRL has one.
    pub fn next_update(&self) -> Option<i64> {
        self.next_update
    }

    /// How many certificates it revokes.
    pub fn revoked(&self) -> usize {
        self.revoked
    }

    /// Whether `now_s` (Unix seconds) is past the CRL's `nextUpdate`: the CA should have
    /// published a newer one. The CRL stays in force; its holder should say so loudly.
    pub fn is_stale(&self, now_s: i64) -> bool {
        self.next_update.is_some_and(|next| now_s > next)
    }

    /// Whether `newer` may replace this CRL: the same CRL again, or one that is not older —
    /// a greater CRL number, or (the same number, or no numbers) a later `thisUpdate`. A CRL
    /// without a number never replaces one with a number.
    pub fn check_successor(&self, newer: &CrlInfo) -> Result<(), String> {
        if newer.digest == self.digest {
            return Ok(());
        }
        let describe = |c: &CrlInfo| match &c.number {
            Some(n) => format!("CRL number {n} of {}", c.this_update),
            None => format!("a CRL without a number, of {}", c.this_update),
        };
        let older = match (&self.number, &newer.number) {
            (Some(_), None) => true,
            (Some(old), Some(new)) if new != old => new < old,
            _ => newer.this_update <= self.this_update,
        };
        if older {
            return Err(format!(
                "{} is not newer than the {} in force; CRLs only move forward",
                describe(newer),
                describe(self)
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for CrlInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.number {
            Some(n) => write!(f, "CRL number {n}")?,
            None => f.write_str("CRL without a number")?,
        }
        write!(
            f,
            " ({} revoked, this update {}",
            self.revoked, self.this_update
        )?;
        if let Some(next) = self.next_update {
            write!(f, ", next update {next}")?;
        }
        f.write_str(")")
    }
}

impl TrustStore {
    /// The CRL in force, if one was configured or applied.
    pub fn crl(&self) -> Option<CrlInfo> {
        self.revocation().info.clone()
    }

    /// The CRL in force and what it revokes.
    pub(super) fn revocation(&self) -> std::sync::Arc<Revocation> {
        self.revocation
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts a CRL received while running (DER or PEM) in force, in place, for every holder of
    /// this store: only if the CA signed it and it is newer than the CRL in force
    /// ([`CrlInfo::check_successor`]). Returns whether it was put in force; the CRL already in
    /// force is `Ok(false)`; anything else is refused with the reason, and the CRL in force
    /// stays. A long-running client that watches the published CRL calls this.
    pub fn apply_crl(&self, der_or_pem: &[u8]) -> Result<bool, String> {
        let der = der_of(der_or_pem.to_vec())?;
        let new = parse_crl(&der, &self.ca_der)?;
        let mut slot = self.revocation.write().unwrap_or_else(|e| e.into_inner());
        if let (Some(old), Some(info)) = (&slot.info, &new.info) {
            if old == info {
                return Ok(false);
            }
            old.check_successor(info)?;
        }
        *slot = std::sync::Arc::new(new);
        Ok(true)
    }
}

/// Reads the CRL at `path` and checks that the CA (`ca_der`) signed it; returns what it says and
/// the raw serials it revokes. A missing file is an error like any other.
pub(super) fn read_crl(path: &Path, ca_der: &[u8]) -> Result<Revocation, LoadError> {
    let der =
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(load_err(
                path,
                "the configured CRL is missing; without it no revocation would be enforced, so \
                 nothing is trusted until it is restored (`mco pki crl` writes it)",
            )),
            _ => read_der(path)?,
        };
    parse_crl(&der, ca_der).map_err(|e| load_err(path, e))
}

/// Parses a CRL's DER and checks that the CA (`ca_der`) signed it.
fn parse_crl(der: &[u8], ca_der: &[u8]) -> Result<Revocation, String> {
    let (_, crl) = parse_x509_crl(der).map_err(|e| format!("not a CRL: {e}"))?;
    let (_, ca) = parse_x509_certificate(ca_der).map_err(|e| e.to_string())?;
    if crl.issuer() != ca.subject() || crl.verify_signature(ca.public_key()).is_err() {
        return Err("the CRL was not signed by the collective's CA".to_string());
    }
    let revoked: HashSet<Vec<u8>> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect();
    let info = CrlInfo {
        number: crl.crl_number().cloned(),
        this_update: crl.last_update().timestamp(),
        next_update: crl.next_update().map(|t| t.timestamp()),
        revoked: revoked.len(),
        digest: Sha256::digest(der).into(),
    };
    Ok(Revocation {
        info: Some(info),
        revoked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams,
        DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ED25519,
    };

    struct Ca {
        issuer: Issuer<'static, KeyPair>,
        pem: String,
    }

    fn new_ca() -> Ca {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "collective CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = p.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(p, key),
            pem,
        }
    }

    fn crl(ca: &Ca, number: u64, year: i32, serials: &[u64]) -> String {
        CertificateRevocationListParams {
            this_update: date_time_ymd(year, 1, 1),
            next_update: date_time_ymd(year + 1, 1, 1),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: date_time_ymd(year, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca.issuer)
        .unwrap()
        .pem()
        .unwrap()
    }

    fn load(dir: &Path, ca: &Ca, crl_pem: Option<&str>) -> Result<TrustStore, LoadError> {
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, &ca.pem).unwrap();
        let crl_path = dir.join("ca.crl");
        match crl_pem {
            Some(pem) => std::fs::write(&crl_path, pem).unwrap(),
            None => {
                let _ = std::fs::remove_file(&crl_path);
            }
        }
        TrustStore::load(&ca_path, Some(&crl_path))
    }

    #[test]
    fn a_configured_crl_that_is_missing_or_bad_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = new_ca();
        let err = load(tmp.path(), &ca, None).err().unwrap();
        assert!(err.message.contains("missing"), "{err}");
        assert!(load(tmp.path(), &ca, Some("not a CRL")).is_err());
        assert!(load(tmp.path(), &ca, Some("")).is_err());
        let other = new_ca();
        assert!(load(tmp.path(), &ca, Some(&crl(&other, 1, 2024, &[]))).is_err());
        // Without a CRL configured, nothing is revoked, as before.
        let ca_path = tmp.path().join("ca.pem");
        assert!(TrustStore::load(&ca_path, None).unwrap().crl().is_none());
    }

    #[test]
    fn crls_only_move_forward() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = new_ca();
        let info = |pem: &str| load(tmp.path(), &ca, Some(pem)).unwrap().crl().unwrap();
        let first = info(&crl(&ca, 1, 2024, &[]));
        assert_eq!(first.number().as_deref(), Some("1"));
        assert_eq!(first.revoked(), 0);
        let second = info(&crl(&ca, 2, 2025, &[5]));
        assert_eq!(second.revoked(), 1);
        first.check_successor(&second).unwrap();
        first.check_successor(&first).unwrap();
        let err = second.check_successor(&first).unwrap_err();
        assert!(err.contains("only move forward"), "{err}");
        // A greater number wins even with an earlier date; the same number needs a later date.
        let renumbered = info(&crl(&ca, 3, 2023, &[]));
        second.check_successor(&renumbered).unwrap();
        let same_number_later = info(&crl(&ca, 2, 2026, &[5, 6]));
        second.check_successor(&same_number_later).unwrap();
        assert!(same_number_later.check_successor(&second).is_err());
        let same_number_same_date = info(&crl(&ca, 2, 2025, &[]));
        assert!(second.check_successor(&same_number_same_date).is_err());
    }

    #[test]
    fn staleness_is_reported_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = new_ca();
        let store = load(tmp.path(), &ca, Some(&crl(&ca, 1, 2024, &[9]))).unwrap();
        let info = store.crl().unwrap();
        let next = info.next_update().unwrap();
        assert!(!info.is_stale(next));
        assert!(info.is_stale(next + 1));
        assert!(info.to_string().contains("CRL number 1"), "{info}");
    }

    #[test]
    fn a_crl_applied_in_place_only_moves_forward_and_must_be_the_cas() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = new_ca();
        let store = load(tmp.path(), &ca, Some(&crl(&ca, 2, 2024, &[]))).unwrap();
        let revokes = |s: &TrustStore, serial: u8| s.revocation().revokes(&[serial]);
        // Another CA's, garbage, and an older one are refused; the CRL in force stays.
        assert!(store
            .apply_crl(crl(&new_ca(), 9, 2025, &[7]).as_bytes())
            .is_err());
        assert!(store.apply_crl(b"not a CRL").is_err());
        let older = store.apply_crl(crl(&ca, 1, 2023, &[7]).as_bytes());
        assert!(older.is_err(), "{older:?}");
        assert_eq!(store.crl().unwrap().number().as_deref(), Some("2"));
        assert!(!revokes(&store, 7));
        // The same CRL again changes nothing; a newer one is in force at once.
        assert_eq!(
            store.apply_crl(crl(&ca, 2, 2024, &[]).as_bytes()),
            Ok(false)
        );
        assert_eq!(
            store.apply_crl(crl(&ca, 3, 2025, &[7]).as_bytes()),
            Ok(true)
        );
        assert_eq!(store.crl().unwrap().number().as_deref(), Some("3"));
        assert!(revokes(&store, 7));
        // And it cannot be taken back by the one it replaced.
        assert!(store.apply_crl(crl(&ca, 2, 2024, &[]).as_bytes()).is_err());
        assert!(revokes(&store, 7));
    }
}

//! Revocation: marking certificates revoked in the index and publishing the CRL.
//!
//! Responders load `ca.crl` and re-read it when it changes (a CRL that cannot be read, or is
//! older than the one in force, is refused: see `mco_core::security::CrlInfo`); the broker keeps
//! revoked identities out by their absence from the generated configuration, and revoked
//! certificates of names still admitted by key pinning (see [`super::broker`]). Each CRL has the
//! next CRL number, so CRLs from one CA only move forward.

use std::time::{Duration, SystemTime};

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};

use super::ca::Ca;
use super::files::{self, PUBLIC_MODE};
use super::index::{unix_now, Index, IndexEntry};
use super::issue::asn1_time;
use super::{PkiError, CA_CRL};

/// Days until a CRL's `nextUpdate` unless told otherwise.
pub const DEFAULT_CRL_DAYS: u32 = 30;

/// Options for [`Ca::crl`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlOptions {
    /// Days from now to the CRL's `nextUpdate` (default [`DEFAULT_CRL_DAYS`]).
    pub next_update_days: u32,
}

impl Default for CrlOptions {
    fn default() -> Self {
        CrlOptions {
            next_update_days: DEFAULT_CRL_DAYS,
        }
    }
}

impl Ca {
    /// Revokes, in the index, every unrevoked certificate named `target`, or else the one whose
    /// serial is `target`. Returns what it revoked. The CRL changes only with [`Ca::crl`].
    pub fn revoke(&self, target: &str) -> Result<Vec<IndexEntry>, PkiError> {
        let mut index = Index::load(&self.dir)?;
        let revoked = index.revoke(target, unix_now())?;
        index.save(&self.dir)?;
        Ok(revoked)
    }

    /// Signs a CRL listing every revoked serial in the index, with the next CRL number, writes it
    /// to `DIR/ca.crl` (0644) and returns it as PEM.
    pub fn crl(&self, opts: &CrlOptions) -> Result<String, PkiError> {
        if opts.next_update_days == 0 {
            return Err(PkiError::BadValidity(
                "a CRL's next update must be at least a day away".to_string(),
            ));
        }
        let mut index = Index::load(&self.dir)?;
        let mut revoked_certs = Vec::new();
        for entry in index.certs.iter().filter(|e| e.revoked_at.is_some()) {
            let serial = hex::decode(even_hex(&entry.serial)).map_err(|_| PkiError::BadIndex {
                path: self.dir.join(super::INDEX),
                message: format!("serial {:?} is not hex", entry.serial),
            })?;
            let at = entry.revoked_at.unwrap_or_default();
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: asn1_from_unix(at)?.to_datetime(),
                reason_code: None,
                invalidity_date: None,
            });
        }
        index.crl_number += 1;
        let now = SystemTime::now();
        let next = now + Duration::from_secs(u64::from(opts.next_update_days) * 86_400);
        let params = CertificateRevocationListParams {
            this_update: asn1_time(now)?.to_datetime(),
            next_update: asn1_time(next)?.to_datetime(),
            crl_number: SerialNumber::from(index.crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let pem = params.signed_by(&self.issuer)?.pem()?;
        files::write_atomic(&self.dir.join(CA_CRL), pem.as_bytes(), PUBLIC_MODE, true)?;
        index.save(&self.dir)?;
        Ok(pem)
    }
}

fn asn1_from_unix(secs: i64) -> Result<x509_parser::time::ASN1Time, PkiError> {
    x509_parser::time::ASN1Time::from_timestamp(secs)
        .map_err(|_| PkiError::BadValidity(format!("revocation time {secs} is out of range")))
}

fn even_hex(s: &str) -> String {
    if s.len() % 2 == 1 {
        format!("0{s}")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::pem_contents;
    use crate::index::unix_seconds;
    use crate::{CaOptions, IssueOptions, Kind};
    use std::os::unix::fs::PermissionsExt;
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::revocation_list::CertificateRevocationList;

    fn revoked_serials(pem: &str) -> (Vec<String>, u64) {
        let der = pem_contents(pem, &["X509 CRL"]).unwrap();
        let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
        let serials = crl
            .iter_revoked_certificates()
            .map(|r| crate::index::serial_hex(&r.serial().to_bytes_be()))
            .collect();
        let number = crl.crl_number().unwrap().to_string().parse().unwrap();
        (serials, number)
    }

    #[test]
    fn revoked_serials_appear_in_a_signed_crl() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::init(tmp.path(), &CaOptions::default()).unwrap();
        let alice = ca
            .issue("alice", Kind::User, &IssueOptions::default())
            .unwrap();
        let bob = ca
            .issue("bob", Kind::User, &IssueOptions::default())
            .unwrap();
        let web1 = ca
            .issue("web1", Kind::Node, &IssueOptions::default())
            .unwrap();

        let empty = ca.crl(&CrlOptions::default()).unwrap();
        assert_eq!(revoked_serials(&empty), (Vec::new(), 1));
        let crl_path = tmp.path().join(CA_CRL);
        assert_eq!(
            std::fs::metadata(&crl_path).unwrap().permissions().mode() & 0o777,
            0o644
        );

        let r = ca.revoke("alice").unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].serial, alice.serial);
        let upper = web1.serial.to_uppercase();
        assert_eq!(ca.revoke(&upper).unwrap()[0].name, "web1");
        assert!(matches!(ca.revoke("alice"), Err(PkiError::NotFound(_))));
        assert!(matches!(ca.revoke("nobody"), Err(PkiError::NotFound(_))));

        let pem = ca.crl(&CrlOptions::default()).unwrap();
        assert_eq!(std::fs::read_to_string(&crl_path).unwrap(), pem);
        let (serials, number) = revoked_serials(&pem);
        assert_eq!(number, 2);
        assert!(serials.contains(&alice.serial));
        assert!(serials.contains(&web1.serial));
        assert!(!serials.contains(&bob.serial));

        let der = pem_contents(&pem, &["X509 CRL"]).unwrap();
        let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
        let (_, ca_cert) = X509Certificate::from_der(ca.cert_der()).unwrap();
        crl.verify_signature(ca_cert.public_key())
            .expect("signed by the CA");
        assert_eq!(crl.issuer(), ca_cert.subject());
        let next = crl.next_update().unwrap().timestamp();
        let expected = unix_seconds(SystemTime::now()) + 30 * 86_400;
        assert!((next - expected).abs() < 120, "{next} vs {expected}");
    }

    #[test]
    fn zero_days_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::init(tmp.path(), &CaOptions::default()).unwrap();
        let opts = CrlOptions {
            next_update_days: 0,
        };
        assert!(matches!(ca.crl(&opts), Err(PkiError::BadValidity(_))));
        assert!(!tmp.path().join(CA_CRL).exists());
    }
}

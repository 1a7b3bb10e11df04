//! What `configure` trusts: only the CA certificate shipped in the node's
//! image (`[provisioning] ca`), and only CRLs that CA signed which are not
//! older than the one the node has.
//!
//! The request's `ca`, when given, must be that very certificate — the same
//! DER bytes, not merely the same key: a CA certificate is only ever
//! replaced by shipping a new image (or by hand), never over the bus. A
//! renewed CA certificate therefore means a renewed image.

use std::path::Path;

use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

/// The DER certificates of a PEM text (every block must be a certificate).
pub fn certificate_ders(text: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for p in x509_parser::pem::Pem::iter_from_buffer(text) {
        let p = p.map_err(|e| format!("not PEM: {e}"))?;
        if p.label != "CERTIFICATE" {
            return Err(format!(
                "a {:?} block where a certificate was expected",
                p.label
            ));
        }
        out.push(p.contents);
    }
    if out.is_empty() {
        return Err("no PEM certificate".into());
    }
    Ok(out)
}

/// Checks that the request's `ca` PEM is the shipped CA certificate.
pub fn same_ca(shipped_pem: &[u8], requested_pem: &str) -> Result<(), String> {
    let shipped = certificate_ders(shipped_pem).map_err(|e| format!("the shipped CA: {e}"))?;
    let asked = certificate_ders(requested_pem.as_bytes()).map_err(|e| format!("ca: {e}"))?;
    if shipped != asked {
        return Err(
            "the ca given is not the CA certificate this node shipped with (provisioning.ca); \
             a node is only ever provisioned into the collective of its image"
                .into(),
        );
    }
    Ok(())
}

/// The DER of a CRL given as PEM (`X509 CRL`) or DER.
fn crl_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    if bytes[start..].starts_with(b"-----BEGIN") {
        let mut blocks = x509_parser::pem::Pem::iter_from_buffer(bytes);
        let p = blocks
            .next()
            .ok_or("no PEM block")?
            .map_err(|e| format!("not PEM: {e}"))?;
        if p.label != "X509 CRL" {
            return Err(format!("a {:?} block where a CRL was expected", p.label));
        }
        return Ok(p.contents);
    }
    Ok(bytes.to_vec())
}

/// How new a CRL is: its CRL number (if it has one) and `thisUpdate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlAge {
    /// The CRL number extension, big-endian bytes without leading zeros.
    pub number: Option<Vec<u8>>,
    /// `thisUpdate`, Unix seconds.
    pub this_update: i64,
}

/// Reads a CRL's number and `thisUpdate` (it must parse; its signature is
/// checked elsewhere, against the shipped CA).
pub fn crl_age(bytes: &[u8]) -> Result<CrlAge, String> {
    let der = crl_der(bytes)?;
    let (_, crl) =
        CertificateRevocationList::from_der(&der).map_err(|e| format!("not a CRL: {e}"))?;
    Ok(CrlAge {
        number: crl.crl_number().map(|n| n.to_bytes_be()),
        this_update: crl.last_update().timestamp(),
    })
}

fn cmp_number(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let strip = |x: &[u8]| -> Vec<u8> { x.iter().skip_while(|&&v| v == 0).copied().collect() };
    let (a, b) = (strip(a), strip(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(&b))
}

/// What to do with a CRL offered to `configure`, given the node's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlDecision {
    /// It is newer: install it.
    Install,
    /// It is the one in place (same number and time): leave the file alone.
    Keep,
}

/// Decides on `offered` against `present`: an older CRL (a lower CRL number,
/// or with equal or missing numbers an earlier `thisUpdate`) is refused, so
/// that revocations are never undone over the bus.
pub fn decide(present: &CrlAge, offered: &CrlAge) -> Result<CrlDecision, String> {
    use std::cmp::Ordering::*;
    if let (Some(p), Some(o)) = (&present.number, &offered.number) {
        match cmp_number(o, p) {
            Less => {
                return Err(format!(
                    "the CRL given (number {}) is older than the node's (number {}); \
                     a CRL is only ever replaced by a newer one",
                    hex::encode(o),
                    hex::encode(p)
                ))
            }
            Greater => return Ok(CrlDecision::Install),
            Equal => {}
        }
    }
    match offered.this_update.cmp(&present.this_update) {
        Less => Err(format!(
            "the CRL given (thisUpdate {}) is older than the node's ({}); \
             a CRL is only ever replaced by a newer one",
            offered.this_update, present.this_update
        )),
        Greater => Ok(CrlDecision::Install),
        Equal => Ok(CrlDecision::Keep),
    }
}

/// The node's current CRL at `path`, if any: `Ok(None)` when there is no
/// file, an error when there is one that cannot be read or parsed (the
/// node does not guess what it revoked).
pub fn present_crl(path: &Path) -> Result<Option<CrlAge>, String> {
    match std::fs::read(path) {
        Ok(bytes) => crl_age(&bytes)
            .map(Some)
            .map_err(|e| format!("the node's CRL {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("the node's CRL {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(n: Option<u8>, t: i64) -> CrlAge {
        CrlAge {
            number: n.map(|n| vec![n]),
            this_update: t,
        }
    }

    #[test]
    fn crls_only_move_forward() {
        assert_eq!(
            decide(&age(Some(3), 100), &age(Some(4), 90)),
            Ok(CrlDecision::Install),
            "a higher number wins even with an earlier clock"
        );
        assert!(decide(&age(Some(4), 100), &age(Some(3), 200)).is_err());
        assert_eq!(
            decide(&age(Some(4), 100), &age(Some(4), 100)),
            Ok(CrlDecision::Keep)
        );
        assert!(decide(&age(None, 100), &age(None, 99)).is_err());
        assert_eq!(
            decide(&age(None, 100), &age(Some(1), 101)),
            Ok(CrlDecision::Install)
        );
        assert_eq!(cmp_number(&[0, 0, 5], &[5]), std::cmp::Ordering::Equal);
        assert_eq!(cmp_number(&[1, 0], &[0xff]), std::cmp::Ordering::Greater);
    }

    #[test]
    fn the_ca_must_be_the_shipped_one() {
        let dir = tempfile::tempdir().unwrap();
        let a = mco_pki::Ca::init(&dir.path().join("a"), &Default::default()).unwrap();
        let b = mco_pki::Ca::init(&dir.path().join("b"), &Default::default()).unwrap();
        assert!(same_ca(a.cert_pem().as_bytes(), a.cert_pem()).is_ok());
        // Formatting does not matter, the bytes do.
        let reflowed = a.cert_pem().replace('\n', "\r\n");
        assert!(same_ca(a.cert_pem().as_bytes(), &reflowed).is_ok());
        let e = same_ca(a.cert_pem().as_bytes(), b.cert_pem()).unwrap_err();
        assert!(e.contains("shipped with"), "{e}");
        let two = format!("{}{}", a.cert_pem(), b.cert_pem());
        assert!(same_ca(a.cert_pem().as_bytes(), &two).is_err());
        assert!(same_ca(
            a.cert_pem().as_bytes(),
            "-----BEGIN X-----\n-----END X-----\n"
        )
        .is_err());
    }

    #[test]
    fn crl_ages_are_read_and_a_bad_present_crl_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let ca = mco_pki::Ca::init(&dir.path().join("a"), &Default::default()).unwrap();
        let first = ca.crl(&Default::default()).unwrap();
        let second = ca.crl(&Default::default()).unwrap();
        let (a, b) = (
            crl_age(first.as_bytes()).unwrap(),
            crl_age(second.as_bytes()).unwrap(),
        );
        assert_eq!(a.number, Some(vec![1]));
        assert_eq!(b.number, Some(vec![2]));
        assert_eq!(decide(&b, &a).map_err(|_| ()), Err(()));
        assert_eq!(decide(&a, &b), Ok(CrlDecision::Install));
        let missing = dir.path().join("none.crl");
        assert_eq!(present_crl(&missing), Ok(None));
        std::fs::write(&missing, "garbage").unwrap();
        assert!(present_crl(&missing).is_err());
    }
}

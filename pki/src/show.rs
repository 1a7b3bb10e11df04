//! Human-readable summaries of certificates, CSRs and CRLs.

use std::fmt::Write as _;

use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::time::ASN1Time;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::ca::fingerprint;
use super::index::{format_unix, serial_hex};
use super::keys::{check_ed25519_key, key_pin};
use super::PkiError;

/// Summarizes a certificate, CSR or CRL given as PEM or DER: subject, issuer, serial, validity,
/// SANs, key type and SHA-256 fingerprint; for a CRL its dates and revoked serials.
///
/// Serials are lowercase hex as `mco pki revoke` takes them; fingerprints are uppercase pairs as
/// `openssl … -fingerprint -sha256` prints them.
pub fn show(bytes: &[u8]) -> Result<String, PkiError> {
    let text = std::str::from_utf8(bytes).ok();
    if let Some(text) = text.filter(|t| t.contains("-----BEGIN ")) {
        let (_, pem) = x509_parser::pem::parse_x509_pem(text.as_bytes())
            .map_err(|e| PkiError::Unrecognized(format!("bad PEM: {e}")))?;
        return match pem.label.as_str() {
            "CERTIFICATE" => certificate(&pem.contents),
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => request(&pem.contents),
            "X509 CRL" => revocation_list(&pem.contents),
            "PRIVATE KEY" => Err(PkiError::Unrecognized(
                "this is a private key; it is not shown".to_string(),
            )),
            other => Err(PkiError::Unrecognized(format!("a PEM {other:?} block"))),
        };
    }
    if X509Certificate::from_der(bytes).is_ok() {
        certificate(bytes)
    } else if X509CertificationRequest::from_der(bytes).is_ok() {
        request(bytes)
    } else if CertificateRevocationList::from_der(bytes).is_ok() {
        revocation_list(bytes)
    } else {
        Err(PkiError::Unrecognized(
            "neither PEM nor a DER certificate, CSR or CRL".to_string(),
        ))
    }
}

fn certificate(der: &[u8]) -> Result<String, PkiError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::Unrecognized(e.to_string()))?;
    let mut out = String::from("Certificate\n");
    let validity = cert.validity();
    let status = if validity.is_valid() {
        "valid now"
    } else if validity.not_before > ASN1Time::now() {
        "NOT YET VALID"
    } else {
        "EXPIRED"
    };
    line(&mut out, "Subject", &cert.subject().to_string());
    line(&mut out, "Issuer", &cert.issuer().to_string());
    line(&mut out, "Serial", &serial_hex(cert.raw_serial()));
    line(&mut out, "Not before", &when(validity.not_before));
    line(&mut out, "Not after", &when(validity.not_after));
    line(&mut out, "Status", status);
    line(&mut out, "CA", if cert.is_ca() { "yes" } else { "no" });
    let mut sans = Vec::new();
    let mut usages = Vec::new();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                sans.extend(san.general_names.iter().map(general_name));
            }
            ParsedExtension::KeyUsage(ku) => {
                let flags = [
                    (ku.digital_signature(), "digitalSignature"),
                    (ku.key_encipherment(), "keyEncipherment"),
                    (ku.key_cert_sign(), "keyCertSign"),
                    (ku.crl_sign(), "cRLSign"),
                ];
                usages.extend(flags.iter().filter(|f| f.0).map(|f| f.1.to_string()));
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                let flags = [
                    (eku.client_auth, "clientAuth"),
                    (eku.server_auth, "serverAuth"),
                    (eku.code_signing, "codeSigning"),
                    (eku.email_protection, "emailProtection"),
                ];
                usages.extend(flags.iter().filter(|f| f.0).map(|f| f.1.to_string()));
            }
            _ => {}
        }
    }
    line(&mut out, "Usages", &list(&usages));
    line(&mut out, "SANs", &list(&sans));
    line(&mut out, "Key", &key_type(cert.public_key()));
    line(&mut out, "Key pin", &key_pin(cert.public_key().raw));
    line(&mut out, "SHA-256", &fingerprint(der));
    Ok(out)
}

fn request(der: &[u8]) -> Result<String, PkiError> {
    let (_, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| PkiError::Unrecognized(e.to_string()))?;
    let info = &csr.certification_request_info;
    let mut out = String::from("Certificate signing request\n");
    line(&mut out, "Subject", &info.subject.to_string());
    let sans: Vec<String> = csr
        .requested_extensions()
        .into_iter()
        .flatten()
        .filter_map(|ext| match ext {
            ParsedExtension::SubjectAlternativeName(san) => Some(san),
            _ => None,
        })
        .flat_map(|san| san.general_names.iter().map(general_name))
        .collect();
    line(&mut out, "SANs", &list(&sans));
    line(&mut out, "Key", &key_type(&info.subject_pki));
    let verifies = csr.verify_signature().is_ok();
    line(
        &mut out,
        "Signature",
        if verifies {
            "verifies"
        } else {
            "DOES NOT VERIFY"
        },
    );
    line(&mut out, "SHA-256", &fingerprint(der));
    Ok(out)
}

fn revocation_list(der: &[u8]) -> Result<String, PkiError> {
    let (_, crl) = CertificateRevocationList::from_der(der)
        .map_err(|e| PkiError::Unrecognized(e.to_string()))?;
    let mut out = String::from("Certificate revocation list\n");
    line(&mut out, "Issuer", &crl.issuer().to_string());
    if let Some(n) = crl.crl_number() {
        line(&mut out, "CRL number", &n.to_string());
    }
    line(&mut out, "This update", &when(crl.last_update()));
    let next = crl.next_update().map_or_else(|| "-".to_string(), when);
    line(&mut out, "Next update", &next);
    let revoked: Vec<_> = crl.iter_revoked_certificates().collect();
    line(&mut out, "Revoked", &revoked.len().to_string());
    for r in revoked {
        let _ = writeln!(
            out,
            "    {}  since {}",
            serial_hex(&r.serial().to_bytes_be()),
            when(r.revocation_date)
        );
    }
    line(&mut out, "SHA-256", &fingerprint(der));
    Ok(out)
}

fn line(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "  {:<12} {value}", format!("{label}:"));
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(", ")
    }
}

fn general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(d) => format!("DNS:{d}"),
        GeneralName::RFC822Name(e) => format!("email:{e}"),
        GeneralName::URI(u) => format!("URI:{u}"),
        GeneralName::IPAddress(b) => match b.len() {
            4 => format!("IP:{}", std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3])),
            16 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(b);
                format!("IP:{}", std::net::Ipv6Addr::from(octets))
            }
            _ => format!("IP:{}", hex::encode(b)),
        },
        other => other.to_string(),
    }
}

fn key_type(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let oid = spki.algorithm.algorithm.to_id_string();
    match oid.as_str() {
        "1.3.101.112" => match check_ed25519_key(spki.subject_public_key.data.as_ref()) {
            Ok(_) => "Ed25519".to_string(),
            Err(e) => format!("Ed25519, UNUSABLE: {e}"),
        },
        "1.3.101.113" => "Ed448".to_string(),
        "1.2.840.10045.2.1" => "ECDSA".to_string(),
        "1.2.840.113549.1.1.1" => "RSA".to_string(),
        _ => oid,
    }
}

/// `2025-01-31 13:45:00 UTC`.
fn when(t: ASN1Time) -> String {
    format_unix(t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::pem_contents;
    use crate::{request_csr, Ca, CaOptions, CrlOptions, CsrOptions, IssueOptions, Kind};
    use std::time::{Duration, SystemTime};

    #[test]
    fn shows_a_certificate_in_pem_and_der() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::init(tmp.path(), &CaOptions::default()).unwrap();
        let opts = IssueOptions {
            ips: vec!["127.0.0.1".parse().unwrap()],
            ..IssueOptions::default()
        };
        let issued = ca.issue("web1", Kind::Node, &opts).unwrap();
        let text = show(issued.cert_pem.as_bytes()).unwrap();
        assert!(text.starts_with("Certificate\n"), "{text}");
        assert!(text.contains("Subject:     CN=node:web1\n"), "{text}");
        assert!(
            text.contains("Issuer:      CN=mco collective CA\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!("Serial:      {}\n", issued.serial)),
            "{text}"
        );
        assert!(
            text.contains("SANs:        DNS:web1, IP:127.0.0.1\n"),
            "{text}"
        );
        assert!(text.contains("Key:         Ed25519\n"), "{text}");
        assert!(
            text.contains("Usages:      digitalSignature, clientAuth\n"),
            "{text}"
        );
        let (_, parsed) =
            X509Certificate::from_der(&pem_contents(&issued.cert_pem, &["CERTIFICATE"]).unwrap())
                .map(|(r, c)| (r.len(), key_pin(c.public_key().raw)))
                .unwrap();
        assert!(text.contains(&format!("Key pin:     {parsed}\n")), "{text}");
        assert!(text.contains("Status:      valid now\n"), "{text}");
        let der = pem_contents(&issued.cert_pem, &["CERTIFICATE"]).unwrap();
        assert!(text.contains(&fingerprint(&der)), "{text}");
        assert_eq!(show(&der).unwrap(), text);

        let ca_text = show(ca.cert_pem().as_bytes()).unwrap();
        assert!(ca_text.contains("CA:          yes\n"), "{ca_text}");
        assert!(ca_text.contains("keyCertSign, cRLSign"), "{ca_text}");
    }

    #[test]
    fn marks_expired_and_future_certificates() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::init(tmp.path(), &CaOptions::default()).unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let old = ca
            .issue(
                "old",
                Kind::User,
                &IssueOptions {
                    not_before: Some(now - 3 * day),
                    not_after: Some(now - day),
                    ..IssueOptions::default()
                },
            )
            .unwrap();
        assert!(show(old.cert_pem.as_bytes())
            .unwrap()
            .contains("Status:      EXPIRED"));
        let soon = ca
            .issue(
                "soon",
                Kind::User,
                &IssueOptions {
                    not_before: Some(now + day),
                    ..IssueOptions::default()
                },
            )
            .unwrap();
        assert!(show(soon.cert_pem.as_bytes())
            .unwrap()
            .contains("Status:      NOT YET VALID"));
    }

    #[test]
    fn shows_csrs_and_crls() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::init(&tmp.path().join("ca"), &CaOptions::default()).unwrap();
        let req = request_csr(tmp.path(), "bob", Kind::User, &CsrOptions::default()).unwrap();
        let text = show(req.csr_pem.as_bytes()).unwrap();
        assert!(text.starts_with("Certificate signing request\n"), "{text}");
        assert!(text.contains("Subject:     CN=user:bob\n"), "{text}");
        assert!(text.contains("Signature:   verifies\n"), "{text}");

        let issued = ca
            .issue("eve", Kind::User, &IssueOptions::default())
            .unwrap();
        ca.revoke("eve").unwrap();
        let crl = ca.crl(&CrlOptions::default()).unwrap();
        let text = show(crl.as_bytes()).unwrap();
        assert!(text.starts_with("Certificate revocation list\n"), "{text}");
        assert!(text.contains("Revoked:     1\n"), "{text}");
        assert!(
            text.contains(&format!("    {}  since ", issued.serial)),
            "{text}"
        );
        assert!(text.contains("CRL number:  1\n"), "{text}");
    }

    #[test]
    fn refuses_keys_and_garbage() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::init(tmp.path(), &CaOptions::default()).unwrap();
        let issued = ca.issue("k", Kind::User, &IssueOptions::default()).unwrap();
        let key = issued.key_pem.unwrap();
        let err = show(key.as_bytes()).unwrap_err();
        assert!(matches!(err, PkiError::Unrecognized(_)), "{err}");
        assert!(!err.to_string().contains(&key[30..60]));
        assert!(matches!(
            show(b"\x30\x03\x02\x01\x00"),
            Err(PkiError::Unrecognized(_))
        ));
        assert!(matches!(show(b"hello"), Err(PkiError::Unrecognized(_))));
    }
}

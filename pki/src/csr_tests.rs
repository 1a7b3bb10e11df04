//! Tests of CSRs: requests, the CA's checks, and what it signs.

use super::*;
use crate::{CaOptions, Index};
use rcgen::KeyPair;
use std::os::unix::fs::PermissionsExt;
use x509_parser::prelude::X509Certificate;

fn ca() -> (tempfile::TempDir, Ca) {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::init(&tmp.path().join("ca"), &CaOptions::default()).unwrap();
    (tmp, ca)
}

/// A CSR with any subject and SANs, for requests `request_csr` would never make.
fn raw_csr(subject: &[(DnType, &str)], sans: Vec<SanType>) -> String {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for (ty, value) in subject {
        params.distinguished_name.push(ty.clone(), *value);
    }
    params.subject_alt_names = sans;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn cert_of(pem: &str) -> Vec<u8> {
    pem_contents(pem, &["CERTIFICATE"]).unwrap()
}

#[test]
fn request_writes_key_and_csr_and_the_ca_signs_it() {
    let (tmp, ca) = ca();
    let node_dir = tmp.path().join("web1");
    let req = request_csr(&node_dir, "web1", Kind::Node, &CsrOptions::default()).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&req.key_path), 0o600);
    assert_eq!(mode(&req.csr_path), 0o644);
    let again = request_csr(&node_dir, "web1", Kind::Node, &CsrOptions::default());
    assert!(matches!(again, Err(PkiError::Exists { .. })));

    let issued = ca.sign_csr(&req.csr_pem, &SignPolicy::default()).unwrap();
    assert_eq!(issued.cert_path, ca.dir().join("web1.pem"));
    assert!(issued.key_pem.is_none());
    assert!(!ca.dir().join("web1.key").exists(), "the key never moves");
    let der = cert_of(&issued.cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(cert.subject().to_string(), "CN=node:web1");
    let key = KeyPair::from_pem(&req.key_pem).unwrap();
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    let sans = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(sans.value.general_names, vec![GeneralName::DNSName("web1")]);
    assert_eq!(Index::load(ca.dir()).unwrap().certs[0].name, "web1");
    let twice = ca.sign_csr(&req.csr_pem, &SignPolicy::default());
    assert!(matches!(twice, Err(PkiError::Exists { .. })));
}

#[test]
fn user_requests_lose_their_sans() {
    let (_tmp, ca) = ca();
    let csr = raw_csr(
        &[(DnType::CommonName, "user:alice")],
        vec![SanType::DnsName("alice".try_into().unwrap())],
    );
    let issued = ca.sign_csr(&csr, &SignPolicy::default()).unwrap();
    let der = cert_of(&issued.cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(cert.subject().to_string(), "CN=user:alice");
    assert!(cert.subject_alternative_name().unwrap().is_none());
}

#[test]
fn rejects_bad_subjects() {
    let (_tmp, ca) = ca();
    let policy = SignPolicy::default();
    let cases: Vec<(Vec<(DnType, &str)>, &str)> = vec![
        (vec![(DnType::CommonName, "alice")], "BadCsr"),
        (vec![(DnType::CommonName, "admin:alice")], "BadCsr"),
        (vec![(DnType::CommonName, "user:-alice")], "InvalidName"),
        (vec![(DnType::CommonName, "user:al ice")], "InvalidName"),
        (vec![(DnType::CommonName, "user:a/b")], "InvalidName"),
        (vec![(DnType::CommonName, "user:ca")], "InvalidName"),
        (vec![(DnType::CommonName, "user:")], "InvalidName"),
        (
            vec![
                (DnType::CommonName, "user:alice"),
                (DnType::OrganizationName, "x"),
            ],
            "BadCsr",
        ),
        (vec![(DnType::OrganizationName, "user:alice")], "BadCsr"),
    ];
    for (subject, want) in cases {
        let csr = raw_csr(&subject, Vec::new());
        let err = ca.sign_csr(&csr, &policy).unwrap_err();
        let got = match err {
            PkiError::BadCsr(_) => "BadCsr",
            PkiError::InvalidName { .. } => "InvalidName",
            _ => "other",
        };
        assert_eq!(got, want, "{subject:?}: {err}");
    }
    assert!(Index::load(ca.dir()).unwrap().certs.is_empty());
}

#[test]
fn policy_limits_kinds_and_names() {
    let (_tmp, ca) = ca();
    let users_only = SignPolicy {
        allowed_kinds: vec![Kind::User],
        name_pattern: Some(Regex::new("ops-[a-z]+").unwrap()),
        ..SignPolicy::default()
    };
    let node = raw_csr(&[(DnType::CommonName, "node:web1")], Vec::new());
    let err = ca.sign_csr(&node, &users_only).unwrap_err();
    assert!(
        matches!(err, PkiError::KindNotAllowed { kind: Kind::Node }),
        "{err}"
    );
    let outside = raw_csr(&[(DnType::CommonName, "user:ops-alice2")], Vec::new());
    let err = ca.sign_csr(&outside, &users_only).unwrap_err();
    assert!(matches!(err, PkiError::NameNotAllowed { .. }), "{err}");
    let inside = raw_csr(&[(DnType::CommonName, "user:ops-alice")], Vec::new());
    ca.sign_csr(&inside, &users_only).unwrap();
}

#[test]
fn node_sans_beyond_its_name_need_permission() {
    let (_tmp, ca) = ca();
    let broker_name = raw_csr(
        &[(DnType::CommonName, "node:web1")],
        vec![
            SanType::DnsName("web1".try_into().unwrap()),
            SanType::DnsName("nats.example.com".try_into().unwrap()),
            SanType::IpAddress("10.0.0.1".parse().unwrap()),
        ],
    );
    let err = ca
        .sign_csr(&broker_name, &SignPolicy::default())
        .unwrap_err();
    assert!(matches!(err, PkiError::InvalidSan { .. }), "{err}");
    let allowed = SignPolicy {
        allow_extra_sans: true,
        ..SignPolicy::default()
    };
    let issued = ca.sign_csr(&broker_name, &allowed).unwrap();
    let der = cert_of(&issued.cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let names = &cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert_eq!(names.len(), 3);

    for san in [
        SanType::Rfc822Name("x@example.com".try_into().unwrap()),
        SanType::URI("mco:user:alice".try_into().unwrap()),
        SanType::DnsName("CN=user:alice".try_into().unwrap()),
    ] {
        let csr = raw_csr(&[(DnType::CommonName, "node:web2")], vec![san.clone()]);
        let err = ca.sign_csr(&csr, &allowed).unwrap_err();
        assert!(matches!(err, PkiError::InvalidSan { .. }), "{san:?}: {err}");
    }
}

#[test]
fn rejects_a_tampered_csr() {
    let (_tmp, ca) = ca();
    let csr = raw_csr(&[(DnType::CommonName, "user:alice")], Vec::new());
    let mut der = pem_contents(&csr, &["CERTIFICATE REQUEST"]).unwrap();
    let at = der
        .windows(5)
        .position(|w| w == b"alice")
        .expect("the name is in the DER");
    der[at] = b'm';
    let pem = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        base64(&der)
    );
    let err = ca.sign_csr(&pem, &SignPolicy::default()).unwrap_err();
    assert!(matches!(err, PkiError::BadCsrSignature), "{err}");
    let err = ca.sign_csr("garbage", &SignPolicy::default()).unwrap_err();
    assert!(matches!(err, PkiError::BadCsr(_)), "{err}");
}

#[test]
fn weak_keys_are_refused_before_anything_else() {
    let (_tmp, ca) = ca();
    let csr = raw_csr(&[(DnType::CommonName, "node:web1")], Vec::new());
    let der = pem_contents(&csr, &["CERTIFICATE REQUEST"]).unwrap();
    let (_, parsed) = X509CertificationRequest::from_der(&der).unwrap();
    let key = parsed
        .certification_request_info
        .subject_pki
        .subject_public_key
        .data
        .to_vec();
    let at = der
        .windows(32)
        .position(|w| w == key.as_slice())
        .expect("the key is in the DER");
    // The identity point: of small order, a signature with it verifies for many messages.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let mut tampered = der.clone();
    tampered[at..at + 32].copy_from_slice(&weak);
    let pem = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        base64(&tampered)
    );
    let err = ca.sign_csr(&pem, &SignPolicy::default()).unwrap_err();
    assert!(matches!(err, PkiError::WeakKey(_)), "{err}");
    let err = inspect_csr(&pem).unwrap_err();
    assert!(matches!(err, PkiError::WeakKey(_)), "{err}");
    assert!(Index::load(ca.dir()).unwrap().certs.is_empty());
    assert!(!ca.dir().join("web1.pem").exists());
}

#[test]
fn a_revoked_key_is_never_certified_again() {
    let (tmp, ca) = ca();
    let req = request_csr(
        &tmp.path().join("web1"),
        "web1",
        Kind::Node,
        &CsrOptions::default(),
    )
    .unwrap();
    let first = ca.sign_csr(&req.csr_pem, &SignPolicy::default()).unwrap();
    ca.revoke("web1").unwrap();
    let again = SignPolicy {
        force: true,
        reuse_same_key: true,
        ..SignPolicy::default()
    };
    let err = ca.sign_csr(&req.csr_pem, &again).unwrap_err();
    assert!(
        matches!(&err, PkiError::RevokedKey { serial, identity } if *serial == first.serial && identity == "node:web1"),
        "{err}"
    );
    assert_eq!(Index::load(ca.dir()).unwrap().certs.len(), 1);
    // A new key for the same name is signed.
    let fresh = request_csr(
        &tmp.path().join("web1-new"),
        "web1",
        Kind::Node,
        &CsrOptions::default(),
    )
    .unwrap();
    ca.sign_csr(&fresh.csr_pem, &again).unwrap();
}

#[test]
fn broker_requests_are_signed_only_when_allowed() {
    let (tmp, ca) = ca();
    let opts = CsrOptions {
        ips: vec!["127.0.0.1".parse().unwrap()],
        ..CsrOptions::default()
    };
    let req = request_csr(&tmp.path().join("b"), "nats1", Kind::Broker, &opts).unwrap();
    let err = ca
        .sign_csr(&req.csr_pem, &SignPolicy::default())
        .unwrap_err();
    assert!(
        matches!(err, PkiError::KindNotAllowed { kind: Kind::Broker }),
        "{err}"
    );
    let brokers = SignPolicy {
        allowed_kinds: vec![Kind::Broker],
        allow_extra_sans: true,
        ..SignPolicy::default()
    };
    let issued = ca.sign_csr(&req.csr_pem, &brokers).unwrap();
    let der = cert_of(&issued.cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(cert.subject().to_string(), "CN=broker:nats1");
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

//! Certificate signing requests: made where the key is to live, signed by the CA after checks.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, SanType};
use regex::Regex;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::ca::{pem_contents, Ca};
use super::files::{self, KEY_MODE, PUBLIC_MODE};
use super::issue::{
    check_issuable, new_key, node_sans, validity, IssueOptions, Issued, Leaf, DEFAULT_DAYS,
};
use super::keys::check_ed25519_key;
use super::{check_dns_name, Kind, PkiError};

/// The OID of Ed25519 keys.
const ED25519_OID: &str = "1.3.101.112";

/// Options for [`request_csr`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsrOptions {
    /// Extra DNS names to ask for (node requests only; `DNS:NAME` is always asked for).
    pub dns: Vec<String>,
    /// IP addresses to ask for (node requests only).
    pub ips: Vec<IpAddr>,
    /// Replace an existing `NAME.key` / `NAME.csr` (default off).
    pub force: bool,
    /// Make the request for this existing Ed25519 key (a PKCS#8 PEM file,
    /// copied to `NAME.key`) instead of a new one: a node in provisioning
    /// mode asks for a certificate for the key its replies are signed with.
    pub key: Option<PathBuf>,
}

/// A request made by [`request_csr`]; the key stays where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// The CSR, PEM: what goes to the CA.
    pub csr_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// Where the CSR was written.
    pub csr_path: PathBuf,
    /// Where the key was written (mode 0600).
    pub key_path: PathBuf,
}

/// Generates an Ed25519 key and a CSR for `kind:name`, writing `DIR/NAME.key` (0600) and
/// `DIR/NAME.csr` (0644). Node and broker requests ask for `DNS:NAME` plus `opts.dns` /
/// `opts.ips`.
pub fn request_csr(
    dir: &Path,
    name: &str,
    kind: Kind,
    opts: &CsrOptions,
) -> Result<Requested, PkiError> {
    check_issuable(name)?;
    let sans = match kind {
        Kind::Node | Kind::Broker => node_sans(name, &opts.dns, &opts.ips)?,
        Kind::User if opts.dns.is_empty() && opts.ips.is_empty() => Vec::new(),
        Kind::User => {
            return Err(PkiError::InvalidSan {
                san: "DNS/IP".to_string(),
                reason: "user certificates carry no subject alternative names".to_string(),
            })
        }
    };
    files::ensure_dir(dir)?;
    let csr_path = dir.join(format!("{name}.csr"));
    let key_path = dir.join(format!("{name}.key"));
    files::refuse_existing(&csr_path, opts.force)?;
    files::refuse_existing(&key_path, opts.force)?;

    let (key, key_pem) = match &opts.key {
        None => new_key()?,
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|e| PkiError::Io {
                path: path.clone(),
                source: e,
            })?;
            let key = rcgen::KeyPair::from_pem(&pem)
                .map_err(|e| PkiError::Crypto(format!("{}: {e}", path.display())))?;
            (key, pem)
        }
    };
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, kind.identity(name));
    params.subject_alt_names = sans;
    let csr_pem = params.serialize_request(&key)?.pem()?;
    files::write_atomic(&key_path, key_pem.as_bytes(), KEY_MODE, opts.force)?;
    files::write_atomic(&csr_path, csr_pem.as_bytes(), PUBLIC_MODE, opts.force)?;
    Ok(Requested {
        csr_pem,
        key_pem,
        csr_path,
        key_path,
    })
}

/// What the CA accepts in a CSR, and how it signs it.
#[derive(Debug, Clone)]
pub struct SignPolicy {
    /// Kinds it signs (default user and node: a broker certificate, the only kind that serves
    /// TLS, is signed only when asked for).
    pub allowed_kinds: Vec<Kind>,
    /// A pattern the whole name must match, on top of the name rules (default none).
    pub name_pattern: Option<Regex>,
    /// Days of validity (default 365).
    pub validity_days: u32,
    /// Copy a node's SANs other than `DNS:NAME` (more DNS names, IP addresses); without it such a
    /// request is refused, so that no node can obtain a certificate for a broker's host name
    /// (default off).
    pub allow_extra_sans: bool,
    /// Replace an existing `DIR/NAME.pem` (default off).
    pub force: bool,
    /// When `DIR/NAME.pem` is a live certificate (unrevoked, within its
    /// validity) for the very key the CSR carries, return it instead of
    /// signing again, so that a request repeated after a lost reply does
    /// not leave two certificates (default off).
    pub reuse_same_key: bool,
}

impl Default for SignPolicy {
    fn default() -> Self {
        SignPolicy {
            allowed_kinds: vec![Kind::User, Kind::Node],
            name_pattern: None,
            validity_days: DEFAULT_DAYS,
            allow_extra_sans: false,
            force: false,
            reuse_same_key: false,
        }
    }
}

impl Ca {
    /// Checks a CSR and signs it: its key must be an Ed25519 key that is not weak (small order)
    /// and was never certified by a certificate now revoked, its signature must verify with that
    /// key, its subject must be exactly one common name `KIND:NAME` with a valid NAME of an
    /// allowed kind matching the policy's pattern. The certificate's subject is rebuilt from that
    /// name alone; SANs are copied for nodes and brokers only. Writes `DIR/NAME.pem` (0644) and
    /// records it.
    pub fn sign_csr(&self, csr_pem: &str, policy: &SignPolicy) -> Result<Issued, PkiError> {
        let der = pem_contents(csr_pem, &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"])
            .ok_or_else(|| PkiError::BadCsr("no PEM certificate request found".to_string()))?;
        let (_, csr) = X509CertificationRequest::from_der(&der)
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        let info = &csr.certification_request_info;
        let key_oid = info.subject_pki.algorithm.algorithm.to_id_string();
        if key_oid != ED25519_OID {
            return Err(PkiError::UnsupportedKey(key_oid));
        }
        check_ed25519_key(info.subject_pki.subject_public_key.data.as_ref())?;
        csr.verify_signature()
            .map_err(|_| PkiError::BadCsrSignature)?;

        let (kind, name) = requested_identity(&csr)?;
        check_issuable(&name)?;
        if !policy.allowed_kinds.contains(&kind) {
            return Err(PkiError::KindNotAllowed { kind });
        }
        if let Some(pattern) = &policy.name_pattern {
            let whole = pattern
                .find(&name)
                .is_some_and(|m| m.start() == 0 && m.end() == name.len());
            if !whole {
                return Err(PkiError::NameNotAllowed {
                    name,
                    pattern: pattern.as_str().to_string(),
                });
            }
        }
        let sans = match kind {
            Kind::User => Vec::new(),
            Kind::Node | Kind::Broker => requested_node_sans(&csr, &name, policy.allow_extra_sans)?,
        };
        let cert_path = self.dir.join(format!("{name}.pem"));
        if policy.reuse_same_key {
            if let Some(issued) = self.live_for_key(&name, kind, info.subject_pki.raw)? {
                return Ok(issued);
            }
        }
        files::refuse_existing(&cert_path, policy.force)?;

        let (not_before, not_after) = validity(&IssueOptions {
            validity_days: policy.validity_days,
            ..IssueOptions::default()
        })?;
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        let leaf = Leaf {
            name: &name,
            kind,
            sans,
            not_before,
            not_after,
        };
        let (cert_pem, entry) = self.sign_leaf(&leaf, &public_key)?;
        files::write_atomic(&cert_path, cert_pem.as_bytes(), PUBLIC_MODE, policy.force)?;
        self.record(&entry)?;
        Ok(Issued {
            name,
            kind,
            serial: entry.serial,
            not_before: entry.not_before,
            not_after: entry.not_after,
            cert_pem,
            key_pem: None,
            cert_path,
            key_path: None,
        })
    }
}

impl Ca {
    /// The live certificate already issued to `kind:name` for the public
    /// key `spki` (DER SubjectPublicKeyInfo), if there is one.
    fn live_for_key(
        &self,
        name: &str,
        kind: Kind,
        spki: &[u8],
    ) -> Result<Option<Issued>, PkiError> {
        let cert_path = self.dir.join(format!("{name}.pem"));
        let Ok(pem) = std::fs::read_to_string(&cert_path) else {
            return Ok(None);
        };
        let Some(der) = pem_contents(&pem, &["CERTIFICATE"]) else {
            return Ok(None);
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
            return Ok(None);
        };
        if cert.tbs_certificate.subject_pki.raw != spki {
            return Ok(None);
        }
        let serial = super::index::serial_hex(cert.raw_serial());
        let index = super::Index::load(&self.dir)?;
        let now = super::index::unix_now();
        let Some(entry) = index
            .certs
            .iter()
            .find(|e| e.serial == serial && e.name == name && e.kind == kind && e.is_live(now))
        else {
            return Ok(None);
        };
        Ok(Some(Issued {
            name: name.to_string(),
            kind,
            serial: entry.serial.clone(),
            not_before: entry.not_before,
            not_after: entry.not_after,
            cert_pem: pem,
            key_pem: None,
            cert_path,
            key_path: None,
        }))
    }
}

/// What a CSR asks for, checked as [`Ca::sign_csr`] checks it (PEM, an
/// Ed25519 key, its own signature, one `kind:NAME` common name): the common
/// name and the public key, hex. A provisioner compares both with what the
/// node reported before sending the CSR to the CA.
pub fn inspect_csr(csr_pem: &str) -> Result<(String, String), PkiError> {
    let der = pem_contents(csr_pem, &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"])
        .ok_or_else(|| PkiError::BadCsr("no PEM certificate request found".to_string()))?;
    let (_, csr) =
        X509CertificationRequest::from_der(&der).map_err(|e| PkiError::BadCsr(e.to_string()))?;
    let info = &csr.certification_request_info;
    let key_oid = info.subject_pki.algorithm.algorithm.to_id_string();
    if key_oid != ED25519_OID {
        return Err(PkiError::UnsupportedKey(key_oid));
    }
    check_ed25519_key(info.subject_pki.subject_public_key.data.as_ref())?;
    csr.verify_signature()
        .map_err(|_| PkiError::BadCsrSignature)?;
    let (kind, name) = requested_identity(&csr)?;
    Ok((
        kind.identity(&name),
        hex::encode(info.subject_pki.subject_public_key.data.as_ref()),
    ))
}

/// The kind and name in the CSR's subject, which must be one `CN=user:NAME` / `CN=node:NAME`.
fn requested_identity(csr: &X509CertificationRequest<'_>) -> Result<(Kind, String), PkiError> {
    let subject = &csr.certification_request_info.subject;
    if subject.iter_attributes().count() != 1 {
        return Err(PkiError::BadCsr(format!(
            "the subject must be one common name, not {:?}",
            subject.to_string()
        )));
    }
    let cn = subject
        .iter_common_name()
        .next()
        .ok_or_else(|| PkiError::BadCsr("the subject has no common name".to_string()))?;
    let cn = cn
        .as_str()
        .map_err(|_| PkiError::BadCsr("the common name is not a string".to_string()))?;
    let (kind, name) = Kind::split_identity(cn).ok_or_else(|| {
        PkiError::BadCsr(format!(
            "the common name {cn:?} is not user:NAME, node:NAME or broker:NAME"
        ))
    })?;
    Ok((kind, name.to_string()))
}

/// The SANs a node's CSR asks for, checked: `DNS:NAME` always, other host names and IP addresses
/// only with `allow_extra`, nothing else ever.
fn requested_node_sans(
    csr: &X509CertificationRequest<'_>,
    name: &str,
    allow_extra: bool,
) -> Result<Vec<SanType>, PkiError> {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    let refuse = |san: String, reason: &str| PkiError::InvalidSan {
        san,
        reason: reason.to_string(),
    };
    let extra = "only DNS:NAME is signed unless extra SANs are allowed";
    for ext in csr.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(san) = ext else {
            continue;
        };
        for general in &san.general_names {
            match general {
                GeneralName::DNSName(d) => {
                    check_dns_name(d)?;
                    if *d != name && !allow_extra {
                        return Err(refuse(format!("DNS:{d}"), extra));
                    }
                    if *d != name {
                        dns.push(d.to_string());
                    }
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = ip_from_bytes(bytes)
                        .ok_or_else(|| refuse(format!("IP:{bytes:?}"), "not an IP address"))?;
                    if !allow_extra {
                        return Err(refuse(format!("IP:{ip}"), extra));
                    }
                    ips.push(ip);
                }
                other => {
                    return Err(refuse(
                        format!("{other}"),
                        "only DNS names and IP addresses are signed",
                    ))
                }
            }
        }
    }
    node_sans(name, &dns, &ips)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CaOptions, Index};
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
        assert!(eku.server_auth && !eku.client_auth);
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
}

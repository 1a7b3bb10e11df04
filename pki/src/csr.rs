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
#[path = "csr_tests.rs"]
mod tests;

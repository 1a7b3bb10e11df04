//! Issuing certificates for `user:NAME`, `node:NAME` and `broker:NAME`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rand_core::{OsRng, RngCore};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use x509_parser::time::ASN1Time;

use super::ca::{Ca, BACKDATE};
use super::files::{self, KEY_MODE, PUBLIC_MODE};
use super::index::{serial_hex, unix_seconds, Index, IndexEntry};
use super::keys::{check_ed25519_key, key_pin};
use super::{check_dns_name, check_name, Kind, PkiError, CA_CERT};

/// Days a certificate is valid unless told otherwise.
pub const DEFAULT_DAYS: u32 = 365;

/// Bytes of randomness in a serial number (the top bit is cleared so it stays positive).
pub const SERIAL_BYTES: usize = 16;

/// Options for [`Ca::issue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueOptions {
    /// Days of validity from `not_before` (default [`DEFAULT_DAYS`]); ignored when `not_after`
    /// is set.
    pub validity_days: u32,
    /// Start of validity (default: now minus [`BACKDATE`]).
    pub not_before: Option<SystemTime>,
    /// End of validity (default: `not_before` plus `validity_days`).
    pub not_after: Option<SystemTime>,
    /// Extra DNS names, for node and broker certificates only (a broker's host names).
    pub dns: Vec<String>,
    /// IP addresses, for node and broker certificates only (a broker's addresses).
    pub ips: Vec<IpAddr>,
    /// Replace an existing `NAME.pem` / `NAME.key` (default off).
    pub force: bool,
}

impl Default for IssueOptions {
    fn default() -> Self {
        IssueOptions {
            validity_days: DEFAULT_DAYS,
            not_before: None,
            not_after: None,
            dns: Vec::new(),
            ips: Vec::new(),
            force: false,
        }
    }
}

/// A certificate the CA just issued (and recorded in its index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The name without its kind.
    pub name: String,
    /// User or node.
    pub kind: Kind,
    /// The serial number, lowercase hex.
    pub serial: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM) when the CA generated it; `None` for a signed CSR.
    pub key_pem: Option<String>,
    /// Where the certificate was written.
    pub cert_path: PathBuf,
    /// Where the key was written, if the CA generated it.
    pub key_path: Option<PathBuf>,
}

/// What goes into a leaf certificate, already checked.
pub(super) struct Leaf<'a> {
    pub name: &'a str,
    pub kind: Kind,
    pub sans: Vec<SanType>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Ca {
    /// Generates an Ed25519 key and a certificate for `kind:name`, writes `DIR/NAME.key` (0600)
    /// and `DIR/NAME.pem` (0644), and records the certificate in the index.
    ///
    /// Node and broker certificates carry `DNS:NAME` plus `opts.dns` and `opts.ips`; user
    /// certificates carry no SANs (asking for some is an error). User and node certificates have
    /// the clientAuth usage only, broker certificates serverAuth only (see [`extended_key_usages`]).
    pub fn issue(&self, name: &str, kind: Kind, opts: &IssueOptions) -> Result<Issued, PkiError> {
        let index = Index::load(&self.dir)?;
        let (issued, entry) = self.issue_one(&index, name, kind, opts)?;
        self.record(&entry)?;
        Ok(issued)
    }

    /// Issues a certificate for each of `names`, as [`issue`](Self::issue) does one, reading and
    /// writing the index once (a fleet's worth of names takes seconds, not the square of its
    /// size). Stops at the first name that cannot be issued; those issued before it are kept
    /// and recorded.
    pub fn issue_many(
        &self,
        names: &[String],
        kind: Kind,
        opts: &IssueOptions,
    ) -> Result<Vec<Issued>, PkiError> {
        let mut index = Index::load(&self.dir)?;
        let mut out = Vec::with_capacity(names.len());
        let mut failed = None;
        for name in names {
            match self.issue_one(&index, name, kind, opts) {
                Ok((issued, entry)) => {
                    index.certs.push(entry);
                    out.push(issued);
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if !out.is_empty() {
            index.save(&self.dir)?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Makes the key and certificate of `name` and writes them; the caller records the entry.
    fn issue_one(
        &self,
        index: &Index,
        name: &str,
        kind: Kind,
        opts: &IssueOptions,
    ) -> Result<(Issued, IndexEntry), PkiError> {
        check_issuable(name)?;
        let (not_before, not_after) = validity(opts)?;
        let sans = match kind {
            Kind::User => {
                if let Some(extra) = opts.dns.first() {
                    return Err(user_san(format!("DNS:{extra}")));
                }
                if let Some(ip) = opts.ips.first() {
                    return Err(user_san(format!("IP:{ip}")));
                }
                Vec::new()
            }
            Kind::Node | Kind::Broker => node_sans(name, &opts.dns, &opts.ips)?,
        };
        let cert_path = self.dir.join(format!("{name}.pem"));
        let key_path = self.dir.join(format!("{name}.key"));
        files::refuse_existing(&cert_path, opts.force)?;
        files::refuse_existing(&key_path, opts.force)?;

        let (key, key_pem) = new_key()?;
        let leaf = Leaf {
            name,
            kind,
            sans,
            not_before,
            not_after,
        };
        let (cert_pem, entry) = self.sign_leaf_with(index, &leaf, &key)?;
        files::write_atomic(&key_path, key_pem.as_bytes(), KEY_MODE, opts.force)?;
        files::write_atomic(&cert_path, cert_pem.as_bytes(), PUBLIC_MODE, opts.force)?;
        let issued = Issued {
            name: name.to_string(),
            kind,
            serial: entry.serial.clone(),
            not_before: entry.not_before,
            not_after: entry.not_after,
            cert_pem,
            key_pem: Some(key_pem),
            cert_path,
            key_path: Some(key_path),
        };
        Ok((issued, entry))
    }

    /// Signs a leaf certificate for `public_key`; returns its PEM and its index entry. Refuses a
    /// weak Ed25519 key, and a key certified before by a certificate now revoked.
    pub(super) fn sign_leaf(
        &self,
        leaf: &Leaf<'_>,
        public_key: &impl PublicKeyData,
    ) -> Result<(String, IndexEntry), PkiError> {
        let index = Index::load(&self.dir)?;
        self.sign_leaf_with(&index, leaf, public_key)
    }

    /// [`sign_leaf`](Self::sign_leaf) against an index already loaded.
    fn sign_leaf_with(
        &self,
        index: &Index,
        leaf: &Leaf<'_>,
        public_key: &impl PublicKeyData,
    ) -> Result<(String, IndexEntry), PkiError> {
        check_ed25519_key(public_key.der_bytes())?;
        let pin = key_pin(&public_key.subject_public_key_info());
        if let Some(gone) = index
            .certs
            .iter()
            .find(|e| e.revoked_at.is_some() && e.key_sha256.as_deref() == Some(pin.as_str()))
        {
            return Err(PkiError::RevokedKey {
                identity: gone.kind.identity(&gone.name),
                serial: gone.serial.clone(),
            });
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, leaf.kind.identity(leaf.name));
        params.subject_alt_names = leaf.sans.clone();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = extended_key_usages(leaf.kind);
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        params.not_before = asn1_time(leaf.not_before)?.to_datetime();
        params.not_after = asn1_time(leaf.not_after)?.to_datetime();
        let cert = params.signed_by(public_key, &self.issuer)?;
        let entry = IndexEntry {
            serial: serial_hex(serial.as_ref()),
            name: leaf.name.to_string(),
            kind: leaf.kind,
            not_before: unix_seconds(leaf.not_before),
            not_after: unix_seconds(leaf.not_after),
            revoked_at: None,
            key_sha256: Some(pin),
        };
        Ok((cert.pem(), entry))
    }

    /// Appends an issued certificate to the index.
    pub(super) fn record(&self, entry: &IndexEntry) -> Result<(), PkiError> {
        let mut index = Index::load(&self.dir)?;
        index.certs.push(entry.clone());
        index.save(&self.dir)
    }
}

/// The extended key usages of a certificate of `kind`: `clientAuth` for users and nodes (they
/// connect to the broker); `serverAuth` and `clientAuth` for brokers, which serve TLS and, in a
/// cluster, also connect to each other (a route or a leaf-node link is a TLS client to the other
/// server). A node's certificate cannot serve TLS as a broker. A broker's certificate connecting
/// to a client port maps to no user and is refused, and a user's or node's presented on a route
/// or leaf-node port is not among the pinned broker keys (`broker_cluster`).
pub fn extended_key_usages(kind: Kind) -> Vec<ExtendedKeyUsagePurpose> {
    match kind {
        Kind::User | Kind::Node => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Kind::Broker => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    }
}

/// A name that may be issued: it follows the name pattern and is not taken by the CA's files.
pub(super) fn check_issuable(name: &str) -> Result<(), PkiError> {
    check_name(name)?;
    if Some(name) == CA_CERT.strip_suffix(".pem") {
        return Err(PkiError::InvalidName {
            name: name.to_string(),
            reason: "it is reserved for the CA's own files".to_string(),
        });
    }
    Ok(())
}

/// The SANs of a node certificate: `DNS:NAME` (when NAME is a host name), then the extras.
pub(super) fn node_sans(
    name: &str,
    dns: &[String],
    ips: &[IpAddr],
) -> Result<Vec<SanType>, PkiError> {
    let mut names: Vec<&str> = Vec::new();
    if check_dns_name(name).is_ok() {
        names.push(name);
    }
    for extra in dns {
        check_dns_name(extra)?;
        if !names.contains(&extra.as_str()) {
            names.push(extra);
        }
    }
    let mut sans = Vec::with_capacity(names.len() + ips.len());
    for n in names {
        let ia5 = n.to_string().try_into().map_err(|_| PkiError::InvalidSan {
            san: format!("DNS:{n}"),
            reason: "not ASCII".to_string(),
        })?;
        sans.push(SanType::DnsName(ia5));
    }
    for ip in ips {
        if !sans.contains(&SanType::IpAddress(*ip)) {
            sans.push(SanType::IpAddress(*ip));
        }
    }
    Ok(sans)
}

fn user_san(san: String) -> PkiError {
    PkiError::InvalidSan {
        san,
        reason: "user certificates carry no subject alternative names".to_string(),
    }
}

/// Start and end of validity from the options.
pub(super) fn validity(opts: &IssueOptions) -> Result<(SystemTime, SystemTime), PkiError> {
    let not_before = opts
        .not_before
        .unwrap_or_else(|| SystemTime::now() - BACKDATE);
    let not_after = match opts.not_after {
        Some(t) => t,
        None if opts.validity_days == 0 => {
            return Err(PkiError::BadValidity(
                "a certificate needs at least one day".to_string(),
            ))
        }
        None => not_before + Duration::from_secs(u64::from(opts.validity_days) * 86_400),
    };
    if not_after <= not_before {
        return Err(PkiError::BadValidity(
            "the end of validity is not after its start".to_string(),
        ));
    }
    Ok((not_before, not_after))
}

/// A random positive serial number of [`SERIAL_BYTES`] bytes whose first byte is non-zero, so
/// its DER encoding is exactly that long.
pub(super) fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; SERIAL_BYTES];
    OsRng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// A new Ed25519 key, with its PEM: PKCS#8 version 1 as RFC 8410 shows it (the private key
/// alone, without the optional public key), the form OpenSSL 3.0, Go and rustls all read.
pub(super) fn new_key() -> Result<(KeyPair, String), PkiError> {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, KeypairBytes};

    let signing = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let bytes = KeypairBytes {
        secret_key: signing.to_bytes(),
        public_key: None,
    };
    let crypto = |e: &dyn std::fmt::Display| PkiError::Crypto(format!("encoding a key: {e}"));
    let der = bytes.to_pkcs8_der().map_err(|e| crypto(&e))?;
    let pem = der
        .to_pem("PRIVATE KEY", LineEnding::LF)
        .map_err(|e| crypto(&e))?;
    let key = KeyPair::try_from(der.as_bytes())?;
    Ok((key, pem.to_string()))
}

/// A time as x509-parser's (and, through it, rcgen's) date type.
pub(super) fn asn1_time(t: SystemTime) -> Result<ASN1Time, PkiError> {
    ASN1Time::from_timestamp(unix_seconds(t))
        .map_err(|_| PkiError::BadValidity("a date out of range".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CaOptions, Index};
    use std::os::unix::fs::PermissionsExt;
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn ca() -> (tempfile::TempDir, Ca) {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::init(tmp.path(), &CaOptions::default()).unwrap();
        (tmp, ca)
    }

    fn der_of(pem: &str) -> Vec<u8> {
        crate::ca::pem_contents(pem, &["CERTIFICATE"]).unwrap()
    }

    fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
        match cert.subject_alternative_name().unwrap() {
            None => Vec::new(),
            Some(ext) => ext
                .value
                .general_names
                .iter()
                .map(|g| match g {
                    GeneralName::DNSName(d) => format!("DNS:{d}"),
                    GeneralName::IPAddress(b) => format!("IP:{b:?}"),
                    other => format!("{other:?}"),
                })
                .collect(),
        }
    }

    #[test]
    fn issues_a_user_certificate_chained_to_the_ca() {
        let (tmp, ca) = ca();
        let issued = ca
            .issue("alice", Kind::User, &IssueOptions::default())
            .unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tmp.path().join("alice.key")), 0o600);
        assert_eq!(mode(&tmp.path().join("alice.pem")), 0o644);
        let der = der_of(&issued.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.subject().to_string(), "CN=user:alice");
        assert_eq!(cert.issuer().to_string(), "CN=mco collective CA");
        assert!(!cert.is_ca());
        let (_, ca_cert) = X509Certificate::from_der(ca.cert_der()).unwrap();
        cert.verify_signature(Some(ca_cert.public_key()))
            .expect("signed by the CA");
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(sans(&cert).is_empty());
        assert_eq!(cert.raw_serial().len(), SERIAL_BYTES);
        assert!(cert.raw_serial()[0] & 0x80 == 0);
        assert_eq!(serial_hex(cert.raw_serial()), issued.serial);
        let days = (issued.not_after - issued.not_before) / 86_400;
        assert_eq!(days, 365);
        let index = Index::load(tmp.path()).unwrap();
        assert_eq!(index.certs.len(), 1);
        assert_eq!(index.certs[0].serial, issued.serial);
        assert_eq!(index.certs[0].kind, Kind::User);
        // The key is usable for envelope signatures.
        let key = ed25519_dalek::pkcs8::DecodePrivateKey::from_pkcs8_pem(
            issued.key_pem.as_deref().unwrap(),
        );
        let key: ed25519_dalek::SigningKey = key.expect("ed25519-dalek reads the key");
        assert_eq!(
            key.verifying_key().as_bytes(),
            cert.public_key().subject_public_key.data.as_ref()
        );
    }

    #[test]
    fn node_certificates_carry_their_names_and_extras() {
        let (_tmp, ca) = ca();
        let opts = IssueOptions {
            dns: vec!["nats.example.com".into(), "broker".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            ..IssueOptions::default()
        };
        let issued = ca.issue("broker", Kind::Broker, &opts).unwrap();
        let der = der_of(&issued.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.subject().to_string(), "CN=broker:broker");
        assert_eq!(
            sans(&cert),
            ["DNS:broker", "DNS:nats.example.com", "IP:[127, 0, 0, 1]"]
        );
        let node = ca
            .issue("web1", Kind::Node, &IssueOptions::default())
            .unwrap();
        let der = der_of(&node.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(sans(&cert), ["DNS:web1"]);
    }

    #[test]
    fn many_names_are_issued_with_one_index_write_and_stop_at_a_bad_one() {
        let (tmp, ca) = ca();
        let names: Vec<String> = (0..5).map(|i| format!("n{i}")).collect();
        let issued = ca
            .issue_many(&names, Kind::Node, &IssueOptions::default())
            .unwrap();
        assert_eq!(issued.len(), 5);
        let index = Index::load(tmp.path()).unwrap();
        assert_eq!(
            index.live_names(Kind::Node, crate::index::unix_now()),
            names
        );
        for n in &names {
            assert!(tmp.path().join(format!("{n}.pem")).exists());
            assert!(tmp.path().join(format!("{n}.key")).exists());
        }
        // A name taken stops the batch; those before it are kept and recorded.
        let more: Vec<String> = ["m0", "n1", "m2"].iter().map(|s| s.to_string()).collect();
        assert!(ca
            .issue_many(&more, Kind::Node, &IssueOptions::default())
            .is_err());
        let index = Index::load(tmp.path()).unwrap();
        assert!(index.certs.iter().any(|e| e.name == "m0"));
        assert!(!index.certs.iter().any(|e| e.name == "m2"));
        assert_eq!(index.certs.iter().filter(|e| e.name == "n1").count(), 1);
    }

    #[test]
    fn only_broker_certificates_serve_tls() {
        let (tmp, ca) = ca();
        let usages = |kind: Kind, name: &str| {
            let issued = ca.issue(name, kind, &IssueOptions::default()).unwrap();
            let der = der_of(&issued.cert_pem);
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(!eku.any && eku.other.is_empty(), "{kind}: {eku:?}");
            (eku.client_auth, eku.server_auth)
        };
        assert_eq!(usages(Kind::User, "alice"), (true, false));
        assert_eq!(usages(Kind::Node, "web1"), (true, false));
        assert_eq!(usages(Kind::Broker, "nats1"), (true, true));
        // The index records each certificate's key pin.
        let index = Index::load(tmp.path()).unwrap();
        assert_eq!(index.certs.len(), 3);
        for e in &index.certs {
            let pem = std::fs::read_to_string(tmp.path().join(format!("{}.pem", e.name))).unwrap();
            let der = der_of(&pem);
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            assert_eq!(
                e.key_sha256.as_deref(),
                Some(key_pin(cert.tbs_certificate.subject_pki.raw).as_str())
            );
        }
    }

    #[test]
    fn refuses_overwrite_bad_names_and_user_sans() {
        let (tmp, ca) = ca();
        let first = ca
            .issue("alice", Kind::User, &IssueOptions::default())
            .unwrap();
        let err = ca
            .issue("alice", Kind::User, &IssueOptions::default())
            .unwrap_err();
        assert!(matches!(err, PkiError::Exists { .. }), "{err}");
        let on_disk = std::fs::read_to_string(tmp.path().join("alice.pem")).unwrap();
        assert_eq!(on_disk, first.cert_pem);
        let forced = IssueOptions {
            force: true,
            ..IssueOptions::default()
        };
        let second = ca.issue("alice", Kind::User, &forced).unwrap();
        assert_ne!(second.serial, first.serial);

        for bad in ["ca", "../x", "-x", ""] {
            let err = ca
                .issue(bad, Kind::User, &IssueOptions::default())
                .unwrap_err();
            assert!(matches!(err, PkiError::InvalidName { .. }), "{bad}: {err}");
        }
        let with_dns = IssueOptions {
            dns: vec!["x.example.com".into()],
            ..IssueOptions::default()
        };
        let err = ca.issue("bob", Kind::User, &with_dns).unwrap_err();
        assert!(matches!(err, PkiError::InvalidSan { .. }), "{err}");
        let wildcard = IssueOptions {
            dns: vec!["*.example.com".into()],
            ..IssueOptions::default()
        };
        let err = ca.issue("web1", Kind::Node, &wildcard).unwrap_err();
        assert!(matches!(err, PkiError::InvalidSan { .. }), "{err}");
        assert!(!tmp.path().join("bob.key").exists());
        assert!(!tmp.path().join("web1.key").exists());
    }

    #[test]
    fn explicit_validity_makes_expired_and_future_certificates() {
        let (_tmp, ca) = ca();
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let expired = IssueOptions {
            not_before: Some(now - 10 * day),
            not_after: Some(now - day),
            ..IssueOptions::default()
        };
        let issued = ca.issue("old", Kind::User, &expired).unwrap();
        let der = der_of(&issued.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert!(!cert.validity().is_valid());
        assert_eq!(cert.validity().not_after.timestamp(), issued.not_after);

        let future = IssueOptions {
            not_before: Some(now + day),
            validity_days: 2,
            ..IssueOptions::default()
        };
        let issued = ca.issue("soon", Kind::Node, &future).unwrap();
        let der = der_of(&issued.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert!(!cert.validity().is_valid());
        assert_eq!(issued.not_after - issued.not_before, 2 * 86_400);

        let backwards = IssueOptions {
            not_before: Some(now),
            not_after: Some(now - day),
            ..IssueOptions::default()
        };
        assert!(matches!(
            ca.issue("x", Kind::User, &backwards),
            Err(PkiError::BadValidity(_))
        ));
        let zero = IssueOptions {
            validity_days: 0,
            ..IssueOptions::default()
        };
        assert!(matches!(
            ca.issue("y", Kind::User, &zero),
            Err(PkiError::BadValidity(_))
        ));
    }

    #[test]
    fn keys_are_pkcs8_v1_without_the_public_key() {
        let (key, pem) = new_key().unwrap();
        let der = crate::ca::pem_contents(&pem, &["PRIVATE KEY"]).unwrap();
        // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING[32] } }
        let prefix = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        assert_eq!(der.len(), prefix.len() + 32);
        assert_eq!(der[..prefix.len()], prefix);
        let again = KeyPair::from_pem(&pem).unwrap();
        assert_eq!(again.public_key_raw(), key.public_key_raw());
        assert_eq!(key.algorithm(), &rcgen::PKCS_ED25519);
    }

    #[test]
    fn serials_are_random_and_positive() {
        let a = random_serial();
        let b = random_serial();
        assert_ne!(a, b);
        for s in [a, b] {
            assert_eq!(s.len(), SERIAL_BYTES);
            assert!(s.as_ref()[0] & 0x80 == 0 && s.as_ref()[0] != 0);
        }
    }
}

//! The collective CA: creating it and loading it back.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::files::{self, KEY_MODE, PUBLIC_MODE};
use super::index::Index;
use super::issue::{asn1_time, new_key, random_serial};
use super::{PkiError, CA_CERT, CA_CRL, CA_KEY};

/// The common name of a CA made with default options.
pub const DEFAULT_CA_NAME: &str = "mco collective CA";

/// Days a CA made with default options is valid.
pub const DEFAULT_CA_DAYS: u32 = 3650;

/// How far before "now" a new certificate's validity starts, so that a node whose clock is a
/// little behind the CA's accepts it at once.
pub const BACKDATE: Duration = Duration::from_secs(300);

/// Options for [`Ca::init`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaOptions {
    /// The CA certificate's common name (default [`DEFAULT_CA_NAME`]).
    pub common_name: String,
    /// Days of validity (default [`DEFAULT_CA_DAYS`]).
    pub validity_days: u32,
    /// Replace an existing CA, starting a new index and dropping the old CRL (default off).
    pub force: bool,
}

impl Default for CaOptions {
    fn default() -> Self {
        CaOptions {
            common_name: DEFAULT_CA_NAME.to_string(),
            validity_days: DEFAULT_CA_DAYS,
            force: false,
        }
    }
}

/// A collective CA loaded from its directory, able to issue and sign.
#[derive(Debug)]
pub struct Ca {
    pub(super) dir: PathBuf,
    pub(super) cert_pem: String,
    pub(super) cert_der: Vec<u8>,
    pub(super) issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Creates a CA in `dir` (created with mode 0700 if missing): an Ed25519 key in `ca.key`
    /// (0600) and a self-signed certificate in `ca.pem` (0644), with an empty index.
    ///
    /// Fails with [`PkiError::Exists`] if either file exists and `opts.force` is off.
    pub fn init(dir: &Path, opts: &CaOptions) -> Result<Ca, PkiError> {
        if opts.validity_days == 0 {
            return Err(PkiError::BadValidity(
                "a CA needs at least one day".to_string(),
            ));
        }
        if opts.common_name.trim().is_empty() {
            return Err(PkiError::BadValidity(
                "the CA's common name is empty".to_string(),
            ));
        }
        files::ensure_dir(dir)?;
        let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        files::refuse_existing(&cert_path, opts.force)?;
        files::refuse_existing(&key_path, opts.force)?;

        let (key, key_pem) = new_key()?;
        let now = SystemTime::now();
        let not_before = now - BACKDATE;
        let not_after = now + Duration::from_secs(u64::from(opts.validity_days) * 86_400);
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, opts.common_name.as_str());
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = asn1_time(not_before)?.to_datetime();
        params.not_after = asn1_time(not_after)?.to_datetime();
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;

        files::write_atomic(&key_path, key_pem.as_bytes(), KEY_MODE, opts.force)?;
        files::write_atomic(&cert_path, cert.pem().as_bytes(), PUBLIC_MODE, opts.force)?;
        // Whatever the directory held before belongs to another CA.
        files::remove_if_present(&dir.join(CA_CRL))?;
        Index::default().save(dir)?;
        Ca::load(dir)
    }

    /// Loads the CA in `dir`, checking that its key is Ed25519 and belongs to its certificate.
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        if !cert_path.exists() || !key_path.exists() {
            return Err(PkiError::NoCa {
                dir: dir.to_path_buf(),
            });
        }
        let bad = |reason: String| PkiError::BadCa {
            dir: dir.to_path_buf(),
            reason,
        };
        let cert_pem = files::read_text(&cert_path)?;
        let key_pem = files::read_text(&key_path)?;
        let cert_der = pem_contents(&cert_pem, &["CERTIFICATE"])
            .ok_or_else(|| bad(format!("{CA_CERT} holds no PEM certificate")))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(format!("{CA_KEY}: {e}")))?;
        if key.algorithm() != &rcgen::PKCS_ED25519 {
            return Err(bad(format!("{CA_KEY} is not an Ed25519 key")));
        }
        let (_, cert) =
            X509Certificate::from_der(&cert_der).map_err(|e| bad(format!("{CA_CERT}: {e}")))?;
        if !cert.is_ca() {
            return Err(bad(format!("{CA_CERT} is not a CA certificate")));
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(bad(format!("{CA_KEY} does not belong to {CA_CERT}")));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key)
            .map_err(|e| bad(format!("{CA_CERT}: {e}")))?;
        Ok(Ca {
            dir: dir.to_path_buf(),
            cert_pem,
            cert_der,
            issuer,
        })
    }

    /// The CA's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The SHA-256 fingerprint of the CA certificate, as `AB:CD:…`.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }
}

/// The SHA-256 of `der` as uppercase hex pairs joined by `:` (as `openssl -fingerprint` prints).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let pairs: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    pairs.join(":")
}

/// The contents of the first PEM block in `text` whose label is one of `labels`.
pub(super) fn pem_contents(text: &str, labels: &[&str]) -> Option<Vec<u8>> {
    let mut rest = text.as_bytes();
    while let Ok((next, pem)) = x509_parser::pem::parse_x509_pem(rest) {
        if labels.contains(&pem.label.as_str()) {
            return Some(pem.contents);
        }
        if next.len() >= rest.len() {
            break;
        }
        rest = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn init_writes_a_ca_with_modes_and_loads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let ca = Ca::init(&dir, &CaOptions::default()).unwrap();
        assert_eq!(mode(&dir.join(CA_KEY)), 0o600);
        assert_eq!(mode(&dir.join(CA_CERT)), 0o644);
        assert_eq!(mode(&dir), 0o700);
        let (_, cert) = X509Certificate::from_der(ca.cert_der()).unwrap();
        assert!(cert.is_ca());
        assert_eq!(cert.subject().to_string(), "CN=mco collective CA");
        assert_eq!(cert.subject(), cert.issuer());
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        assert!(cert.basic_constraints().unwrap().unwrap().critical);
        assert_eq!(
            cert.public_key().algorithm.algorithm.to_id_string(),
            "1.3.101.112"
        );
        cert.verify_signature(None).expect("self-signed");
        let loaded = Ca::load(&dir).unwrap();
        assert_eq!(loaded.cert_pem(), ca.cert_pem());
        assert_eq!(loaded.fingerprint(), ca.fingerprint());
    }

    #[test]
    fn init_refuses_to_overwrite_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let first = Ca::init(tmp.path(), &CaOptions::default()).unwrap();
        let err = Ca::init(tmp.path(), &CaOptions::default()).unwrap_err();
        assert!(matches!(err, PkiError::Exists { .. }), "{err}");
        assert_eq!(Ca::load(tmp.path()).unwrap().cert_pem(), first.cert_pem());
        let forced = CaOptions {
            force: true,
            ..CaOptions::default()
        };
        let second = Ca::init(tmp.path(), &forced).unwrap();
        assert_ne!(second.cert_pem(), first.cert_pem());
        assert_eq!(mode(&tmp.path().join(CA_KEY)), 0o600);
    }

    #[test]
    fn load_reports_a_missing_ca_and_a_foreign_key() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(Ca::load(tmp.path()), Err(PkiError::NoCa { .. })));
        Ca::init(&tmp.path().join("a"), &CaOptions::default()).unwrap();
        Ca::init(&tmp.path().join("b"), &CaOptions::default()).unwrap();
        std::fs::copy(
            tmp.path().join("b").join(CA_KEY),
            tmp.path().join("a").join(CA_KEY),
        )
        .unwrap();
        let err = Ca::load(&tmp.path().join("a")).unwrap_err();
        assert!(matches!(err, PkiError::BadCa { .. }), "{err}");
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn init_rejects_zero_days() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = CaOptions {
            validity_days: 0,
            ..CaOptions::default()
        };
        assert!(matches!(
            Ca::init(tmp.path(), &opts),
            Err(PkiError::BadValidity(_))
        ));
        assert!(!tmp.path().join(CA_KEY).exists());
    }
}

//! The collective's PKI: CA, certificates, CSRs and the CRL (ARCHITECTURE.md §7).
//!
//! One directory holds a collective's CA: `ca.pem`, `ca.key`, `ca.crl`, `index.json` (every
//! certificate the CA issued, and which are revoked) and, for each issued name, `NAME.pem` and
//! `NAME.key` (NAME without its kind). Keys are Ed25519, certificates X.509 v3.
//!
//! Identities live in the subject, and only there: a certificate's subject is exactly one common
//! name, `user:NAME` for a caller, `node:NAME` for a responder or `broker:NAME` for a nats-server,
//! so the broker's certificate mapping (`CN=user:alice`, see [`broker`]) and the responders'
//! caller checks read one value that the CA alone chose. Node and broker certificates also carry
//! `DNS:NAME` (and extra DNS/IP names), restricted to host names so that no SAN can ever spell a
//! broker user string.
//!
//! Each kind has its own extended key usages, so that no certificate can play another's part in
//! TLS: `user:` and `node:` certificates are `clientAuth` only (they connect to the broker and
//! never serve TLS, so a node's certificate, whose DNS SAN is its name, cannot impersonate the
//! broker), and `broker:` certificates are `serverAuth` only (the generated configuration has no
//! cluster routes, so a broker never presents its certificate as a client; a broker certificate
//! cannot connect to the bus as a client either, and carries no identity responders accept). A
//! cluster of nats-servers, whose routes present a certificate as clients too, is not something
//! this PKI issues for.
//!
//! Everything here is library code: no printing, typed errors ([`PkiError`]), files written
//! atomically with fixed modes (0600 for keys, 0644 for the rest).

#![forbid(unsafe_code)]

pub mod broker;
mod broker_cluster;
mod broker_inventory;
pub mod broker_provisioning;
mod ca;
pub mod crl;
mod csr;
mod files;
pub mod index;
mod issue;
pub mod keys;
mod show;

use std::path::PathBuf;

pub use broker::{broker_config, BrokerOptions};
pub use ca::{fingerprint, Ca, CaOptions, DEFAULT_CA_DAYS, DEFAULT_CA_NAME};
pub use crl::CrlOptions;
pub use csr::{inspect_csr, request_csr, CsrOptions, Requested, SignPolicy};
pub use files::{remove_if_present, write_atomic, write_private, KEY_MODE, PUBLIC_MODE};
pub use index::{Index, IndexEntry};
pub use issue::{extended_key_usages, IssueOptions, Issued, DEFAULT_DAYS};
pub use keys::{check_ed25519_key, key_pin};
pub use show::show;

/// The CA certificate's file name.
pub const CA_CERT: &str = "ca.pem";
/// The CA key's file name.
pub const CA_KEY: &str = "ca.key";
/// The CRL's file name.
pub const CA_CRL: &str = "ca.crl";
/// The index of issued certificates.
pub const INDEX: &str = "index.json";

/// The longest name a certificate may carry after its kind prefix.
pub const MAX_NAME_LEN: usize = 253;

/// Whose certificate: a caller, a responder or a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A person or program calling agents: `user:NAME`.
    User,
    /// A responder: `node:IDENTITY`.
    Node,
    /// A nats-server: `broker:NAME`, the only kind that may serve TLS.
    Broker,
}

impl Kind {
    /// `user`, `node` or `broker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Node => "node",
            Kind::Broker => "broker",
        }
    }

    /// Whether certificates of this kind serve TLS (`serverAuth`): brokers only.
    pub fn serves_tls(self) -> bool {
        self == Kind::Broker
    }

    /// Whether certificates of this kind connect to a TLS server with a client certificate
    /// (`clientAuth`): users and nodes.
    pub fn is_tls_client(self) -> bool {
        matches!(self, Kind::User | Kind::Node)
    }

    /// Whether certificates of this kind carry host names and addresses as SANs.
    pub fn has_host_names(self) -> bool {
        matches!(self, Kind::Node | Kind::Broker)
    }

    /// The identity a certificate of this kind carries as its common name: `user:NAME`.
    pub fn identity(self, name: &str) -> String {
        format!("{}:{name}", self.as_str())
    }

    /// Splits `user:NAME` / `node:NAME` / `broker:NAME` into kind and name (the name is not
    /// checked).
    pub fn split_identity(identity: &str) -> Option<(Kind, &str)> {
        let (kind, name) = identity.split_once(':')?;
        let kind = kind.parse().ok()?;
        Some((kind, name))
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Kind {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Kind, PkiError> {
        match s {
            "user" => Ok(Kind::User),
            "node" => Ok(Kind::Node),
            "broker" => Ok(Kind::Broker),
            other => Err(PkiError::InvalidKind(other.to_string())),
        }
    }
}

/// Checks a certificate name (the part after `user:` / `node:`):
/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`.
pub fn check_name(name: &str) -> Result<(), PkiError> {
    let bad = |reason: &str| {
        Err(PkiError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    let Some(first) = name.chars().next() else {
        return bad("it is empty");
    };
    if name.len() > MAX_NAME_LEN {
        return bad("it is longer than 253 characters");
    }
    if !first.is_ascii_alphanumeric() {
        return bad("it must start with a letter or digit");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(&format!(
            "{c:?} is not allowed (letters, digits, '.', '_' and '-' are)"
        ));
    }
    Ok(())
}

/// Checks a DNS name for a certificate SAN: labels of letters, digits, `-` and `_`, separated by
/// single dots, none starting or ending with `-`, at most 253 characters. No wildcards.
pub fn check_dns_name(dns: &str) -> Result<(), PkiError> {
    let bad = |reason: &str| {
        Err(PkiError::InvalidSan {
            san: format!("DNS:{dns}"),
            reason: reason.to_string(),
        })
    };
    if dns.is_empty() || dns.len() > MAX_NAME_LEN {
        return bad("a DNS name has 1 to 253 characters");
    }
    for label in dns.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("every label has 1 to 63 characters");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label cannot start or end with '-'");
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad("only letters, digits, '-' and '_' may appear in a label");
        }
    }
    Ok(())
}

/// Everything that can go wrong in the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file exists and overwriting was not asked for.
    #[error("{} already exists (use --force to replace it)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The directory holds no CA (no `ca.pem` or `ca.key`).
    #[error("no CA in {} (create one with `mco pki ca init`)", dir.display())]
    NoCa {
        /// The directory.
        dir: PathBuf,
    },
    /// The CA's key does not belong to its certificate, or is not Ed25519.
    #[error("the CA in {} is unusable: {reason}", dir.display())]
    BadCa {
        /// The directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// Not `user`, `node` or `broker`.
    #[error("{0:?} is not a certificate kind (user, node or broker)")]
    InvalidKind(String),
    /// A name that cannot go in a certificate.
    #[error("{name:?} is not a valid name: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A subject alternative name that cannot go in a certificate.
    #[error("{san} is not an acceptable subject alternative name: {reason}")]
    InvalidSan {
        /// The SAN, as `DNS:…`, `IP:…`, `email:…`, `URI:…`.
        san: String,
        /// Why.
        reason: String,
    },
    /// Validity dates that make no certificate.
    #[error("bad validity: {0}")]
    BadValidity(String),
    /// A CSR that does not parse, or whose subject is not `user:NAME` / `node:NAME`.
    #[error("bad CSR: {0}")]
    BadCsr(String),
    /// The CSR's signature does not verify with its own key.
    #[error("the CSR's signature does not verify")]
    BadCsrSignature,
    /// The CSR's key is not Ed25519.
    #[error("the CSR's key is {0}; mco keys are Ed25519")]
    UnsupportedKey(String),
    /// An Ed25519 public key that is not a valid point, or is of small order (a weak key, for
    /// which one signature can verify for many messages).
    #[error("{0}")]
    WeakKey(String),
    /// The key was certified before and that certificate is revoked: a new certificate for it
    /// would let the revoked holder back in (the broker pins keys, not certificates).
    #[error("this key belongs to revoked certificate {serial} of {identity}; make a new key")]
    RevokedKey {
        /// The revoked certificate's identity.
        identity: String,
        /// Its serial.
        serial: String,
    },
    /// The signing policy does not accept this kind.
    #[error("{kind} certificates are not signed by this policy")]
    KindNotAllowed {
        /// The requested kind.
        kind: Kind,
    },
    /// The signing policy's name pattern does not match.
    #[error("{name:?} does not match the allowed pattern {pattern}")]
    NameNotAllowed {
        /// The requested name.
        name: String,
        /// The policy's pattern.
        pattern: String,
    },
    /// Nothing in the index matches the name or serial to revoke.
    #[error("no unrevoked certificate matches {0:?}")]
    NotFound(String),
    /// `index.json` does not parse.
    #[error("{}: {message}", path.display())]
    BadIndex {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Input to [`show`] that is no certificate, CSR or CRL.
    #[error("not a certificate, CSR or CRL: {0}")]
    Unrecognized(String),
    /// A broker configuration option that cannot be used.
    #[error("bad broker option: {0}")]
    BadBrokerOption(String),
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Crypto(String),
}

impl PkiError {
    /// Whether the error comes from what the caller asked for (names, kinds, dates, options,
    /// policy) rather than from files or the environment. Command lines map it to exit 64.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            PkiError::InvalidKind(_)
                | PkiError::InvalidName { .. }
                | PkiError::InvalidSan { .. }
                | PkiError::BadValidity(_)
                | PkiError::BadBrokerOption(_)
                | PkiError::KindNotAllowed { .. }
                | PkiError::NameNotAllowed { .. }
                | PkiError::NotFound(_)
        )
    }
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> PkiError {
        PkiError::Crypto(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        for good in [
            "alice",
            "web1.example.com",
            "a",
            "A-b_c.9",
            &"x".repeat(253),
        ] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-alice",
            ".hidden",
            "_x",
            "al ice",
            "a:b",
            "a/b",
            "é",
            "CN=x",
            &"x".repeat(254),
        ] {
            assert!(
                matches!(check_name(bad), Err(PkiError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn dns_names_are_host_names() {
        for good in ["web1", "web1.example.com", "a-b.c_d", "127-0-0-1.nip.io"] {
            assert!(check_dns_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "*.example.com",
            "a..b",
            ".a",
            "a.",
            "-a",
            "a-",
            "CN=user:alice",
            "a b",
            "x@y",
        ] {
            assert!(
                matches!(check_dns_name(bad), Err(PkiError::InvalidSan { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn kinds_parse_and_prefix() {
        assert_eq!("user".parse::<Kind>().unwrap(), Kind::User);
        assert_eq!("node".parse::<Kind>().unwrap(), Kind::Node);
        assert_eq!("broker".parse::<Kind>().unwrap(), Kind::Broker);
        assert!(Kind::Broker.serves_tls() && !Kind::Broker.is_tls_client());
        assert!(!Kind::Node.serves_tls() && Kind::Node.is_tls_client());
        assert!(!Kind::User.serves_tls() && Kind::User.is_tls_client());
        assert!(matches!(
            "admin".parse::<Kind>(),
            Err(PkiError::InvalidKind(_))
        ));
        assert_eq!(Kind::User.identity("alice"), "user:alice");
        assert_eq!(
            Kind::split_identity("node:web1"),
            Some((Kind::Node, "web1"))
        );
        assert_eq!(Kind::split_identity("root:x"), None);
        assert_eq!(Kind::split_identity("alice"), None);
    }
}

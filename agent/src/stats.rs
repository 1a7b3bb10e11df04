//! Daemon counters, shown by `rpcutil daemon_stats`.
//!
//! Plain atomics: every request touches them, so no lock is taken.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde_json::{json, Map, Value};

/// Why a message was dropped without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Over the payload bound.
    Oversized,
    /// Not a valid envelope or body.
    Undecodable,
    /// Unknown protocol version.
    BadVersion,
    /// A reply arrived where a request was expected.
    WrongKind,
    /// Outside its TTL.
    Expired,
    /// Addressed to a collective this node does not serve.
    WrongCollective,
    /// The filter did not compile.
    BadFilter,
    /// No reply subject to answer on.
    NoReplyTo,
    /// The request was unsigned, and this node requires signatures.
    Unsigned,
    /// The signer's certificate does not parse.
    BadCertificate,
    /// The signer's certificate is not from the collective's CA.
    UntrustedCertificate,
    /// The signer's certificate is not valid yet.
    CertificateNotYetValid,
    /// The signer's certificate has expired.
    CertificateExpired,
    /// The signer's certificate is revoked.
    CertificateRevoked,
    /// The signature does not verify over the body.
    BadSignature,
    /// The body's caller is not the certificate's name.
    NameMismatch,
    /// A certificate of the wrong kind (a node certificate used as a caller).
    WrongPrincipal,
    /// A request id seen before within its TTL.
    Replay,
    /// A TTL over `[security] max_ttl`.
    TtlTooLong,
    /// The replay cache is full of live ids: refused rather than forget one.
    ReplayCacheFull,
}

impl From<&mco_core::security::SecurityError> for Drop {
    fn from(e: &mco_core::security::SecurityError) -> Drop {
        use mco_core::security::SecurityError as S;
        match e {
            S::Unsigned => Drop::Unsigned,
            S::BadCertificate(_) => Drop::BadCertificate,
            S::UntrustedCertificate(_) => Drop::UntrustedCertificate,
            S::NotYetValid(_) => Drop::CertificateNotYetValid,
            S::Expired(_) => Drop::CertificateExpired,
            S::Revoked(_) => Drop::CertificateRevoked,
            S::BadSignature(_) => Drop::BadSignature,
            S::NameMismatch { .. } => Drop::NameMismatch,
            S::WrongPrincipal(_) => Drop::WrongPrincipal,
            S::Replay(_) => Drop::Replay,
        }
    }
}

const DROPS: [(Drop, &str); 20] = [
    (Drop::Oversized, "oversized"),
    (Drop::Undecodable, "undecodable"),
    (Drop::BadVersion, "bad_version"),
    (Drop::WrongKind, "wrong_kind"),
    (Drop::Expired, "expired"),
    (Drop::WrongCollective, "wrong_collective"),
    (Drop::BadFilter, "bad_filter"),
    (Drop::NoReplyTo, "no_reply_to"),
    (Drop::Unsigned, "unsigned"),
    (Drop::BadCertificate, "bad_certificate"),
    (Drop::UntrustedCertificate, "untrusted_certificate"),
    (Drop::CertificateNotYetValid, "certificate_not_yet_valid"),
    (Drop::CertificateExpired, "certificate_expired"),
    (Drop::CertificateRevoked, "certificate_revoked"),
    (Drop::BadSignature, "bad_signature"),
    (Drop::NameMismatch, "name_mismatch"),
    (Drop::WrongPrincipal, "wrong_principal"),
    (Drop::Replay, "replay"),
    (Drop::TtlTooLong, "ttl_too_long"),
    (Drop::ReplayCacheFull, "replay_cache_full"),
];

impl Drop {
    /// The counter's name.
    pub fn name(self) -> &'static str {
        DROPS[self as usize].1
    }

    /// Whether this is a failed check of DESIGN §8 (certificate, signature, caller, TTL,
    /// collective, replay) rather than a message that is malformed or not for us; a secure node
    /// logs these as warnings.
    pub fn is_security_check(self) -> bool {
        match self {
            Drop::Oversized
            | Drop::Undecodable
            | Drop::BadVersion
            | Drop::WrongKind
            | Drop::BadFilter
            | Drop::NoReplyTo => false,
            Drop::Expired
            | Drop::WrongCollective
            | Drop::Unsigned
            | Drop::BadCertificate
            | Drop::UntrustedCertificate
            | Drop::CertificateNotYetValid
            | Drop::CertificateExpired
            | Drop::CertificateRevoked
            | Drop::BadSignature
            | Drop::NameMismatch
            | Drop::WrongPrincipal
            | Drop::Replay
            | Drop::TtlTooLong
            | Drop::ReplayCacheFull => true,
        }
    }
}

/// Counters of one node.
#[derive(Debug, Default)]
pub struct Stats {
    total: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    filtered: AtomicU64,
    busy: AtomicU64,
    replies: AtomicU64,
    dropped: [AtomicU64; DROPS.len()],
}

impl Stats {
    /// A message arrived.
    pub fn seen(&self) {
        self.total.fetch_add(1, Relaxed);
    }
    /// An action succeeded.
    pub fn ok(&self) {
        self.ok.fetch_add(1, Relaxed);
    }
    /// An action failed (any non-zero status).
    pub fn failed(&self) {
        self.failed.fetch_add(1, Relaxed);
    }
    /// The filter did not select this node.
    pub fn filtered(&self) {
        self.filtered.fetch_add(1, Relaxed);
    }
    /// Refused for lack of a free slot.
    pub fn busy(&self) {
        self.busy.fetch_add(1, Relaxed);
    }
    /// A reply was published.
    pub fn replied(&self) {
        self.replies.fetch_add(1, Relaxed);
    }
    /// A message was dropped.
    pub fn dropped(&self, why: Drop) {
        self.dropped[why as usize].fetch_add(1, Relaxed);
    }
    /// The count for one drop reason.
    pub fn dropped_count(&self, why: Drop) -> u64 {
        self.dropped[why as usize].load(Relaxed)
    }

    /// A JSON snapshot.
    pub fn snapshot(&self) -> Map<String, Value> {
        let dropped: Map<String, Value> = DROPS
            .iter()
            .map(|(d, name)| {
                (
                    name.to_string(),
                    json!(self.dropped[*d as usize].load(Relaxed)),
                )
            })
            .collect();
        let Value::Object(m) = json!({
            "total": self.total.load(Relaxed),
            "ok": self.ok.load(Relaxed),
            "failed": self.failed.load(Relaxed),
            "filtered": self.filtered.load(Relaxed),
            "busy": self.busy.load(Relaxed),
            "replies": self.replies.load(Relaxed),
            "dropped": dropped,
        }) else {
            return Map::new();
        };
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_names_line_up() {
        for (i, (d, name)) in DROPS.iter().enumerate() {
            assert_eq!(*d as usize, i);
            assert_eq!(d.name(), *name);
        }
        use mco_core::security::SecurityError as S;
        for e in [
            S::Unsigned,
            S::Replay("x".into()),
            S::BadSignature("x".into()),
            S::Revoked("x".into()),
        ] {
            assert_eq!(Drop::from(&e).name(), e.reason(), "names agree with core");
        }
        assert!(Drop::Expired.is_security_check() && Drop::WrongCollective.is_security_check());
        assert!(Drop::Replay.is_security_check() && !Drop::Undecodable.is_security_check());
        let s = Stats::default();
        s.dropped(Drop::Expired);
        s.seen();
        let snap = s.snapshot();
        assert_eq!(snap["dropped"]["expired"], 1);
        assert_eq!(snap["total"], 1);
    }
}

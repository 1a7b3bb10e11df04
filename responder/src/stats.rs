//! Daemon counters, shown by `rpcutil daemon_stats`.
//!
//! Plain atomics: every request touches them, so no lock is taken.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde_json::{json, Map, Value};

/// Why a message was dropped without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
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
    /// A request that does not say which nodes it is for and where replies
    /// go, on a secure node.
    Unbound,
    /// A request signed for other nodes, or for another subject.
    WrongTarget,
    /// A request whose message asks for replies elsewhere than it was signed for.
    ReplyMismatch,
}

impl From<&mco_core::binding::BindingError> for DropReason {
    fn from(e: &mco_core::binding::BindingError) -> DropReason {
        use mco_core::binding::BindingError as B;
        match e {
            B::Unbound => DropReason::Unbound,
            B::WrongSubject { .. } | B::NotForThisNode { .. } => DropReason::WrongTarget,
            B::ReplyMismatch { .. } => DropReason::ReplyMismatch,
        }
    }
}

impl From<&mco_security::SecurityError> for DropReason {
    fn from(e: &mco_security::SecurityError) -> DropReason {
        use mco_security::SecurityError as S;
        match e {
            S::Unsigned => DropReason::Unsigned,
            S::BadCertificate(_) => DropReason::BadCertificate,
            S::UntrustedCertificate(_) => DropReason::UntrustedCertificate,
            S::NotYetValid(_) => DropReason::CertificateNotYetValid,
            S::Expired(_) => DropReason::CertificateExpired,
            S::Revoked(_) => DropReason::CertificateRevoked,
            S::BadSignature(_) => DropReason::BadSignature,
            S::NameMismatch { .. } => DropReason::NameMismatch,
            S::WrongPrincipal(_) => DropReason::WrongPrincipal,
            S::Replay(_) => DropReason::Replay,
        }
    }
}

const DROPS: [(DropReason, &str); 23] = [
    (DropReason::Oversized, "oversized"),
    (DropReason::Undecodable, "undecodable"),
    (DropReason::BadVersion, "bad_version"),
    (DropReason::WrongKind, "wrong_kind"),
    (DropReason::Expired, "expired"),
    (DropReason::WrongCollective, "wrong_collective"),
    (DropReason::BadFilter, "bad_filter"),
    (DropReason::NoReplyTo, "no_reply_to"),
    (DropReason::Unsigned, "unsigned"),
    (DropReason::BadCertificate, "bad_certificate"),
    (DropReason::UntrustedCertificate, "untrusted_certificate"),
    (
        DropReason::CertificateNotYetValid,
        "certificate_not_yet_valid",
    ),
    (DropReason::CertificateExpired, "certificate_expired"),
    (DropReason::CertificateRevoked, "certificate_revoked"),
    (DropReason::BadSignature, "bad_signature"),
    (DropReason::NameMismatch, "name_mismatch"),
    (DropReason::WrongPrincipal, "wrong_principal"),
    (DropReason::Replay, "replay"),
    (DropReason::TtlTooLong, "ttl_too_long"),
    (DropReason::ReplayCacheFull, "replay_cache_full"),
    (DropReason::Unbound, "unbound"),
    (DropReason::WrongTarget, "wrong_target"),
    (DropReason::ReplyMismatch, "reply_mismatch"),
];

impl DropReason {
    /// The counter's name.
    pub fn name(self) -> &'static str {
        DROPS[self as usize].1
    }

    /// Whether this is a failed check of ARCHITECTURE.md §7 (certificate, signature, caller, TTL,
    /// collective, replay) rather than a message that is malformed or not for us; a secure node
    /// logs these as warnings.
    pub fn is_security_check(self) -> bool {
        match self {
            DropReason::Oversized
            | DropReason::Undecodable
            | DropReason::BadVersion
            | DropReason::WrongKind
            | DropReason::BadFilter
            | DropReason::NoReplyTo => false,
            DropReason::Expired
            | DropReason::WrongCollective
            | DropReason::Unsigned
            | DropReason::BadCertificate
            | DropReason::UntrustedCertificate
            | DropReason::CertificateNotYetValid
            | DropReason::CertificateExpired
            | DropReason::CertificateRevoked
            | DropReason::BadSignature
            | DropReason::NameMismatch
            | DropReason::WrongPrincipal
            | DropReason::Replay
            | DropReason::TtlTooLong
            | DropReason::ReplayCacheFull
            | DropReason::Unbound
            | DropReason::WrongTarget
            | DropReason::ReplyMismatch => true,
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
    pub fn dropped(&self, why: DropReason) {
        self.dropped[why as usize].fetch_add(1, Relaxed);
    }
    /// The count for one drop reason.
    pub fn dropped_count(&self, why: DropReason) -> u64 {
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
        use mco_security::SecurityError as S;
        for e in [
            S::Unsigned,
            S::Replay("x".into()),
            S::BadSignature("x".into()),
            S::Revoked("x".into()),
        ] {
            assert_eq!(
                DropReason::from(&e).name(),
                e.reason(),
                "names agree with core"
            );
        }
        assert!(
            DropReason::Expired.is_security_check()
                && DropReason::WrongCollective.is_security_check()
        );
        assert!(
            DropReason::Replay.is_security_check() && !DropReason::Undecodable.is_security_check()
        );
        let s = Stats::default();
        s.dropped(DropReason::Expired);
        s.seen();
        let snap = s.snapshot();
        assert_eq!(snap["dropped"]["expired"], 1);
        assert_eq!(snap["total"], 1);
    }
}

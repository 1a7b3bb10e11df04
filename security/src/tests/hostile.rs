//! The trust store against input chosen by an attacker: garbage and
//! oversized certificates, weak keys, non-canonical signatures, and floods
//! that must not grow memory before anything is authenticated.

use super::*;

/// A public key given as raw bytes, to put any point (a weak one) in a certificate.
struct RawKey(Vec<u8>);

impl rcgen::PublicKeyData for RawKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &PKCS_ED25519
    }
}

fn setup() -> (tempfile::TempDir, Ca, TrustStore, Credentials) {
    let dir = tempfile::tempdir().unwrap();
    let ca1 = ca("collective CA");
    let ca_path = write(dir.path(), "ca.pem", &ca1.pem);
    let trust = TrustStore::load(&ca_path, None).unwrap().with_memo();
    let alice = creds(
        dir.path(),
        &issue(&ca1, "user:alice", 2020, 2040, 1),
        "alice",
    );
    (dir, ca1, trust, alice)
}

#[test]
fn oversized_certificates_are_refused_before_parsing_and_never_remembered() {
    let (_dir, _ca, trust, alice) = setup();
    let mut env = alice.seal(Kind::Request, b"body".to_vec());
    env.cert = vec![0x30; MAX_CERT_LEN + 1];
    let err = trust.verify(&env, NOW).unwrap_err();
    assert!(
        matches!(&err, SecurityError::BadCertificate(m) if m.contains("bound")),
        "{err}"
    );
    assert_eq!(trust.cache_sizes(), (0, 0), "nothing remembered");
}

#[test]
fn a_flood_of_distinct_garbage_certificates_stays_bounded() {
    let (_dir, _ca, trust, alice) = setup();
    let good = alice.seal(Kind::Request, b"body".to_vec());
    for i in 0..(REFUSED_LIMIT * 3) as u32 {
        let mut env = good.clone();
        // Just under the size bound, each different.
        env.cert = vec![0x42; MAX_CERT_LEN];
        env.cert[..4].copy_from_slice(&i.to_be_bytes());
        assert!(trust.verify(&env, NOW).is_err());
    }
    let (good_n, refused_n) = trust.cache_sizes();
    assert_eq!(good_n, 0);
    assert!(
        refused_n <= REFUSED_LIMIT,
        "{refused_n} refused certificates kept"
    );
    // The real certificate still verifies, and is remembered.
    assert_eq!(trust.verify(&good, NOW).unwrap().name, "user:alice");
    assert_eq!(trust.cache_sizes().0, 1);
}

#[test]
fn the_memo_keeps_digests_and_still_needs_the_same_bytes() {
    let (_dir, _ca, trust, alice) = setup();
    let env = alice.seal(Kind::Request, b"the body".to_vec());
    assert!(trust.verify(&env, NOW).is_ok());
    assert!(trust.verify(&env, NOW).is_ok(), "a memo hit");
    let mut other = env.clone();
    other.body = b"the bodY".to_vec();
    assert!(matches!(
        trust.verify(&other, NOW),
        Err(SecurityError::BadSignature(_))
    ));
    for i in 0..(MEMO_LIMIT * 2) {
        let e = alice.seal(Kind::Request, format!("body {i}").into_bytes());
        assert!(trust.verify(&e, NOW).is_ok());
    }
    assert!(trust.memo_len() <= MEMO_LIMIT);
}

#[test]
fn certificates_with_weak_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca1 = ca("collective CA");
    let ca_path = write(dir.path(), "ca.pem", &ca1.pem);
    let trust = TrustStore::load(&ca_path, None).unwrap();
    let alice = creds(
        dir.path(),
        &issue(&ca1, "user:alice", 2020, 2040, 1),
        "alice",
    );
    // The identity point (y = 1): of small order, so any signature with
    // R = identity and S = 0 verifies under the cofactorless equation.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "user:mallory");
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2040, 1, 1);
    let cert = p
        .signed_by(&RawKey(weak.to_vec()), &ca1.issuer)
        .unwrap()
        .der()
        .to_vec();
    let mut env = alice.seal(Kind::Request, b"anything".to_vec());
    env.cert = cert;
    env.sig = weak.iter().chain([0u8; 32].iter()).copied().collect();
    let err = trust.verify(&env, NOW).unwrap_err();
    assert!(matches!(err, SecurityError::BadCertificate(_)), "{err}");
    // In a batch too.
    let good = alice.seal(Kind::Request, b"fine".to_vec());
    let out = trust.verify_many(&[&env, &good], NOW);
    assert!(out[0].is_err() && out[1].is_ok(), "{out:?}");
}

#[test]
fn signatures_with_a_small_order_or_non_canonical_r_are_refused_both_ways() {
    let (_dir, _ca, trust, alice) = setup();
    let good = alice.seal(Kind::Request, b"fine".to_vec());
    let sig = Signature::from_slice(&good.sig).unwrap();
    assert!(strict_r_ok(&sig));
    let mut identity = [0u8; 64];
    identity[0] = 1;
    assert!(!strict_r_ok(&Signature::from_bytes(&identity)));
    let mut minus_identity = identity;
    minus_identity[31] |= 0x80;
    assert!(!strict_r_ok(&Signature::from_bytes(&minus_identity)));
    let mut non_canonical = [0xffu8; 64];
    non_canonical[0] = 0xee;
    non_canonical[31] = 0x7f;
    non_canonical[32..].fill(0);
    assert!(!strict_r_ok(&Signature::from_bytes(&non_canonical)));
    for bad in [identity, minus_identity, non_canonical] {
        let mut env = good.clone();
        env.sig = bad.to_vec();
        assert!(trust.verify(&env, NOW).is_err());
        let out = trust.verify_many(&[&env, &good], NOW);
        assert!(out[0].is_err() && out[1].is_ok(), "{out:?}");
    }
}

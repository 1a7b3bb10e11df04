//! Tests of signing and verification with certificates made on the spot.

use std::path::Path;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
    PKCS_ED25519,
};

use super::*;
use mco_core::wire::Kind;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(cn: &str) -> Ca {
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let pem = p.self_signed(&key).unwrap().pem();
    Ca {
        issuer: Issuer::new(p, key),
        pem,
    }
}

/// Issues `name` valid over `[from, to]` years with serial `serial`; returns (cert, key) PEM.
fn issue(ca: &Ca, name: &str, from: i32, to: i32, serial: u64) -> (String, String) {
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.not_before = date_time_ymd(from, 1, 1);
    p.not_after = date_time_ymd(to, 1, 1);
    p.serial_number = Some(SerialNumber::from(serial));
    (
        p.signed_by(&key, &ca.issuer).unwrap().pem(),
        key.serialize_pem(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn creds(dir: &Path, pair: &(String, String), tag: &str) -> Credentials {
    let c = write(dir, &format!("{tag}.pem"), &pair.0);
    let k = write(dir, &format!("{tag}.key"), &pair.1);
    Credentials::load(&c, &k).unwrap()
}

const NOW: i64 = 1_800_000_000; // 2027

#[test]
fn the_whole_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca1 = ca("collective CA");
    let ca2 = ca("collective CA");
    let ca_path = write(d, "ca.pem", &ca1.pem);

    let alice = creds(d, &issue(&ca1, "user:alice", 2020, 2040, 1), "alice");
    let expired = creds(d, &issue(&ca1, "user:old", 2010, 2020, 2), "old");
    let future = creds(d, &issue(&ca1, "user:new", 2030, 2040, 3), "new");
    let revoked = creds(d, &issue(&ca1, "user:gone", 2020, 2040, 4), "gone");
    let stranger = creds(d, &issue(&ca2, "user:alice", 2020, 2040, 1), "stranger");

    let crl = CertificateRevocationListParams {
        this_update: date_time_ymd(2024, 1, 1),
        next_update: date_time_ymd(2035, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(4u64),
            revocation_time: date_time_ymd(2024, 1, 1),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca1.issuer)
    .unwrap();
    let crl_path = write(d, "ca.crl", &crl.pem().unwrap());
    let trust = TrustStore::load(&ca_path, Some(&crl_path)).unwrap();

    let body = b"the exact bytes".to_vec();
    let good = alice.seal(Kind::Request, body.clone());
    let p = trust.verify(&good, NOW).unwrap();
    assert_eq!(p.name, "user:alice");
    assert!(p.is_user());
    // Cached: the same answer the second time.
    assert_eq!(trust.verify(&good, NOW).unwrap().name, "user:alice");

    let mut tampered = good.clone();
    tampered.body[0] ^= 1;
    assert_eq!(
        trust.verify(&tampered, NOW).unwrap_err().reason(),
        "bad_signature"
    );
    let mut bad_sig = good.clone();
    bad_sig.sig[10] ^= 1;
    assert_eq!(
        trust.verify(&bad_sig, NOW).unwrap_err().reason(),
        "bad_signature"
    );
    let mut unsigned = good.clone();
    unsigned.sig.clear();
    assert_eq!(
        trust.verify(&unsigned, NOW).unwrap_err(),
        SecurityError::Unsigned
    );
    let mut garbage_cert = good.clone();
    garbage_cert.cert = vec![1, 2, 3];
    assert_eq!(
        trust.verify(&garbage_cert, NOW).unwrap_err().reason(),
        "bad_certificate"
    );

    let e = |c: &Credentials| {
        trust
            .verify(&c.seal(Kind::Request, body.clone()), NOW)
            .unwrap_err()
            .reason()
    };
    assert_eq!(e(&expired), "certificate_expired");
    assert_eq!(e(&future), "certificate_not_yet_valid");
    assert_eq!(e(&revoked), "certificate_revoked");
    assert_eq!(e(&stranger), "untrusted_certificate");

    // Many at once: the batch path gives each envelope the answer it would
    // get alone, whether the batch holds a bad one or not.
    let fresh_trust = TrustStore::load(&ca_path, Some(&crl_path)).unwrap();
    let bob = creds(d, &issue(&ca1, "user:bob", 2020, 2040, 11), "bob");
    let all_good = [
        alice.seal(Kind::Request, body.clone()),
        bob.seal(Kind::Request, body.clone()),
    ];
    let refs: Vec<&Envelope> = all_good.iter().collect();
    let names: Vec<String> = fresh_trust
        .verify_many(&refs, NOW)
        .into_iter()
        .map(|r| r.unwrap().name.clone())
        .collect();
    assert_eq!(names, ["user:alice", "user:bob"]);
    let mixed = [
        alice.seal(Kind::Request, body.clone()),
        tampered.clone(),
        expired.seal(Kind::Request, body.clone()),
        revoked.seal(Kind::Request, body.clone()),
        stranger.seal(Kind::Request, body.clone()),
        unsigned.clone(),
        bob.seal(Kind::Request, body.clone()),
    ];
    let refs: Vec<&Envelope> = mixed.iter().collect();
    let fresh_trust = TrustStore::load(&ca_path, Some(&crl_path)).unwrap();
    let got: Vec<&str> = fresh_trust
        .verify_many(&refs, NOW)
        .iter()
        .map(|r| match r {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        })
        .collect();
    assert_eq!(
        got,
        [
            "ok",
            "bad_signature",
            "certificate_expired",
            "certificate_revoked",
            "untrusted_certificate",
            "unsigned",
            "ok"
        ]
    );
    // Expiry is checked on the batch path too.
    let late = [
        alice.seal(Kind::Request, body.clone()),
        bob.seal(Kind::Request, body.clone()),
    ];
    let refs: Vec<&Envelope> = late.iter().collect();
    assert!(fresh_trust
        .verify_many(&refs, 2_300_000_000)
        .iter()
        .all(|r| r.as_ref().unwrap_err().reason() == "certificate_expired"));

    // A key that does not belong to the certificate is refused at load.
    let other = issue(&ca1, "user:x", 2020, 2040, 9);
    let c = write(d, "x.pem", &other.0);
    let k = write(d, "y.key", &issue(&ca1, "user:y", 2020, 2040, 10).1);
    assert!(Credentials::load(&c, &k).is_err());

    // A CRL from another CA is refused.
    let foreign = CertificateRevocationListParams {
        this_update: date_time_ymd(2024, 1, 1),
        next_update: date_time_ymd(2035, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca2.issuer)
    .unwrap();
    let fp = write(d, "foreign.crl", &foreign.pem().unwrap());
    assert!(TrustStore::load(&ca_path, Some(&fp)).is_err());
}

#[test]
fn known_certificates_skip_only_the_ca_check() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca1 = ca("collective CA");
    let ca_path = write(d, "ca.pem", &ca1.pem);
    let node = creds(d, &issue(&ca1, "node:web-1", 2020, 2040, 7), "web");
    let me = creds(d, &issue(&ca1, "user:alice", 2020, 2040, 8), "alice");
    let secret = me.derive_secret("known certificates");
    let body = b"reply".to_vec();
    let env = node.seal(Kind::Reply, body.clone());

    let first = TrustStore::load(&ca_path, None).unwrap();
    assert!(!first.learned_any());
    first.verify(&env, NOW).unwrap();
    assert!(first.learned_any());
    let file = first.export_known(&secret, NOW);
    assert!(!first.learned_any());

    // A new process loads the file: the certificate is known, the message
    // signature is still checked.
    let second = TrustStore::load(&ca_path, None).unwrap();
    assert_eq!(second.import_known(&file, &secret), Ok(1));
    assert_eq!(second.verify(&env, NOW).unwrap().name, "node:web-1");
    assert!(!second.learned_any(), "nothing new was checked");
    let mut forged = env.clone();
    forged.body[0] ^= 1;
    assert_eq!(
        second.verify(&forged, NOW).unwrap_err().reason(),
        "bad_signature"
    );
    // Validity is still checked for a known certificate.
    assert_eq!(
        second.verify(&env, 2_300_000_000).unwrap_err().reason(),
        "certificate_expired"
    );

    // Altered, another owner's, or another CA's files are refused.
    let mut altered = file.clone();
    altered[60] ^= 1;
    assert!(TrustStore::load(&ca_path, None)
        .unwrap()
        .import_known(&altered, &secret)
        .is_err());
    let other = me.derive_secret("something else");
    assert!(TrustStore::load(&ca_path, None)
        .unwrap()
        .import_known(&file, &other)
        .is_err());
    let ca2 = ca("collective CA");
    let ca2_path = write(d, "ca2.pem", &ca2.pem);
    assert!(TrustStore::load(&ca2_path, None)
        .unwrap()
        .import_known(&file, &secret)
        .is_err());

    // A known certificate revoked since is refused: the CRL is checked every time.
    let crl = CertificateRevocationListParams {
        this_update: date_time_ymd(2024, 1, 1),
        next_update: date_time_ymd(2035, 1, 1),
        crl_number: SerialNumber::from(2u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(7u64),
            revocation_time: date_time_ymd(2024, 1, 1),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca1.issuer)
    .unwrap();
    let crl_path = write(d, "ca.crl", &crl.pem().unwrap());
    let third = TrustStore::load(&ca_path, Some(&crl_path)).unwrap();
    assert_eq!(third.import_known(&file, &secret), Ok(1));
    assert_eq!(
        third.verify(&env, NOW).unwrap_err().reason(),
        "certificate_revoked"
    );
    assert_eq!(
        third.verify_many(&[&env, &env], NOW)[0]
            .as_ref()
            .unwrap_err()
            .reason(),
        "certificate_revoked"
    );
}

#[test]
fn sealing_makes_the_rfc_8032_signature() {
    use ed25519_dalek::Signer;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca1 = ca("collective CA");
    let ca_path = write(d, "ca.pem", &ca1.pem);
    let node = creds(d, &issue(&ca1, "node:web-1", 2020, 2040, 7), "web");
    for body in [Vec::new(), b"reply".to_vec(), vec![7u8; 5000]] {
        let env = node.seal(Kind::Reply, body.clone());
        // The expansion derived once at load gives what `SigningKey::sign`
        // gives, deriving it again each time.
        assert_eq!(env.sig, node.key.sign(&body).to_bytes().to_vec());
        let trust = TrustStore::load(&ca_path, None).unwrap();
        assert_eq!(trust.verify(&env, NOW).unwrap().name, "node:web-1");
    }
}

#[test]
fn known_keys_are_prepared_lazily_and_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca1 = ca("collective CA");
    let ca_path = write(d, "ca.pem", &ca1.pem);
    let nodes: Vec<Credentials> = (0..3)
        .map(|i| {
            creds(
                d,
                &issue(&ca1, &format!("node:web-{i}"), 2020, 2040, 10 + i),
                &format!("web{i}"),
            )
        })
        .collect();
    let me = creds(d, &issue(&ca1, "user:alice", 2020, 2040, 8), "alice");
    let secret = me.derive_secret("known certificates");
    let envs: Vec<Envelope> = nodes
        .iter()
        .map(|n| n.seal(Kind::Reply, n.name().as_bytes().to_vec()))
        .collect();
    let first = TrustStore::load(&ca_path, None).unwrap();
    let refs: Vec<&Envelope> = envs.iter().collect();
    assert!(first.verify_many(&refs, NOW).iter().all(Result::is_ok));
    let file = first.export_known(&secret, NOW);

    // Loaded but not prepared: exporting again gives the same entries.
    let second = TrustStore::load(&ca_path, None).unwrap();
    assert_eq!(second.import_known(&file, &secret), Ok(3));
    assert_eq!(
        known::decode(
            &second.export_known(&secret, NOW),
            first.ca_key.as_bytes(),
            &secret
        ),
        known::decode(&file, first.ca_key.as_bytes(), &secret)
    );
    // Prepared ahead (as the client does on a spare thread) or on first use,
    // every signature is still checked, in a batch or alone.
    second.warm_known();
    let mut tampered = envs[1].clone();
    tampered.body[0] ^= 1;
    let out = second.verify_many(&[&envs[0], &tampered, &envs[2]], NOW);
    assert_eq!(out[0].as_ref().unwrap().name, "node:web-0");
    assert_eq!(out[1].as_ref().unwrap_err().reason(), "bad_signature");
    assert_eq!(out[2].as_ref().unwrap().name, "node:web-2");
    let third = TrustStore::load(&ca_path, None).unwrap();
    assert_eq!(third.import_known(&file, &secret), Ok(3));
    assert_eq!(
        third.verify(&tampered, NOW).unwrap_err().reason(),
        "bad_signature"
    );
    assert_eq!(third.verify(&envs[1], NOW).unwrap().name, "node:web-1");
    // A reply whose body names another node is signed by the right key but
    // proves only the certificate's name.
    let swapped = Envelope {
        cert: envs[0].cert.clone(),
        ..envs[1].clone()
    };
    assert_eq!(
        third.verify(&swapped, NOW).unwrap_err().reason(),
        "bad_signature"
    );
    assert!(!third.learned_any(), "no CA check was needed");

    // Prepared for the nodes a request goes to: only their keys.
    let fourth = TrustStore::load(&ca_path, None).unwrap();
    assert_eq!(fourth.import_known(&file, &secret), Ok(3));
    fourth.warm_known_matching(|name| name == "node:web-0" || name == "node:elsewhere");
    let prepared: Vec<String> = fourth
        .imported
        .read()
        .unwrap()
        .values()
        .filter(|imp| imp.principal.get().is_some())
        .map(|imp| imp.entry.name.clone())
        .collect();
    assert_eq!(prepared, ["node:web-0"]);
    assert!(fourth.verify_many(&refs, NOW).iter().all(Result::is_ok));
}

#[test]
fn a_known_entry_whose_key_is_no_curve_point_is_checked_against_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca1 = ca("collective CA");
    let ca_path = write(d, "ca.pem", &ca1.pem);
    let node = creds(d, &issue(&ca1, "node:web-1", 2020, 2040, 7), "web");
    let me = creds(d, &issue(&ca1, "user:alice", 2020, 2040, 8), "alice");
    let secret = me.derive_secret("known certificates");
    let env = node.seal(Kind::Reply, b"reply".to_vec());
    let trust = TrustStore::load(&ca_path, None).unwrap();
    let bad_key = (0..=255u8)
        .map(|b| [b; 32])
        .find(|k| VerifyingKey::from_bytes(k).is_err())
        .unwrap();
    let entry = known::Entry {
        digest: cert_digest(&env.cert),
        key: bad_key,
        not_before: 0,
        not_after: i64::MAX,
        serial: vec![7],
        name: "node:web-1".into(),
    };
    let file = known::encode(trust.ca_key.as_bytes(), &[entry], &secret);
    assert_eq!(trust.import_known(&file, &secret), Ok(1));
    trust.warm_known();
    assert_eq!(trust.verify(&env, NOW).unwrap().name, "node:web-1");
    assert!(trust.learned_any(), "checked against the CA");
    assert_eq!(
        trust.verify_many(&[&env, &env], NOW)[1]
            .as_ref()
            .unwrap()
            .name,
        "node:web-1"
    );
}

mod hostile;

/// A CRL of `ca` numbered `number` revoking `serials`.
fn crl_of(ca: &Ca, number: u64, serials: &[u64]) -> String {
    CertificateRevocationListParams {
        this_update: date_time_ymd(2024, 1, number as u8),
        next_update: date_time_ymd(2035, 1, 1),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: date_time_ymd(2024, 1, 1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.issuer)
    .unwrap()
    .pem()
    .unwrap()
}

#[test]
fn verified_entries_skip_the_signature_only_for_the_same_bytes_and_never_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca1 = ca("collective CA");
    let ca_path = write(d, "ca.pem", &ca1.pem);
    let crl_path = write(d, "ca.crl", &crl_of(&ca1, 1, &[]));
    let n1 = creds(d, &issue(&ca1, "node:n1", 2020, 2040, 11), "n1");
    let n2 = creds(d, &issue(&ca1, "node:n2", 2020, 2040, 12), "n2");
    let me = creds(d, &issue(&ca1, "user:me", 2020, 2040, 13), "me");
    let secret = me.derive_secret("verified registry entries");
    let known_secret = me.derive_secret("known certificates");
    let e1 = n1.seal(Kind::Inventory, br#"{"n":1}"#.to_vec());
    let e2 = n2.seal(Kind::Inventory, br#"{"n":2}"#.to_vec());
    let names = |t: &TrustStore, envs: &[&Envelope]| -> Vec<Result<String, &'static str>> {
        t.verify_entries(envs, NOW)
            .into_iter()
            .map(|r| r.map_err(|e| e.reason()))
            .collect()
    };
    let good = vec![Ok("node:n1".to_string()), Ok("node:n2".to_string())];

    let first = TrustStore::load(&ca_path, Some(&crl_path)).unwrap();
    assert_eq!(names(&first, &[&e1, &e2]), good);
    let known = first.export_known(&known_secret, NOW);
    let file = first
        .export_verified(&secret)
        .expect("new digests to write");
    assert!(
        first.export_verified(&secret).is_none(),
        "nothing new since"
    );

    // The next process, with both files, gives the same answers.
    let second = TrustStore::load(&ca_path, Some(&crl_path)).unwrap();
    assert_eq!(second.import_known(&known, &known_secret), Ok(2));
    assert_eq!(second.import_verified(&file, &secret), Ok(2));
    assert_eq!(names(&second, &[&e1, &e2]), good);
    // Another body under a remembered signature is checked in full, and refused.
    let mut forged = e1.clone();
    forged.body = br#"{"n":9}"#.to_vec();
    assert_eq!(names(&second, &[&forged, &e2])[0], Err("bad_signature"));
    // Another certificate under the same body and signature: checked in full, refused.
    let mut swapped = e1.clone();
    swapped.cert = e2.cert.clone();
    assert_eq!(names(&second, &[&swapped]), vec![Err("bad_signature")]);

    // An altered file, one written with another key or for another CA, is refused whole.
    let mut altered = file.clone();
    altered[40] ^= 1;
    let third = TrustStore::load(&ca_path, Some(&crl_path)).unwrap();
    assert!(third.import_verified(&altered, &secret).is_err());
    assert!(third.import_verified(&file, &known_secret).is_err());
    assert!(third
        .import_verified(&file[..file.len() - 1], &secret)
        .is_err());
    let other_ca = write(d, "other.pem", &ca("collective CA").pem);
    assert!(TrustStore::load(&other_ca, None)
        .unwrap()
        .import_verified(&file, &secret)
        .is_err());

    // A remembered entry of a node revoked since is refused: revocation is checked every time.
    assert_eq!(
        second.apply_crl(crl_of(&ca1, 2, &[11]).as_bytes()),
        Ok(true)
    );
    assert_eq!(
        names(&second, &[&e1, &e2]),
        vec![Err("certificate_revoked"), Ok("node:n2".to_string())]
    );
    // And an expired one: validity too.
    assert_eq!(
        second.verify_entries(&[&e2], 2_300_000_000)[0]
            .as_ref()
            .unwrap_err()
            .reason(),
        "certificate_expired"
    );
}

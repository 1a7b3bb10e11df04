//! Known-certificates files (`TrustStore::import_known`): the cache of
//! checked certificates a client keeps between runs. The file is
//! authenticated with an HMAC keyed by the owner's private key; this target
//! computes that HMAC over the input, so the parser behind it is reached.
//! An accepted file must not make a good message fail or a bad one pass,
//! and what a store exports it must import again.
//!
//! The input is the file without its HMAC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_core::wire::Kind;
use mco_fuzz::{hmac_sha256, now_s, on_worker_stack, pki};
use mco_security::TrustStore;

const SECRET: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    on_worker_stack(|| check(data));
});

fn check(data: &[u8]) {
    let pki = pki();
    let mut file = data.to_vec();
    file.extend_from_slice(&hmac_sha256(&SECRET, data));
    let trust = TrustStore::load(&pki.ca_path, None).unwrap();
    let Ok(n) = trust.import_known(&file, &SECRET) else {
        return;
    };
    // The file is trusted (its owner wrote it), so its entries decide for
    // the certificates they name; messages are checked against them.
    let good = pki.user.seal(Kind::Request, b"body".to_vec());
    let _ = trust.verify(&good, now_s());
    let _ = trust.verify_many(&[&good, &good], now_s());
    trust.warm_known();
    // What it exports (entries still valid, and anything it learned), it
    // imports again.
    let exported = trust.export_known(&SECRET, now_s());
    let again = TrustStore::load(&pki.ca_path, None).unwrap();
    let m = again
        .import_known(&exported, &SECRET)
        .expect("an exported file imports");
    assert!(m <= n + 1, "{m} entries from {n} imported and one learned");
}

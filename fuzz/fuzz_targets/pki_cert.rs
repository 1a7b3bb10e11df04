//! Certificates from the bus: every signed message carries its signer's
//! certificate (DER), which `TrustStore::verify` parses and checks against
//! the CA before anything else; `TrustStore::verify_many` (the client's
//! batches) does the same for many at once; `mco pki show` summarises any
//! file it is given (`mco_pki::show`).
//!
//! The input is the certificate's DER.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_core::wire::{Envelope, Kind};
use mco_fuzz::{now_s, on_worker_stack, pki};
use mco_security::TrustStore;

fuzz_target!(|der: &[u8]| {
    on_worker_stack(|| check(der));
});

fn check(der: &[u8]) {
    let pki = pki();
    let mut env = pki.user.seal(Kind::Request, b"body".to_vec());
    let genuine = env.cert == der;
    env.cert = der.to_vec();
    // A fresh store each time: its cache must not decide for the input.
    let trust = TrustStore::load(&pki.ca_path, None).unwrap().with_memo();
    let alone = trust.verify(&env, now_s());
    if genuine {
        assert!(
            alone.is_ok(),
            "alice's own certificate verifies her signature"
        );
    }
    if let Ok(p) = &alone {
        // Another encoding of her certificate may do (trailing bytes are
        // ignored), but nobody else's.
        assert_eq!(p.name, "user:alice");
    }
    // Again, from the cache and the memo.
    assert_eq!(trust.verify(&env, now_s()).is_ok(), alone.is_ok());
    let fresh = TrustStore::load(&pki.ca_path, None).unwrap();
    let good = pki.user.seal(Kind::Request, b"other".to_vec());
    let batch = fresh.verify_many(&[&env, &good, &env], now_s());
    assert_eq!(batch.len(), 3);
    assert_eq!(
        batch[0].is_ok(),
        alone.is_ok(),
        "a batch decides as one by one"
    );
    assert!(batch[1].is_ok(), "a bad neighbour condemned a good message");
    let _ = mco_pki::show(der);
    let _ = Envelope::decode(&env.encode(), usize::MAX, Kind::Request).unwrap();
}

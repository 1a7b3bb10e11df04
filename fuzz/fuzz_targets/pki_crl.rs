//! Certificate revocation lists: `TrustStore::load` with a CRL (what every
//! responder and client does at start, and a provisioned node with the CRL
//! it is given), then `TrustStore::verify` against it; and
//! `mco_pki::show`.
//!
//! The input is the CRL file's bytes (DER or PEM).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_core::wire::Kind;
use mco_fuzz::{now_s, on_worker_stack, pki};
use mco_security::{SecurityError, TrustStore};

fuzz_target!(|data: &[u8]| {
    on_worker_stack(|| check(data));
});

fn check(data: &[u8]) {
    let pki = pki();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data).unwrap();
    let _ = mco_pki::show(data);
    let Ok(trust) = TrustStore::load(&pki.ca_path, Some(file.path())) else {
        return;
    };
    let env = pki.user.seal(Kind::Request, b"body".to_vec());
    match trust.verify(&env, now_s()) {
        Ok(p) => assert_eq!(p.name, "user:alice"),
        Err(SecurityError::Revoked(name)) => assert_eq!(name, "user:alice"),
        Err(e) => panic!("a CRL the store accepted made a good message fail: {e}"),
    }
}

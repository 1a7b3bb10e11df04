//! Certificate signing requests, which reach the CA from nodes being
//! provisioned: `inspect_csr` (the provisioner's check), `Ca::sign_csr`
//! (the CA agent and `mco pki sign`) and `mco_pki::show`.
//!
//! The first byte picks the shape: even, the rest is the request's DER,
//! armoured as PEM here (so mutations reach the ASN.1); odd, the rest is
//! the text as sent, PEM or not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mco_fuzz::{on_worker_stack, pem, pki};
use mco_pki::{inspect_csr, SignPolicy};

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let text = if shape % 2 == 0 {
        pem("CERTIFICATE REQUEST", rest)
    } else {
        String::from_utf8_lossy(rest).into_owned()
    };
    on_worker_stack(|| check(&text));
});

fn check(text: &str) {
    let inspected = inspect_csr(text);
    let policy = SignPolicy {
        force: true,
        reuse_same_key: true,
        ..SignPolicy::default()
    };
    let signed = pki().ca.sign_csr(text, &policy);
    if let Ok(issued) = &signed {
        let (identity, _key) = inspected
            .as_ref()
            .expect("a CSR the CA signs passes the provisioner's inspection");
        assert_eq!(*identity, issued.kind.identity(&issued.name));
        assert!(mco_pki::show(issued.cert_pem.as_bytes()).is_ok());
    }
    let _ = mco_pki::show(text.as_bytes());
}

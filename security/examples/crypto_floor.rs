//! The floor under a signed 1,000-node RPC on this machine: what 1,000 Ed25519 signatures (one
//! per replying node) and their batch verification (the client) cost on one core, with a
//! 300-byte body like a reply's, and the same signatures with nonces a responder prepared ahead
//! of time (`Presigner`); then the cost per signature of batches of each size. Best of 7.
//!
//! ```text
//! cargo run --release -p mco-security --example crypto_floor
//! ```

use std::time::Instant;

use ed25519_dalek::hazmat::ExpandedSecretKey;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use mco_security::Presigner;

fn main() {
    let n = 1000;
    let keys: Vec<SigningKey> = (0..n)
        .map(|_| SigningKey::generate(&mut rand_core::OsRng))
        .collect();
    let verifying: Vec<VerifyingKey> = keys.iter().map(SigningKey::verifying_key).collect();
    let body = vec![7u8; 300];
    let msgs: Vec<&[u8]> = (0..n).map(|_| &body[..]).collect();
    let raw: Vec<[u8; 32]> = verifying.iter().map(VerifyingKey::to_bytes).collect();
    let expanded: Vec<ExpandedSecretKey> = keys
        .iter()
        .map(|k| ExpandedSecretKey::from(k.as_bytes()))
        .collect();
    let presigner = Presigner::start(n, || ()).expect("a thread");
    let (mut sign, mut batch, mut single, mut parse) = (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    let mut prepared = f64::MAX;
    for _ in 0..7 {
        while presigner.ready() < n {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let t = Instant::now();
        let sigs: Vec<Signature> = expanded
            .iter()
            .zip(&verifying)
            .map(|(k, v)| {
                let (sig, ready) = presigner.sign(k, v, &body);
                assert!(ready, "the pool ran dry");
                sig
            })
            .collect();
        prepared = prepared.min(t.elapsed().as_secs_f64());
        ed25519_dalek::verify_batch(&msgs, &sigs, &verifying).expect("good signatures");
        // A fresh client process turns each node's public key into a curve point once.
        let t = Instant::now();
        let parsed: Vec<VerifyingKey> = raw
            .iter()
            .map(|b| VerifyingKey::from_bytes(b).expect("a valid key"))
            .collect();
        parse = parse.min(t.elapsed().as_secs_f64());
        assert_eq!(parsed.len(), n);
        let t = Instant::now();
        let sigs: Vec<Signature> = keys.iter().map(|k| k.sign(&body)).collect();
        sign = sign.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        ed25519_dalek::verify_batch(&msgs, &sigs, &verifying).expect("good signatures");
        batch = batch.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for ((k, s), m) in verifying.iter().zip(&sigs).zip(&msgs) {
            k.verify_strict(m, s).expect("a good signature");
        }
        single = single.min(t.elapsed().as_secs_f64());
    }
    println!("| work for {n} replies, one core | ms |");
    println!("|---|---|");
    println!("| sign (the nodes) | {:.1} |", sign * 1e3);
    println!(
        "| sign with prepared nonces (the nodes' work during a call) | {:.1} |",
        prepared * 1e3
    );
    println!(
        "| decompress the nodes' public keys (a fresh client, once each) | {:.1} |",
        parse * 1e3
    );
    println!("| verify, one batch (the client) | {:.1} |", batch * 1e3);
    println!("| verify, one by one | {:.1} |", single * 1e3);
    println!(
        "| sign + decompress + batch verify: CPU signing adds to a 1,000-node RPC | {:.1} |",
        (sign + parse + batch) * 1e3
    );

    // On a two-core box the fleet's signing and the client's checking run at
    // once: what one core's signing costs while the other core works too.
    let per_thread: Vec<f64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut best = f64::MAX;
                    for _ in 0..15 {
                        let t = Instant::now();
                        for k in &keys {
                            std::hint::black_box(k.sign(&body));
                        }
                        best = best.min(t.elapsed().as_secs_f64());
                    }
                    best
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a signer"))
            .collect()
    });
    println!(
        "| sign, on each of two threads signing at once (best of 15) | {} |",
        per_thread
            .iter()
            .map(|t| format!("{:.1}", t * 1e3))
            .collect::<Vec<_>>()
            .join(" / ")
    );

    // The client checks replies in batches as they arrive; what a batch's
    // size does to the cost of each signature in it.
    println!();
    println!("| batch of | µs per signature |");
    println!("|---|---|");
    let sigs: Vec<Signature> = keys.iter().map(|k| k.sign(&body)).collect();
    for size in [1usize, 16, 32, 64, 95, 96, 128, 256, 1000] {
        let mut best = f64::MAX;
        for _ in 0..7 {
            let t = Instant::now();
            for start in (0..n - n % size).step_by(size) {
                let r = start..start + size;
                ed25519_dalek::verify_batch(&msgs[r.clone()], &sigs[r.clone()], &verifying[r])
                    .expect("good signatures");
            }
            best = best.min(t.elapsed().as_secs_f64() / (n - n % size) as f64);
        }
        println!("| {size} | {:.1} |", best * 1e6);
    }
}

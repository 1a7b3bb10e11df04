//! Measures how fast the client opens signed replies: one by one on a single
//! task, and the way `mco` does it, one task per reply across all cores.
//!
//! `cargo run --release -p mco-client --example verify_throughput -- 1000`

use std::sync::Arc;
use std::time::Instant;

use mco_client::verify::Opener;
use mco_core::pki::{Ca, CaOptions, IssueOptions, Kind};
use mco_core::security::{Credentials, TrustStore};
use mco_core::wire::{now_ms, ReplyBody, Status};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir()?;
    let ca = Ca::init(dir.path(), &CaOptions::default())?;
    let mut sealed = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("node-{i:04}");
        let issued = ca.issue(&name, Kind::Node, &IssueOptions::default())?;
        let key = issued
            .key_path
            .clone()
            .ok_or("the issued key was not written")?;
        let creds = Credentials::load(&issued.cert_path, &key)?;
        let body = ReplyBody {
            request_id: "r".into(),
            sender: name,
            status: Status::Ok,
            message: "OK".into(),
            data: serde_json::json!({"pong": now_ms()})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            time_ms: now_ms(),
            elapsed_us: 10,
        };
        sealed.push(bytes::Bytes::from(
            creds.seal(mco_core::Kind::Reply, body.encode()).encode(),
        ));
    }
    let trust = Arc::new(TrustStore::load(&dir.path().join("ca.pem"), None)?);
    let opener = Opener {
        trust: Some(trust),
        max_payload: 1 << 20,
    };
    // Warm the certificate cache, as a long-lived fleet would.
    for m in &sealed {
        opener.open(m).map_err(|e| format!("{e:?}"))?;
    }

    let t = Instant::now();
    for m in &sealed {
        opener.open(m).map_err(|e| format!("{e:?}"))?;
    }
    let sequential = t.elapsed();

    let rt = tokio::runtime::Runtime::new()?;
    let parallel = rt.block_on(async {
        let t = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        for m in sealed.clone() {
            let tx = tx.clone();
            let opener = opener.clone();
            tokio::spawn(async move {
                let _ = tx.send(opener.open(&m).is_ok()).await;
            });
        }
        drop(tx);
        let mut ok = 0;
        while let Some(r) = rx.recv().await {
            ok += usize::from(r);
        }
        assert_eq!(ok, n);
        t.elapsed()
    });
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("replies: {n}, cores: {cores}");
    println!(
        "sequential: {:.1} ms ({:.1} µs per reply)",
        sequential.as_secs_f64() * 1e3,
        sequential.as_secs_f64() * 1e6 / n as f64
    );
    println!("parallel:   {:.1} ms", parallel.as_secs_f64() * 1e3);
    Ok(())
}

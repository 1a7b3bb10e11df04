//! Measures how fast the client opens signed replies: one by one on a single
//! task, and the way `mco` does it, one task per reply across all cores.
//!
//! `cargo run --release -p mco-client --example verify_throughput -- 1000`

use std::sync::Arc;
use std::time::Instant;

use mco_client::verify::Opener;
use mco_core::wire::{now_ms, ReplyBody, Status};
use mco_pki::{Ca, CaOptions, IssueOptions, Kind};
use mco_security::{Credentials, TrustStore};

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
    // A fresh trust store, as in every new `mco` process: each node's
    // certificate is checked against the CA once, then cached.
    let ca = dir.path().join("ca.pem");
    let fresh = || -> Result<Opener, Box<dyn std::error::Error>> {
        Ok(Opener {
            trust: Some(Arc::new(TrustStore::load(&ca, None)?)),
            max_payload: 1 << 20,
            pins: None,
        })
    };
    let opener = fresh()?;
    let t = Instant::now();
    for m in &sealed {
        opener.open(m).map_err(|e| format!("{e:?}"))?;
    }
    let cold = t.elapsed();

    let t = Instant::now();
    for m in &sealed {
        opener.open(m).map_err(|e| format!("{e:?}"))?;
    }
    let sequential = t.elapsed();

    let rt = tokio::runtime::Runtime::new()?;
    let opener = fresh()?;
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
    let opener = fresh()?;
    // Replies checked in parallel tasks, `size` per batch.
    let in_batches = |size: usize| {
        rt.block_on(async {
            let t = Instant::now();
            let mut tasks = Vec::new();
            for chunk in sealed.chunks(size) {
                let opener = opener.clone();
                let chunk = chunk.to_vec();
                tasks.push(tokio::spawn(async move {
                    opener
                        .open_many(&chunk)
                        .iter()
                        .filter(|r| r.is_ok())
                        .count()
                }));
            }
            let mut ok = 0;
            for t in tasks {
                ok += t.await.unwrap_or(0);
            }
            assert_eq!(ok, n);
            t.elapsed()
        })
    };
    let batched = in_batches(64);
    // Certificates known (as after the first run, from the known-certificates
    // file): only the replies' own signatures are checked, in batches of each size.
    let warm: Vec<_> = [16usize, 64, 128, 256]
        .into_iter()
        .map(|size| (size, in_batches(size)))
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("replies: {n}, cores: {cores}");
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "one by one, new certificates:    {:.1} ms ({:.1} µs per reply)",
        ms(cold),
        per(cold)
    );
    println!(
        "one by one, cached certificates: {:.1} ms ({:.1} µs per reply)",
        ms(sequential),
        per(sequential)
    );
    println!("a task per reply, new certificates: {:.1} ms", ms(parallel));
    println!(
        "batches of 64 on tasks, new certificates: {:.1} ms",
        ms(batched)
    );
    for (size, took) in warm {
        println!(
            "batches of {size} on tasks, known certificates: {:.1} ms ({:.1} µs per reply)",
            ms(took),
            per(took)
        );
    }
    Ok(())
}

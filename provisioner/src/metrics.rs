//! Counters of the provisioner, in Prometheus' text format, served on an
//! HTTP endpoint (`GET /metrics`) when `metrics_listen` is set.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The provisioner's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Nodes provisioned.
    pub provisioned: AtomicU64,
    /// Attempts that failed.
    pub failed: AtomicU64,
    /// Nodes refused (not expected).
    pub refused: AtomicU64,
    /// Times a node was found locked by another provisioner and left to it.
    pub busy: AtomicU64,
    /// Nodes waiting for a master, now.
    pub waiting: AtomicU64,
    /// Nodes being worked on, now.
    pub in_progress: AtomicU64,
    steps: Mutex<BTreeMap<String, (u64, f64)>>,
}

impl Metrics {
    /// Records how long a step took.
    pub fn step(&self, name: &str, took: Duration) {
        let mut s = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        let e = s.entry(name.to_string()).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += took.as_secs_f64();
    }

    /// Adds one to a counter.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves a gauge up or down.
    pub fn bump_gauge(g: &AtomicU64, by: i64) {
        if by >= 0 {
            g.fetch_add(by as u64, Ordering::Relaxed);
        } else {
            let _ = g.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(by.unsigned_abs()))
            });
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, c, kind) in [
            (
                "mco_provision_provisioned_total",
                "Nodes provisioned",
                &self.provisioned,
                "counter",
            ),
            (
                "mco_provision_failed_total",
                "Provisioning attempts that failed",
                &self.failed,
                "counter",
            ),
            (
                "mco_provision_refused_total",
                "Nodes refused as not expected",
                &self.refused,
                "counter",
            ),
            (
                "mco_provision_busy_total",
                "Nodes found locked by another provisioner and left to it",
                &self.busy,
                "counter",
            ),
            (
                "mco_provision_waiting",
                "Nodes waiting for a master",
                &self.waiting,
                "gauge",
            ),
            (
                "mco_provision_in_progress",
                "Nodes being provisioned",
                &self.in_progress,
                "gauge",
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
                c.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP mco_provision_step_seconds Time spent in each step\n# TYPE mco_provision_step_seconds summary\n");
        for (step, (n, sum)) in self.steps.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            out.push_str(&format!(
                "mco_provision_step_seconds_sum{{step=\"{step}\"}} {sum:.6}\nmco_provision_step_seconds_count{{step=\"{step}\"}} {n}\n"
            ));
        }
        out
    }
}

/// Most connections the endpoint serves at once; further ones wait in the
/// listen backlog until one is done.
pub const MAX_CONNECTIONS: usize = 32;

/// How long one connection may take to send its request and read the answer.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` on `listener`: at most [`MAX_CONNECTIONS`] at once,
/// each within [`CONNECTION_DEADLINE`]. A failing `accept` (out of file
/// descriptors, say) is retried after a pause that doubles up to a second,
/// never in a busy loop.
pub async fn serve(listener: tokio::net::TcpListener, metrics: std::sync::Arc<Metrics>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut pause = Duration::from_millis(50);
    loop {
        // Take the slot first: a flood of connections then waits in the
        // kernel's backlog, not in tasks of ours.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut s = match listener.accept().await {
            Ok((s, _)) => {
                pause = Duration::from_millis(50);
                s
            }
            Err(e) => {
                tracing::warn!("metrics endpoint: accept failed: {e}; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let deadline = tokio::time::Instant::now() + CONNECTION_DEADLINE;
            // The request line may arrive in pieces: read until the end of
            // the headers, a full buffer, or the deadline.
            let mut buf = [0u8; 2048];
            let mut n = 0;
            while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                match tokio::time::timeout_at(deadline, s.read(&mut buf[n..])).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(k)) => n += k,
                }
            }
            if n == 0 {
                return;
            }
            let req = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if req.starts_with("GET /metrics ") || req.starts_with("GET / ") {
                ("200 OK", metrics.render())
            } else {
                ("404 Not Found", "not found\n".to_string())
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            // A reader that never reads gives its slot back at the deadline.
            let _ = tokio::time::timeout_at(deadline, s.write_all(answer.as_bytes())).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counters_render_and_serve() {
        let m = std::sync::Arc::new(Metrics::default());
        Metrics::bump(&m.provisioned);
        Metrics::bump(&m.provisioned);
        m.step("sign", Duration::from_millis(1500));
        let text = m.render();
        assert!(
            text.contains("mco_provision_provisioned_total 2\n"),
            "{text}"
        );
        assert!(
            text.contains("mco_provision_step_seconds_sum{step=\"sign\"} 1.500000\n"),
            "{text}"
        );
        assert!(
            text.contains("mco_provision_step_seconds_count{step=\"sign\"} 1\n"),
            "{text}"
        );

        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(serve(l, m.clone()));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        // In pieces, as a client may send it.
        s.write_all(b"GET ").await.unwrap();
        s.flush().await.unwrap();
        tokio::task::yield_now().await;
        s.write_all(b"/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
        assert!(got.contains("mco_provision_provisioned_total 2"), "{got}");
        server.abort();
    }

    /// Connections that never send a request hold at most [`MAX_CONNECTIONS`]
    /// slots: one more waits, and is served as soon as they go.
    #[tokio::test]
    async fn idle_connections_are_capped() {
        let m = std::sync::Arc::new(Metrics::default());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(serve(l, m));
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        let early = tokio::time::timeout(Duration::from_millis(500), s.read_to_end(&mut got)).await;
        assert!(early.is_err(), "served past the cap: {got:?}");
        drop(idle);
        tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got))
            .await
            .expect("served once the idle connections went")
            .unwrap();
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200 OK"));
        server.abort();
    }
}

//! Telling someone: every outcome of a node (provisioned, failed, refused,
//! waiting) goes to each configured notifier — the log, a webhook (an HTTP
//! POST of the event as JSON to an `http://` or `https://` URL) or a command
//! (the event as JSON on its standard input). A notifier that fails is
//! logged and never stops the provisioner.
//!
//! ```toml
//! [[notify]]
//! type = "webhook"
//! url = "https://hooks.example.com/provisioned"
//! ca = "/etc/mco/pki/ca.pem"   # optional: trust these certificates, not the system's roots
//! timeout = "10s"              # the whole exchange (default 10s)
//! headers = { Authorization = "Bearer …" }   # optional; values are never logged
//! ```
//!
//! A webhook's certificate and host name are always verified, a redirect is
//! an error and never followed, and any answer but 2xx is an error naming
//! its status: see [`crate::webhook`].

use std::path::Path;
use std::time::Duration;

use mco_core::config::Reader;
use serde::Serialize;
use toml::Table;

use crate::step::{Event, Step};
use crate::webhook::Webhook;

/// One node's outcome.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Notice {
    /// The node.
    pub node: String,
    /// `provisioned`, `failed`, `gave_up`, `refused` or `waiting`.
    pub outcome: Event,
    /// The master it was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// The step that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
    /// What went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time spent on the node in this attempt, milliseconds.
    pub duration_ms: u64,
    /// Attempts so far.
    pub attempts: u32,
    /// When, in milliseconds since the epoch.
    pub time_ms: u64,
}

/// Where events go.
#[derive(Debug, Clone, PartialEq)]
pub enum Notifier {
    /// One JSON line per event on the provisioner's log.
    Log,
    /// An HTTP POST of the JSON event to an `http://` or `https://` URL.
    Webhook(Webhook),
    /// A command (argv, no shell) fed the JSON event on standard input.
    Exec {
        /// Program and arguments.
        argv: Vec<String>,
        /// Bound on its run.
        timeout: Duration,
    },
}

impl Notifier {
    /// A webhook notifier from its URL (`http://` or `https://`, trusting
    /// the system's roots), without extra headers.
    pub fn webhook(url: &str, timeout: Duration) -> Result<Notifier, String> {
        Webhook::new(url, timeout, None, &[])
            .map(Notifier::Webhook)
            .map_err(|errors| {
                errors
                    .into_iter()
                    .map(|e| format!("{}: {}", e.key, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
    }

    /// Sends one event.
    pub async fn send(&self, ev: &Notice) -> Result<(), String> {
        let body = serde_json::to_vec(ev).map_err(|e| e.to_string())?;
        match self {
            Notifier::Log => {
                tracing::info!(target: "mco::provision", "{}", String::from_utf8_lossy(&body));
                Ok(())
            }
            Notifier::Webhook(hook) => hook.send(body).await,
            Notifier::Exec { argv, timeout } => exec(argv, &body, *timeout).await,
        }
    }
}

/// The `[[notify]]` tables of `t` (the log alone without any); relative
/// paths (a webhook's `ca`) are taken from `base`.
pub(crate) fn notifiers(r: &mut Reader, t: &Table, base: &Path) -> Vec<Notifier> {
    let Some(v) = t.get("notify") else {
        return vec![Notifier::Log];
    };
    let Some(list) = v.as_array() else {
        r.error("notify", "expected [[notify]] tables");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let key = format!("notify[{i}]");
        let Some(n) = item.as_table() else {
            r.error(&key, "expected a table");
            continue;
        };
        let timeout = r
            .duration(n, &key, "timeout")
            .unwrap_or(Duration::from_secs(10));
        match r.string(n, &key, "type").as_deref() {
            Some("log") => {
                r.unknown(n, &key, &["type"]);
                out.push(Notifier::Log);
            }
            Some("webhook") => {
                r.unknown(n, &key, &["type", "url", "ca", "headers", "timeout"]);
                if let Some(w) = webhook(r, n, &key, base, timeout) {
                    out.push(Notifier::Webhook(w));
                }
            }
            Some("exec") => {
                r.unknown(n, &key, &["type", "command", "timeout"]);
                match r.strings(n, &key, "command") {
                    Some(argv) if !argv.is_empty() => out.push(Notifier::Exec { argv, timeout }),
                    _ => r.error(&key, "an exec notifier needs a command (an argv list)"),
                }
            }
            Some(other) => r.error(
                &format!("{key}.type"),
                format!("{other:?}: not one of log, webhook, exec"),
            ),
            None => r.error(&key, "needs a type: log, webhook or exec"),
        }
    }
    out
}

/// One `type = "webhook"` table; every problem is reported under its key.
fn webhook(
    r: &mut Reader,
    n: &Table,
    key: &str,
    base: &Path,
    timeout: Duration,
) -> Option<Webhook> {
    let ca = r
        .path(n, key, "ca")
        .map(|p| if p.is_relative() { base.join(p) } else { p });
    let mut headers = Vec::new();
    if let Some(h) = r.table(n, key, "headers") {
        for (name, value) in h {
            match value.as_str() {
                Some(v) => headers.push((name.clone(), v.to_string())),
                None => r.error(
                    &format!("{key}.headers.{name}"),
                    format!("expected a string, found {}", value.type_str()),
                ),
            }
        }
    }
    let Some(url) = r.string(n, key, "url") else {
        r.error(key, "a webhook needs a url");
        return None;
    };
    match Webhook::new(&url, timeout, ca.as_deref(), &headers) {
        Ok(w) => Some(w),
        Err(errors) => {
            for e in errors {
                r.error(&format!("{key}.{}", e.key), e.message);
            }
            None
        }
    }
}

/// Runs a command notifier through [`mco_process::run`]: the event on its
/// standard input, its process group killed if it runs out of time.
async fn exec(argv: &[String], body: &[u8], timeout: Duration) -> Result<(), String> {
    let limits = mco_process::Limits {
        timeout,
        // Its standard output is not wanted; it is read and dropped.
        stdout_keep: 0,
        stderr_keep: 4096,
        kill_group: true,
    };
    let cmd = mco_process::Cmd::new(&argv[0]).args(&argv[1..]).stdin(body);
    let done = mco_process::run(cmd, &limits)
        .await
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    if done.timed_out {
        Err(format!("{}: did not finish within {timeout:?}", argv[0]))
    } else if done.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} exited with {}: {}",
            argv[0],
            done.status,
            String::from_utf8_lossy(&done.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn event() -> Notice {
        Notice {
            node: "n1".into(),
            outcome: Event::Provisioned,
            master: Some("m1".into()),
            step: None,
            error: None,
            duration_ms: 12,
            attempts: 1,
            time_ms: 5,
        }
    }

    #[test]
    fn webhook_urls() {
        let Ok(Notifier::Webhook(hook)) =
            Notifier::webhook("http://127.0.0.1:9/hook", Duration::from_secs(1))
        else {
            panic!("an http:// webhook");
        };
        assert_eq!(hook.shown_url(), "http://127.0.0.1:9/hook");
        assert_eq!(hook.timeout(), Duration::from_secs(1));
        assert!(Notifier::webhook("https://x/", Duration::from_secs(1)).is_ok());
        for bad in ["ftp://x/", "http:///x", "x/y", ""] {
            let e = Notifier::webhook(bad, Duration::from_secs(1)).unwrap_err();
            assert!(e.starts_with("url: "), "{bad:?}: {e}");
        }
    }

    #[tokio::test]
    async fn webhooks_post_json_and_commands_read_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some(i) = text.find("\r\n\r\n") {
                    if text[i + 4..].ends_with('}') {
                        break;
                    }
                }
            }
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let hook =
            Notifier::webhook(&format!("http://{addr}/events"), Duration::from_secs(5)).unwrap();
        hook.send(&event()).await.unwrap();
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /events HTTP/1.1\r\n"),
            "{request}"
        );
        let body = request.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["node"], "n1");
        assert_eq!(v["outcome"], "provisioned");

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("events");
        let exec = Notifier::Exec {
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!("cat >> {}", out.display()),
            ],
            timeout: Duration::from_secs(5),
        };
        exec.send(&event()).await.unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(v["master"], "m1");
        let failing = Notifier::Exec {
            argv: vec!["sh".into(), "-c".into(), "echo nope >&2; exit 3".into()],
            timeout: Duration::from_secs(5),
        };
        let e = failing.send(&event()).await.unwrap_err();
        assert!(e.contains("nope"), "{e}");
        // A webhook nobody answers fails; it never hangs.
        let dead = Notifier::webhook("http://127.0.0.1:1/x", Duration::from_secs(2)).unwrap();
        assert!(dead.send(&event()).await.is_err());
    }

    #[tokio::test]
    async fn a_command_notifier_is_killed_at_its_timeout() {
        let slow = Notifier::Exec {
            argv: vec!["sh".into(), "-c".into(), "cat >/dev/null; sleep 100".into()],
            timeout: Duration::from_millis(300),
        };
        let e = slow.send(&event()).await.unwrap_err();
        assert_eq!(e, "sh: did not finish within 300ms");
        let missing = Notifier::Exec {
            argv: vec!["/nonexistent/notifier".into()],
            timeout: Duration::from_secs(5),
        };
        let e = missing.send(&event()).await.unwrap_err();
        assert!(e.starts_with("/nonexistent/notifier: "), "{e}");
    }
}

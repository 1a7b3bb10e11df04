//! Telling someone: every outcome of a node (provisioned, failed, refused,
//! waiting) goes to each configured notifier — the log, a webhook (an HTTP
//! POST of the event as JSON) or a command (the event as JSON on its
//! standard input). A notifier that fails is logged and never stops the
//! provisioner.

use std::time::Duration;

use serde::Serialize;

use crate::step::{Event, Step};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    /// An HTTP POST of the JSON event to `http://HOST:PORT/PATH`.
    Webhook {
        /// host:port to connect to.
        authority: String,
        /// The request path.
        path: String,
        /// Bound on the whole exchange.
        timeout: Duration,
    },
    /// A command (argv, no shell) fed the JSON event on standard input.
    Exec {
        /// Program and arguments.
        argv: Vec<String>,
        /// Bound on its run.
        timeout: Duration,
    },
}

impl Notifier {
    /// A webhook notifier from its URL; only `http://` URLs (a local relay
    /// can forward to HTTPS services).
    pub fn webhook(url: &str, timeout: Duration) -> Result<Notifier, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: webhooks must be http:// URLs"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let authority = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Notifier::Webhook {
            authority,
            path: path.to_string(),
            timeout,
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
            Notifier::Webhook {
                authority,
                path,
                timeout,
            } => tokio::time::timeout(*timeout, post(authority, path, &body))
                .await
                .map_err(|_| format!("webhook {authority}{path}: no answer within {timeout:?}"))?,
            Notifier::Exec { argv, timeout } => exec(argv, &body, *timeout).await,
        }
    }
}

async fn post(authority: &str, path: &str, body: &[u8]) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("webhook {authority}{path}: {e}");
    let mut s = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(fail)?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nUser-Agent: mco-provisioner\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.map_err(fail)?;
    s.write_all(body).await.map_err(fail)?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    // The status line is all we need.
    while !answer.contains(&b'\n') {
        let n = s.read(&mut buf).await.map_err(fail)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.len() > 8192 {
            break;
        }
    }
    let line = String::from_utf8_lossy(&answer);
    let code = line.split_whitespace().nth(1).unwrap_or_default();
    if code.starts_with('2') {
        Ok(())
    } else {
        Err(format!(
            "webhook {authority}{path}: {}",
            line.lines().next().unwrap_or("no answer")
        ))
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
        assert_eq!(
            Notifier::webhook("http://127.0.0.1:9/hook", Duration::from_secs(1)).unwrap(),
            Notifier::Webhook {
                authority: "127.0.0.1:9".into(),
                path: "/hook".into(),
                timeout: Duration::from_secs(1)
            }
        );
        assert!(Notifier::webhook("https://x/", Duration::from_secs(1)).is_err());
        assert!(Notifier::webhook("http:///x", Duration::from_secs(1)).is_err());
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

//! The provisioner's webhook notifier over HTTPS, against a real server: a
//! CA and server certificates made by the real `mco pki`, served by
//! Python's standard library (http.server and ssl) in a child process that
//! records every POST, and a `Notifier` built from a real
//! `provisioner.toml` text by `ProvisionerConfig::from_toml`.
//!
//! The event arrives, with its token header, when the hook's certificate
//! chains to the configured `ca` and names the host; a hook the system does
//! not trust, or whose certificate is for another name, gets nothing; a 500
//! is an error naming it, a redirect is an error and is not followed, and a
//! hook that never answers fails at the timeout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mco_provisioner::notify::{Notice, Notifier};
use mco_provisioner::step::Event;
use mco_provisioner::ProvisionerConfig;
use mco_tests::{eventually, ChildGuard, Cmd};
use tempfile::TempDir;

/// The hook server: `/hook` answers 204, `/fail` 500, `/moved` 302 to
/// `/hook`, `/hang` never answers; each POST is first recorded as a JSON
/// line (path, headers, body) in the log file. Its port goes to stdout.
const SERVER: &str = r#"
import http.server, json, ssl, sys, threading

cert, key, log = sys.argv[1:4]

class Hook(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        entry = {
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
        with open(log, "a") as f:
            f.write(json.dumps(entry) + "\n")
        if self.path == "/hang":
            threading.Event().wait()
        status = {"/fail": 500, "/moved": 302}.get(self.path, 204)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/hook")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
server.daemon_threads = True
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A CA made with `mco pki`, a server certificate `hook` for 127.0.0.1 and
/// localhost, and `elsewhere`, for another name only.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("mco-webhook-pki-")
            .tempdir()
            .expect("a temporary directory");
        let pki = |args: &[&str]| {
            Cmd::mco()
                .arg("pki")
                .arg("--dir")
                .arg(dir.path())
                .args(args)
                .run()
                .assert_success();
        };
        pki(&["ca", "init"]);
        pki(&[
            "issue",
            "hook",
            "--kind",
            "broker",
            "--ip",
            "127.0.0.1",
            "--dns",
            "localhost",
        ]);
        pki(&[
            "issue",
            "elsewhere",
            "--kind",
            "broker",
            "--dns",
            "elsewhere.example",
        ]);
        Pki { dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn cert(&self, name: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.path();
        (d.join(format!("{name}.pem")), d.join(format!("{name}.key")))
    }
}

/// The running hook server.
struct Hook {
    port: u16,
    log: PathBuf,
    _server: ChildGuard,
    _dir: TempDir,
}

impl Hook {
    /// Serves with the certificate `name` of `pki`.
    fn start(pki: &Pki, name: &str) -> Hook {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let script = dir.path().join("hook.py");
        std::fs::write(&script, SERVER).expect("write the server");
        let log = dir.path().join("requests.jsonl");
        let (cert, key) = pki.cert(name);
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg(&cert).arg(&key).arg(&log);
        let server = ChildGuard::spawn(cmd);
        eventually(Duration::from_secs(20), "the hook server's port", || {
            server.stdout_text().trim().parse::<u16>().is_ok() || !server.stderr_text().is_empty()
        });
        let port = server
            .stdout_text()
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the hook server failed: {}", server.stderr_text()));
        Hook {
            port,
            log,
            _server: server,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// Every POST recorded so far.
    fn requests(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a recorded request"))
            .collect()
    }
}

/// The one notifier of a `provisioner.toml` whose `[[notify]]` table is
/// `type = "webhook"` plus `table`.
fn notifier(table: &str) -> Notifier {
    let text = format!(
        r#"
main_config = "main.toml"
provisioning_config = "prov.toml"
[expected]
identities = ["*"]
[ca]
identities = ["ca-*"]
[masters]
identities = ["puppet-*"]
[[notify]]
type = "webhook"
{table}
"#
    );
    let cfg = ProvisionerConfig::from_toml(Path::new("/etc/mco/provisioner.toml"), &text)
        .unwrap_or_else(|e| panic!("the config loads: {e}"));
    assert_eq!(cfg.notify.len(), 1);
    cfg.notify.into_iter().next().expect("one notifier")
}

fn notice() -> Notice {
    Notice {
        node: "web-0042".into(),
        outcome: Event::Provisioned,
        master: Some("puppet-eu-1".into()),
        step: None,
        error: None,
        duration_ms: 1234,
        attempts: 1,
        time_ms: 1_700_000_000_000,
    }
}

#[tokio::test]
async fn an_https_hook_served_with_the_collectives_ca_gets_the_event_and_its_token() {
    let pki = Pki::new();
    let hook = Hook::start(&pki, "hook");
    let n = notifier(&format!(
        "url = {:?}\nca = {:?}\ntimeout = \"20s\"\nheaders = {{ Authorization = \"Bearer t0ken\" }}",
        hook.url("/hook"),
        pki.ca()
    ));
    n.send(&notice()).await.expect("the event is delivered");
    // Twice: the second may reuse the connection.
    n.send(&notice())
        .await
        .expect("the event is delivered again");
    let got = hook.requests();
    assert_eq!(got.len(), 2, "{got:?}");
    let r = &got[0];
    assert_eq!(r["path"], "/hook");
    assert_eq!(r["headers"]["authorization"], "Bearer t0ken");
    assert_eq!(r["headers"]["content-type"], "application/json");
    let body: serde_json::Value =
        serde_json::from_str(r["body"].as_str().expect("a body")).expect("the body is JSON");
    assert_eq!(body["node"], "web-0042");
    assert_eq!(body["outcome"], "provisioned");
    assert_eq!(body["master"], "puppet-eu-1");

    // The same CA by host name.
    let by_name = notifier(&format!(
        "url = \"https://localhost:{}/hook\"\nca = {:?}\ntimeout = \"20s\"",
        hook.port,
        pki.ca()
    ));
    by_name
        .send(&notice())
        .await
        .expect("delivered to localhost");
    assert_eq!(hook.requests().len(), 3);
}

#[tokio::test]
async fn a_hook_the_system_roots_do_not_trust_gets_nothing() {
    let pki = Pki::new();
    let hook = Hook::start(&pki, "hook");
    // No ca: the system's roots, which do not hold the collective's CA.
    let n = notifier(&format!(
        "url = {:?}\ntimeout = \"20s\"\nheaders = {{ Authorization = \"Bearer t0ken\" }}",
        hook.url("/hook")
    ));
    let e = n.send(&notice()).await.expect_err("an untrusted hook");
    assert!(e.contains("certificate"), "{e}");
    assert!(!e.contains("t0ken"), "{e}");
    assert!(hook.requests().is_empty(), "{:?}", hook.requests());
}

#[tokio::test]
async fn a_certificate_for_another_name_gets_nothing() {
    let pki = Pki::new();
    // Signed by the configured CA, but for elsewhere.example, not 127.0.0.1.
    let hook = Hook::start(&pki, "elsewhere");
    let n = notifier(&format!(
        "url = {:?}\nca = {:?}\ntimeout = \"20s\"",
        hook.url("/hook"),
        pki.ca()
    ));
    let e = n
        .send(&notice())
        .await
        .expect_err("a certificate for another name");
    assert!(e.contains("certificate"), "{e}");
    assert!(hook.requests().is_empty(), "{:?}", hook.requests());
}

#[tokio::test]
async fn a_hook_answering_500_is_an_error_naming_it() {
    let pki = Pki::new();
    let hook = Hook::start(&pki, "hook");
    let n = notifier(&format!(
        "url = {:?}\nca = {:?}\ntimeout = \"20s\"",
        hook.url("/fail"),
        pki.ca()
    ));
    let e = n.send(&notice()).await.expect_err("a 500");
    assert!(e.contains("500"), "{e}");
    assert!(e.contains(&hook.url("/fail")), "{e}");
    assert_eq!(hook.requests().len(), 1);
}

#[tokio::test]
async fn a_redirecting_hook_is_an_error_and_the_redirect_is_not_followed() {
    let pki = Pki::new();
    let hook = Hook::start(&pki, "hook");
    let n = notifier(&format!(
        "url = {:?}\nca = {:?}\ntimeout = \"20s\"\nheaders = {{ Authorization = \"Bearer t0ken\" }}",
        hook.url("/moved"),
        pki.ca()
    ));
    let e = n.send(&notice()).await.expect_err("a redirect");
    assert!(e.contains("302"), "{e}");
    assert!(e.contains("not followed"), "{e}");
    let paths: Vec<String> = hook
        .requests()
        .iter()
        .map(|r| r["path"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(paths, ["/moved"], "the redirect's target got the event");
}

#[tokio::test]
async fn a_hook_that_never_answers_fails_at_the_timeout() {
    let pki = Pki::new();
    let hook = Hook::start(&pki, "hook");
    let n = notifier(&format!(
        "url = {:?}\nca = {:?}\ntimeout = \"2s\"",
        hook.url("/hang"),
        pki.ca()
    ));
    let e = n.send(&notice()).await.expect_err("no answer");
    assert!(e.contains("no answer within 2s"), "{e}");
    // It got the event; it just never said so.
    assert_eq!(hook.requests().len(), 1);
}

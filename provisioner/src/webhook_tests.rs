//! Tests of a webhook's checks: URL, headers, the `ca` file, what is shown.

use super::*;
use std::sync::Mutex;

const SECOND: Duration = Duration::from_secs(1);

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn urls_are_shown_without_userinfo_or_query() {
    assert_eq!(
        shown("https://bot:s3cret@hooks.example.com:8443/p/q?token=s3cret#f"),
        "https://hooks.example.com:8443/p/q?…"
    );
    assert_eq!(shown("http://127.0.0.1:9/hook"), "http://127.0.0.1:9/hook");
    assert_eq!(shown("http://a@b"), "http://b");
    assert_eq!(shown("http://b/x#frag"), "http://b/x");
    assert_eq!(shown("no scheme?q"), "no scheme?…");
}

#[test]
fn only_http_and_https_urls_with_a_host() {
    assert_eq!(check_url("https://hooks.example.com/x"), Ok(true));
    assert_eq!(check_url("http://127.0.0.1:8080/x"), Ok(false));
    assert_eq!(check_url("https://[::1]:8443/"), Ok(true));
    for bad in [
        "ftp://x/",
        "file:///etc/passwd",
        "http:///x",
        "x/y",
        "",
        "https://",
    ] {
        assert!(check_url(bad).is_err(), "{bad:?}");
    }
    let e = check_url("gopher://u:s3cret@x/").unwrap_err();
    assert!(e.contains("http:// or https://"), "{e}");
    assert!(!e.contains("s3cret"), "{e}");
    let e = check_url("https://u:s3cret@x/a b").unwrap_err();
    assert!(!e.contains("s3cret"), "{e}");
}

#[test]
fn headers_are_checked_and_their_values_never_shown() {
    let (n, v) = header("Authorization", "Bearer s3cret").unwrap();
    assert_eq!(n.as_str(), "authorization");
    assert!(v.is_sensitive());
    assert!(!format!("{v:?}").contains("s3cret"));
    assert!(header("X-Tenant", "").is_ok());
    assert!(header("bad name", "x").unwrap_err().contains("header name"));
    assert!(header("", "x").is_err());
    for reserved in ["Host", "content-length", "Transfer-Encoding", "Connection"] {
        let e = header(reserved, "x").unwrap_err();
        assert!(e.contains("set by the client"), "{reserved}: {e}");
    }
    let e = header("Authorization", "Bearer s3cret\r\nX-Evil: 1").unwrap_err();
    assert!(!e.contains("s3cret"), "{e}");
    assert!(e.contains("header value"), "{e}");
}

#[test]
fn a_ca_file_must_hold_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let e = read_ca(&missing).unwrap_err();
    assert!(e.contains("missing.pem"), "{e}");

    assert!(read_ca(dir.path())
        .unwrap_err()
        .contains("not a regular file"));
    assert!(read_ca(Path::new("/dev/zero"))
        .unwrap_err()
        .contains("not a regular file"));
    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'x'; CA_FILE_MAX as usize + 1]).unwrap();
    assert!(read_ca(&big).unwrap_err().contains("larger than"));

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    assert!(read_ca(&empty)
        .unwrap_err()
        .contains("holds no certificate"));

    let key_only = dir.path().join("key.pem");
    std::fs::write(
        &key_only,
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBx8mJ3P0e0g9YkTQ3cGv1kq8a9aKk3e2Hj3yQ6Vw3d2\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    assert!(read_ca(&key_only)
        .unwrap_err()
        .contains("holds no certificate"));

    let junk = dir.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert!(read_ca(&junk)
        .unwrap_err()
        .contains("not a usable CA certificate"));

    let ca_dir = dir.path().join("ca");
    let ca = mco_pki::Ca::init(&ca_dir, &mco_pki::CaOptions::default()).unwrap();
    let good = ca_dir.join("ca.pem");
    assert_eq!(read_ca(&good).unwrap().len(), 1);
    let other = mco_pki::Ca::init(&dir.path().join("ca2"), &mco_pki::CaOptions::default()).unwrap();
    let two = dir.path().join("two.pem");
    std::fs::write(&two, format!("{}{}", ca.cert_pem(), other.cert_pem())).unwrap();
    assert_eq!(read_ca(&two).unwrap().len(), 2);
}

#[test]
fn every_problem_is_named_by_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    mco_pki::Ca::init(&ca_dir, &mco_pki::CaOptions::default()).unwrap();
    let ca = ca_dir.join("ca.pem");

    let keys = |r: Result<Webhook, Vec<Invalid>>| -> Vec<String> {
        r.unwrap_err().into_iter().map(|e| e.key).collect()
    };
    assert_eq!(
        keys(Webhook::new("http://h/x", SECOND, Some(&ca), &[])),
        ["ca"]
    );
    assert_eq!(
        keys(Webhook::new(
            "https://h/x",
            SECOND,
            Some(&dir.path().join("nope.pem")),
            &[]
        )),
        ["ca"]
    );
    assert_eq!(
        keys(Webhook::new(
            "ftp://h/x",
            Duration::ZERO,
            None,
            &headers(&[("Host", "h"), ("X-Ok", "1")])
        )),
        ["url", "timeout", "headers.Host"]
    );

    let hook = Webhook::new(
        "https://bot:pw@h/x?k=v",
        SECOND,
        Some(&ca),
        &headers(&[("Authorization", "Bearer s3cret")]),
    )
    .unwrap();
    assert_eq!(hook.header_names(), ["authorization"]);
    let debug = format!("{hook:?}");
    assert!(
        !debug.contains("s3cret") && !debug.contains("pw"),
        "{debug}"
    );
    assert!(debug.contains("authorization"), "{debug}");
}

#[tokio::test]
async fn an_https_hook_that_is_not_there_fails_naming_it_without_secrets() {
    // Nothing listens on port 1: the error comes at once and says where.
    let hook = Webhook::new(
        "https://bot:pw@127.0.0.1:1/x?token=s3cret",
        Duration::from_secs(5),
        None,
        &headers(&[("Authorization", "Bearer s3cret")]),
    )
    .unwrap();
    let e = hook.send(b"{}".to_vec()).await.unwrap_err();
    assert!(e.starts_with("webhook https://127.0.0.1:1/x?…: "), "{e}");
    assert!(!e.contains("s3cret") && !e.contains("pw"), "{e}");
}

/// What a subscriber wrote, for the log filter's test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a subscriber with `filter` logs of a wire dump and another event.
fn logged(filter: tracing_subscriber::EnvFilter) -> String {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tracing::trace!(target: "ureq_proto::util", "authorization: Bearer s3cret");
        tracing::trace!(target: "ureq_proto::client", "authorization: Bearer s3cret");
        tracing::trace!(target: "mco::provision", "still logged");
    });
    let bytes = out.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn the_wire_dump_stays_out_of_the_log_even_at_trace() {
    let asked = || tracing_subscriber::EnvFilter::new("trace,ureq_proto=trace");
    // Without the filter the dump would be there.
    assert!(logged(asked()).contains("s3cret"));
    let text = logged(quiet_wire_dumps(asked()));
    assert!(text.contains("still logged"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

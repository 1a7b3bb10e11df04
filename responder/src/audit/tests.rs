use super::*;
use mco_core::ddl::Ddl;
use mco_core::wire::Status;
use std::time::Duration;

const DDL: &str = r#"{
      "metadata": {"name": "service", "description": "d"},
      "actions": [{"action": "restart", "input": {
        "name": {"type": "string"},
        "password": {"type": "string", "sensitive": true}
      }}]
    }"#;

fn record(i: usize) -> AuditRecord {
    let mut input = Map::new();
    input.insert("name".into(), Value::String(format!("nginx-{i}")));
    AuditRecord {
        time_ms: 1_709_251_199_999,
        request_id: format!("req-{i}"),
        caller: "user:alice".into(),
        sender: "laptop".into(),
        agent: "service".into(),
        action: "restart".into(),
        input,
        status: 0,
        statusmsg: "OK".into(),
        elapsed_us: 42,
        node: "web1".into(),
    }
}

async fn flush(log: &AuditLog) {
    tokio::time::timeout(Duration::from_secs(10), log.flush())
        .await
        .expect("flush timed out")
        .unwrap();
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

#[test]
fn rfc3339_known_values() {
    let cases = [
        (0, "1970-01-01T00:00:00.000Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (1_234_567_890_123, "2009-02-13T23:31:30.123Z"),
        (1_583_020_800_001, "2020-03-01T00:00:00.001Z"),
        (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
        (4_102_444_800_000, "2100-01-01T00:00:00.000Z"),
        (253_402_300_799_000, "9999-12-31T23:59:59.000Z"),
    ];
    for (ms, text) in cases {
        assert_eq!(rfc3339_ms(ms), text, "{ms}");
    }
}

#[test]
fn redaction() {
    let ddl = Ddl::from_json("service.json", DDL).unwrap();
    let action = ddl.action("restart");
    let input: Map<String, Value> = serde_json::from_value(serde_json::json!({
        "name": "nginx", "password": "hunter2", "extra": "x"
    }))
    .unwrap();
    let out = redact(&input, action);
    assert_eq!(out["name"], "nginx");
    assert_eq!(out["password"], REDACTED);
    assert_eq!(out["extra"], REDACTED);
    let out = redact(&input, None);
    assert!(out.values().all(|v| v == REDACTED));
}

/// A request that carries thousands of long undeclared inputs and a reply
/// with a huge status message still make a small record.
#[test]
fn a_record_stays_small_whatever_the_request_carries() {
    let ddl = Ddl::from_json("service.json", DDL).unwrap();
    let action = ddl.action("restart");
    let input: Map<String, Value> = (0..5000)
        .map(|i| (format!("{i:05}{}", "k".repeat(1000)), Value::from(i)))
        .collect();
    let out = redact(&input, action);
    assert_eq!(out.len(), MAX_AUDIT_INPUTS + 1);
    assert_eq!(out[MORE_INPUTS], 5000 - MAX_AUDIT_INPUTS);
    // Undeclared names that sort first cannot push a declared input out.
    let mut with_name = input.clone();
    with_name.insert("name".into(), Value::from("nginx"));
    assert_eq!(redact(&with_name, action)["name"], "nginx");
    assert!(out.keys().all(|k| k.len() <= MAX_NAME_LEN), "{out:?}");
    let req = RequestBody {
        id: "r".into(),
        sender: "laptop".into(),
        caller: "user:alice".into(),
        collective: "mcollective".into(),
        agent: "service".into(),
        action: "restart".into(),
        data: input,
        filter: Default::default(),
        ttl_s: 60,
        time_ms: 0,
        target: None,
        reply_to: None,
    };
    let reply = ReplyBody {
        request_id: "r".into(),
        sender: "web1".into(),
        status: mco_core::wire::Status::Aborted,
        message: "m".repeat(1 << 20),
        data: Default::default(),
        time_ms: 0,
        elapsed_us: 0,
    };
    let line = AuditRecord::new(&req, &reply, action).to_json();
    assert!(line.len() < 32 * 1024, "{} bytes", line.len());
    assert!(line.contains("\"statusmsg\":\"sha256:"), "{line}");
}

/// The resource agent's shipped DDL: a file's content is logged as its
/// digest, exec and cron environments, key options and passwords not at
/// all, and the rest as sent.
#[test]
fn resource_contents_and_secrets_never_reach_the_log() {
    let ddl = Ddl::from_json("resource.json", include_str!("../../../ddl/resource.json")).unwrap();
    let action = ddl.action("do");
    let input: Map<String, Value> = serde_json::from_value(serde_json::json!({
        "type": "file", "name": "/etc/app/secret.conf",
        "content": "db_password=correct horse battery staple\n",
        "environment": "AWS_SECRET_ACCESS_KEY=abc", "options": "command=\"x --token=t0k\"",
        "password": "$6$salt$hash"
    }))
    .unwrap();
    let out = redact(&input, action);
    assert_eq!(out["name"], "/etc/app/secret.conf");
    assert_eq!(
        out["content"],
        format!(
            "sha256:{} (41 bytes)",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                b"db_password=correct horse battery staple\n"
            ))
        )
    );
    for secret in ["environment", "options", "password"] {
        assert_eq!(out[secret], REDACTED, "{secret}");
    }
    let mut long = input.clone();
    long.insert(
        "command".into(),
        Value::String("x".repeat(MAX_CLEAR_VALUE + 1)),
    );
    let out = redact(&long, action);
    assert!(
        out["command"].as_str().unwrap().starts_with("sha256:"),
        "a long value is digested: {}",
        out["command"]
    );
    let text = serde_json::to_string(&out).unwrap();
    for leak in ["horse", "AWS_SECRET", "t0k", "$6$"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

#[tokio::test]
async fn lines_are_json_with_every_field_and_secrets_redacted() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    let ddl = Ddl::from_json("service.json", DDL).unwrap();
    let req = RequestBody {
        id: "01HZZ".into(),
        sender: "laptop".into(),
        caller: "user:alice".into(),
        collective: "mcollective".into(),
        agent: "service".into(),
        action: "restart".into(),
        data: serde_json::from_value(serde_json::json!({
            "name": "nginx", "password": "hunter2"
        }))
        .unwrap(),
        filter: Default::default(),
        ttl_s: 60,
        time_ms: 1_709_251_199_000,
        target: None,
        reply_to: None,
    };
    let reply = ReplyBody {
        request_id: "01HZZ".into(),
        sender: "web1".into(),
        status: Status::Aborted,
        message: "not authorized".into(),
        data: Map::new(),
        time_ms: 1_709_251_199_999,
        elapsed_us: 1234,
    };
    log.log(AuditRecord::new(&req, &reply, ddl.action("restart")));
    flush(&log).await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("hunter2"));
    let got = lines(&path);
    assert_eq!(
        got,
        vec![serde_json::json!({
            "time": "2024-02-29T23:59:59.999Z",
            "request_id": "01HZZ",
            "caller": "user:alice",
            "sender": "laptop",
            "agent": "service",
            "action": "restart",
            "input": {"name": "nginx", "password": "[REDACTED]"},
            "status": 1,
            "statusmsg": "not authorized",
            "elapsed_us": 1234,
            "node": "web1"
        })]
    );
    assert!(text.starts_with("{\"time\":"), "{text}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o137, 0, "mode {mode:o}");
}

#[tokio::test]
async fn appends_to_an_existing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("audit.log");
    std::fs::write(&path, "{\"old\":1}\n").unwrap();
    let log = AuditLog::open(&path).unwrap();
    log.log(record(1));
    flush(&log).await;
    drop(log);
    let log = AuditLog::open(&path).unwrap();
    log.log(record(2));
    flush(&log).await;
    let got = lines(&path);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0]["old"], 1);
    assert_eq!(got[1]["request_id"], "req-1");
    assert_eq!(got[2]["request_id"], "req-2");
}

#[tokio::test]
async fn reopen_follows_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("audit.log");
    let rotated = tmp.path().join("audit.log.1");
    let log = AuditLog::open(&path).unwrap();
    log.log(record(1));
    flush(&log).await;
    std::fs::rename(&path, &rotated).unwrap();
    // Until reopened, lines follow the renamed file.
    log.log(record(2));
    flush(&log).await;
    log.reopen();
    log.log(record(3));
    flush(&log).await;
    let old: Vec<_> = lines(&rotated)
        .iter()
        .map(|l| l["request_id"].clone())
        .collect();
    assert_eq!(old, vec!["req-1", "req-2"]);
    let new: Vec<_> = lines(&path)
        .iter()
        .map(|l| l["request_id"].clone())
        .collect();
    assert_eq!(new, vec!["req-3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logging_writes_whole_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("audit.log");
    let log = AuditLog::open_with_capacity(&path, 64).unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..200 {
                    let mut r = record(t * 1000 + i);
                    r.statusmsg = "x".repeat(i * 7);
                    log.log(r);
                    if i % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("task timed out")
            .unwrap();
    }
    flush(&log).await;
    let got = lines(&path);
    assert_eq!(got.len() as u64 + log.dropped(), 32 * 200);
    let mut ids: Vec<_> = got
        .iter()
        .map(|l| l["request_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), got.len());
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("audit.log");
    let (log, rx, file) = AuditLog::unstarted(&path, 2).unwrap();
    for i in 0..5 {
        log.log(record(i));
    }
    assert_eq!(log.dropped(), 3);
    // The writer catches up; later lines go through again.
    let shared = log.shared.clone();
    std::thread::spawn(move || write_loop(rx, file, &shared));
    flush(&log).await;
    log.log(record(9));
    flush(&log).await;
    let ids: Vec<_> = lines(&path)
        .iter()
        .map(|l| l["request_id"].clone())
        .collect();
    assert_eq!(ids, vec!["req-0", "req-1", "req-9"]);
    assert_eq!(log.dropped(), 3);
    assert_eq!(log.write_errors(), 0);
}

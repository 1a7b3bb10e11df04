use std::future::Future;
use std::path::{Path, PathBuf};

use mco_core::facts::lookup;
use serde_json::json;
use tempfile::TempDir;

use super::command::run_fact_command_with_timeout;
use super::*;

/// Every await in these tests is bounded, so a hang fails instead of stalling.
async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("test step took longer than 20s")
}

fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn config(files: Vec<PathBuf>, commands: &[&str]) -> FactsConfig {
    FactsConfig {
        files,
        commands: commands.iter().map(|c| c.to_string()).collect(),
        system: false,
        ..FactsConfig::default()
    }
}

fn names_file(err: &FactsError, path: &Path) -> bool {
    err.to_string().contains(&path.display().to_string())
}

#[tokio::test]
async fn yaml_and_json_files_deep_merge_in_order() {
    let dir = TempDir::new().unwrap();
    let yaml = write(
        &dir,
        "base.yaml",
        "role: web\nlocation:\n  country: fr\n  dc: par1\n  rack:\n    row: 3\nports: [80, 443]\n",
    );
    let json = write(
        &dir,
        "override.json",
        r#"{"role": "db", "location": {"dc": "par2", "rack": {"unit": 12}}}"#,
    );
    let got = within(gather(&config(vec![yaml, json], &[]))).await;
    assert!(got.warnings.is_empty(), "{:?}", got.warnings);
    let f = &got.facts;
    assert_eq!(lookup(f, "role"), Some(&json!("db")));
    assert_eq!(lookup(f, "location.country"), Some(&json!("fr")));
    assert_eq!(lookup(f, "location.dc"), Some(&json!("par2")));
    assert_eq!(lookup(f, "location.rack.row"), Some(&json!(3)));
    assert_eq!(lookup(f, "location.rack.unit"), Some(&json!(12)));
    assert_eq!(lookup(f, "ports.1"), Some(&json!(443)));
}

#[test]
fn unknown_extension_tries_json_then_yaml() {
    let dir = TempDir::new().unwrap();
    let as_json = write(&dir, "a.facts", r#"{"x": {"y": true}}"#);
    let as_yaml = write(&dir, "b.facts", "x:\n  y: false\n");
    let neither = write(&dir, "c.facts", "x: [unclosed\n");
    assert_eq!(read_fact_file(&as_json).unwrap()["x"], json!({"y": true}));
    assert_eq!(read_fact_file(&as_yaml).unwrap()["x"], json!({"y": false}));
    let err = read_fact_file(&neither).unwrap_err();
    assert!(matches!(&err, FactsError::Parse { origin: Origin::File(p), .. } if *p == neither));
    let msg = err.to_string();
    assert!(msg.contains("JSON") && msg.contains("YAML"), "{msg}");
}

#[test]
fn yaml_list_at_top_level_is_not_a_mapping() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "list.yml", "- a\n- b\n");
    let err = read_fact_file(&path).unwrap_err();
    assert!(
        matches!(&err, FactsError::NotAMapping { origin: Origin::File(p), found: "a list" } if *p == path),
        "{err:?}"
    );
    assert!(names_file(&err, &path), "{err}");
}

#[test]
fn malformed_json_is_a_parse_error_naming_the_file() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "bad.json", "{\"a\": 1,,}");
    let err = read_fact_file(&path).unwrap_err();
    assert!(matches!(&err, FactsError::Parse { origin: Origin::File(p), .. } if *p == path));
    let msg = err.to_string();
    assert!(names_file(&err, &path) && msg.contains("line 1"), "{msg}");
}

#[test]
fn empty_files_give_no_facts() {
    let dir = TempDir::new().unwrap();
    for (name, text) in [
        ("e.json", ""),
        ("e.yaml", "# nothing yet\n"),
        ("e.yml", "\n  \n"),
    ] {
        let path = write(&dir, name, text);
        assert_eq!(read_fact_file(&path).unwrap(), FactMap::new(), "{name}");
    }
}

#[test]
fn oversized_file_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("huge.json");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(MAX_SOURCE_BYTES + 1).unwrap();
    let err = read_fact_file(&path).unwrap_err();
    assert!(matches!(&err, FactsError::TooLarge { origin: Origin::File(p), .. } if *p == path));
    assert!(
        names_file(&err, &path) && err.to_string().contains("16 MiB"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_file_is_a_warning_and_the_rest_still_merge() {
    let dir = TempDir::new().unwrap();
    let first = write(&dir, "first.yaml", "a: 1\n");
    let missing = dir.path().join("missing.json");
    let last = write(&dir, "last.json", r#"{"b": 2}"#);
    let got = within(gather(&config(vec![first, missing.clone(), last], &[]))).await;
    assert_eq!(got.facts, *json!({"a": 1, "b": 2}).as_object().unwrap());
    assert_eq!(got.warnings.len(), 1, "{:?}", got.warnings);
    assert!(
        got.warnings[0].contains(&missing.display().to_string()),
        "{}",
        got.warnings[0]
    );
}

#[test]
fn missing_file_is_an_io_error_with_its_path() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("nope.yaml");
    let err = read_fact_file(&missing).unwrap_err();
    assert!(
        matches!(&err, FactsError::Io { path, source } if *path == missing && source.kind() == std::io::ErrorKind::NotFound)
    );
}

#[tokio::test]
async fn command_output_is_parsed() {
    let got = within(run_fact_command(r#"printf '{"a":{"b":1}}'"#))
        .await
        .unwrap();
    assert_eq!(lookup(&got, "a.b"), Some(&json!(1)));
}

#[tokio::test]
async fn command_runs_with_null_stdin() {
    // With stdin closed, `cat` ends at once and prints nothing but `{}`.
    let got = within(run_fact_command("cat; echo '{}'")).await.unwrap();
    assert!(got.is_empty());
}

#[tokio::test]
async fn failing_command_reports_status_and_first_stderr_line() {
    let cmd = "echo ignored; echo '' >&2; echo 'no such thing' >&2; echo more >&2; exit 3";
    let err = within(run_fact_command(cmd)).await.unwrap_err();
    match &err {
        FactsError::CommandFailed {
            command,
            status,
            stderr,
        } => {
            assert_eq!(command, cmd);
            assert_eq!(status.code(), Some(3));
            assert_eq!(stderr, "no such thing");
        }
        other => panic!("expected CommandFailed, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(cmd) && msg.contains('3') && msg.contains("no such thing"),
        "{msg}"
    );
}

#[tokio::test]
async fn non_json_output_is_a_parse_error_naming_the_command() {
    let err = within(run_fact_command("echo hello world"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FactsError::Parse { origin: Origin::Command(c), .. } if c == "echo hello world"),
        "{err:?}"
    );
    assert!(err.to_string().contains("echo hello world"), "{err}");
}

#[tokio::test]
async fn json_that_is_not_an_object_is_refused() {
    let err = within(run_fact_command("echo '[1, 2]'")).await.unwrap_err();
    assert!(
        matches!(
            err,
            FactsError::NotAMapping {
                found: "a list",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn slow_command_times_out() {
    let err = within(run_fact_command_with_timeout(
        "sleep 5",
        Duration::from_millis(200),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(&err, FactsError::CommandTimeout { command, timeout } if command == "sleep 5" && *timeout == Duration::from_millis(200)),
        "{err:?}"
    );
}

#[tokio::test]
async fn timeout_kills_children_holding_stdout() {
    // The background sleep keeps stdout open after the shell is gone; the
    // timeout must still end the run, and the pipe must close because the
    // whole group was killed.
    let dir = TempDir::new().unwrap();
    let pidfile = dir.path().join("pid");
    let cmd = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let err = within(run_fact_command_with_timeout(&cmd, Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, FactsError::CommandTimeout { .. }), "{err:?}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGKILL is delivered asynchronously, and a killed process may linger as
    // a zombie until init reaps it: poll until it is no longer running.
    let state = |pid: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let s = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next()
            .map(str::to_string);
        (s, stat)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (s, stat) = state(pid);
        if matches!(s.as_deref(), None | Some("Z" | "X")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sleep still alive: {stat}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn commands_merge_after_files() {
    let dir = TempDir::new().unwrap();
    let file = write(&dir, "f.yaml", "a: {from: file, keep: 1}\n");
    let cfg = config(
        vec![file],
        &[
            r#"printf '{"a":{"from":"first"}}'"#,
            "exit 1",
            r#"printf '{"a":{"from":"second"}}'"#,
        ],
    );
    let got = within(gather(&cfg)).await;
    assert_eq!(lookup(&got.facts, "a.from"), Some(&json!("second")));
    assert_eq!(lookup(&got.facts, "a.keep"), Some(&json!(1)));
    assert_eq!(got.warnings.len(), 1, "{:?}", got.warnings);
    assert!(got.warnings[0].contains("`exit 1`"), "{}", got.warnings[0]);
}

#[tokio::test]
async fn files_override_system_facts_deeply() {
    let dir = TempDir::new().unwrap();
    let file = write(&dir, "f.json", r#"{"os": {"family": "Custom"}}"#);
    let cfg = FactsConfig {
        system: true,
        ..config(vec![file], &[])
    };
    let got = within(gather(&cfg)).await;
    assert_eq!(lookup(&got.facts, "os.family"), Some(&json!("Custom")));
    assert!(lookup(&got.facts, "os.name").is_some(), "{:?}", got.facts);
    assert!(lookup(&got.facts, "mco_version").is_some());
}

#[tokio::test]
async fn classes_file_is_read_by_gather() {
    let dir = TempDir::new().unwrap();
    let path = write(
        &dir,
        "classes.txt",
        "settings\n\n# managed by puppet\n  role::web  \nprofile::base\nrole::web\nsettings\n",
    );
    assert_eq!(
        read_classes(&path).unwrap(),
        ["settings", "role::web", "profile::base"]
    );
    let cfg = FactsConfig {
        classes_file: Some(path),
        ..config(vec![], &[])
    };
    let got = within(gather(&cfg)).await;
    assert_eq!(got.classes, ["settings", "role::web", "profile::base"]);
    assert!(got.warnings.is_empty());

    let missing = dir.path().join("gone.txt");
    let cfg = FactsConfig {
        classes_file: Some(missing.clone()),
        ..config(vec![], &[])
    };
    let got = within(gather(&cfg)).await;
    assert!(got.classes.is_empty());
    assert!(got.warnings[0].contains(&missing.display().to_string()));
}

#[tokio::test]
async fn classes_files_add_to_the_classes_file() {
    let dir = TempDir::new().unwrap();
    let puppet = write(&dir, "classes.txt", "settings\nrole::web\n");
    let given = write(
        &dir,
        "classification.classes",
        "role::web\nhadoop::worker\n",
    );
    let gone = dir.path().join("gone.classes");
    let cfg = FactsConfig {
        classes_file: Some(puppet),
        classes_files: vec![given, gone.clone()],
        ..config(vec![], &[])
    };
    let got = within(gather(&cfg)).await;
    assert_eq!(got.classes, ["settings", "role::web", "hadoop::worker"]);
    assert_eq!(got.warnings.len(), 1, "{:?}", got.warnings);
    assert!(got.warnings[0].contains(&gone.display().to_string()));
}

#[test]
fn system_facts_of_this_machine() {
    let f = system_facts();
    let hostname = lookup(&f, "hostname").and_then(|v| v.as_str()).unwrap();
    assert!(!hostname.is_empty() && !hostname.contains('.'));
    let fqdn = lookup(&f, "fqdn").and_then(|v| v.as_str()).unwrap();
    assert!(fqdn.starts_with(hostname));
    assert_eq!(default_identity(), fqdn);
    assert!(lookup(&f, "os.family")
        .and_then(|v| v.as_str())
        .is_some_and(|s| !s.is_empty()));
    assert_eq!(lookup(&f, "kernel"), Some(&json!("Linux")));
    assert_eq!(
        lookup(&f, "architecture"),
        Some(&json!(std::env::consts::ARCH))
    );
    let count = lookup(&f, "processors.count")
        .and_then(|v| v.as_u64())
        .unwrap();
    assert!(count >= 1);
    assert_eq!(lookup(&f, "processorcount"), Some(&json!(count)));
    assert_eq!(lookup(&f, "mco_version"), Some(&json!(mco_core::VERSION)));
    assert!(
        lookup(&f, "memory.total_bytes")
            .and_then(|v| v.as_u64())
            .unwrap()
            > 0
    );
}

/// Facts nested deeper than a reply can carry are refused where they are read (a file, JSON or
/// YAML, or a fact command), with a warning, so a node never advertises facts that no client
/// could decode; the other sources still count.
#[tokio::test]
async fn facts_nested_too_deep_are_refused_when_read() {
    let dir = TempDir::new().unwrap();
    let depth = mco_core::limits::MAX_VALUE_DEPTH;
    let deep_json = format!("{{\"a\": {}1{}}}", "[".repeat(depth), "]".repeat(depth));
    let deep_yaml = format!("a: {}1{}\n", "[".repeat(depth), "]".repeat(depth));
    let json = write(&dir, "deep.json", &deep_json);
    let yaml = write(&dir, "deep.yaml", &deep_yaml);
    let ok = write(&dir, "ok.json", r#"{"role": "web"}"#);
    let script = write(&dir, "deep.sh", &format!("#!/bin/sh\necho '{deep_json}'\n"));
    let cmd = format!("/bin/sh {}", script.display());
    let got = within(gather(&config(
        vec![json.clone(), yaml.clone(), ok],
        &[&cmd],
    )))
    .await;
    assert_eq!(lookup(&got.facts, "role"), Some(&json!("web")));
    assert!(lookup(&got.facts, "a").is_none(), "{:?}", got.facts);
    let text = format!("{:?}", got.warnings);
    for what in [json.display().to_string(), yaml.display().to_string()] {
        assert!(text.contains(&what), "{what} in {text}");
    }
    assert_eq!(got.warnings.len(), 3, "{text}");
}

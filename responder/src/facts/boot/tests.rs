use std::path::{Path, PathBuf};
use std::time::Duration;

use mco_core::config::FactsConfig;
use mco_core::facts::lookup;
use serde_json::json;
use tempfile::TempDir;

use super::super::{gather, FactsError, MAX_SOURCE_BYTES};
use super::*;

fn write(dir: &TempDir, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn facts(v: serde_json::Value) -> FactMap {
    v.as_object().unwrap().clone()
}

fn oversized(dir: &TempDir) -> PathBuf {
    let path = dir.path().join("huge");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(MAX_SOURCE_BYTES + 1).unwrap();
    path
}

fn is_too_large(err: &FactsError, path: &Path) -> bool {
    matches!(err, FactsError::TooLarge { origin: Origin::File(p), .. } if p == path)
}

fn is_not_found(err: &FactsError, path: &Path) -> bool {
    matches!(err, FactsError::Io { path: p, source } if p == path && source.kind() == std::io::ErrorKind::NotFound)
}

// ---- key=value files ----

#[test]
fn keyvalue_good_lines() {
    let text = "\u{feff}# written by ec2-boot-init\n\
                role=web\n\
                \n\
                \t  region =  eu-west-1 \r\n\
                cpus=8\n\
                enabled=true\n\
                url=http://x/?a=b&c=d\n\
                empty=\n\
                quoted=\"web\"\n\
                ec2.instance-type=t3.micro\n\
                role=db\n\
                   # indented comment\n\
                note = two  words ";
    let got = parse_keyvalue(text.as_bytes());
    assert_eq!(got.errors, []);
    assert_eq!(got.bad_lines, 0);
    assert_eq!(
        got.facts,
        facts(json!({
            "role": "db",
            "region": "eu-west-1",
            "cpus": "8",
            "enabled": "true",
            "url": "http://x/?a=b&c=d",
            "empty": "",
            "quoted": "\"web\"",
            "ec2.instance-type": "t3.micro",
            "note": "two  words",
        }))
    );
}

#[test]
fn keyvalue_bad_lines_are_named_and_the_rest_still_count() {
    let long = "k".repeat(129);
    let mut bytes =
        format!("a=1\n\nfoo\nmy key=x\n=nothing\n{long}=v\nb=2\nr\u{f4}le=web\n").into_bytes();
    bytes.extend_from_slice(b"\xff=\n   bare words here   \nc=3\n");
    let got = parse_keyvalue(&bytes);
    assert_eq!(got.facts, facts(json!({"a": "1", "b": "2", "c": "3"})));
    let lines: Vec<String> = got.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "line 3: expected key=value, found \"foo\"".to_owned(),
            "line 4: bad fact name \"my key\": a fact name holds only letters, digits, '_', '-' and '.', not ' '".to_owned(),
            "line 5: bad fact name \"\": a fact name cannot be empty".to_owned(),
            format!(
                "line 6: bad fact name \"{}\"...: a fact name is at most 128 bytes, this one has 129",
                "k".repeat(60)
            ),
            "line 8: bad fact name \"r\u{f4}le\": a fact name holds only letters, digits, '_', '-' and '.', not '\u{f4}'".to_owned(),
            "line 9: not valid UTF-8".to_owned(),
            "line 10: expected key=value, found \"bare words here\"".to_owned(),
        ]
    );
    assert_eq!(got.bad_lines, 7);
}

#[test]
fn keyvalue_file_errors_name_file_and_line() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "facts.txt", "role=web\n# ok\nfoo\nregion=eu\n");
    let (got, errors) = read_keyvalue_file(&path);
    assert_eq!(got, facts(json!({"role": "web", "region": "eu"})));
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [format!(
            "{}:3: expected key=value, found \"foo\"",
            path.display()
        )]
    );
    assert!(
        matches!(&errors[0], FactsError::Line { origin: Origin::File(p), line: 3, .. } if *p == path)
    );
}

#[test]
fn keyvalue_many_bad_lines_are_counted_not_listed() {
    let dir = TempDir::new().unwrap();
    let mut text = String::from("good=yes\n");
    for i in 0..25 {
        text.push_str(&format!("junk {i}\n"));
    }
    let path = write(&dir, "facts.txt", &text);
    let (got, errors) = read_keyvalue_file(&path);
    assert_eq!(got, facts(json!({"good": "yes"})));
    assert_eq!(errors.len(), MAX_LINE_WARNINGS + 1);
    assert!(errors[9]
        .to_string()
        .starts_with(&format!("{}:11: expected key=value", path.display())));
    assert_eq!(
        errors[10].to_string(),
        format!("{}: 15 more bad lines not listed", path.display())
    );
    let parsed = parse_keyvalue(text.as_bytes());
    assert_eq!((parsed.errors.len(), parsed.bad_lines), (10, 25));
}

#[test]
fn keyvalue_missing_or_oversized_file_is_one_error() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("nope.txt");
    let (got, errors) = read_keyvalue_file(&missing);
    assert!(got.is_empty());
    assert!(
        errors.len() == 1 && is_not_found(&errors[0], &missing),
        "{errors:?}"
    );
    let huge = oversized(&dir);
    let (got, errors) = read_keyvalue_file(&huge);
    assert!(got.is_empty());
    assert!(
        errors.len() == 1 && is_too_large(&errors[0], &huge),
        "{errors:?}"
    );
}

// ---- one-value files ----

#[test]
fn value_is_the_trimmed_content() {
    for (text, want) in [
        ("web", "web"),
        ("web\n", "web"),
        ("  web  \r\n", "web"),
        ("\n\n  web server \n\n\t\n", "web server"),
        ("\u{feff}db\n", "db"),
    ] {
        assert_eq!(
            parse_value(text.as_bytes()),
            Ok(Some(want.to_owned())),
            "{text:?}"
        );
    }
    for empty in ["", "\n", "  \r\n\t\n"] {
        assert_eq!(parse_value(empty.as_bytes()), Ok(None), "{empty:?}");
    }
}

#[test]
fn value_with_a_second_line_is_refused() {
    let err = parse_value(b"web\ndb\n").unwrap_err();
    assert_eq!(err.line, 2);
    assert_eq!(
        err.message,
        "expected a single value on one line, found another line \"db\"; \
         the whole file is refused, not just its first line"
    );
    assert_eq!(parse_value(b"\nweb\n\n  db  \n").unwrap_err().line, 4);
    assert_eq!(
        parse_value(b"web\n\xff\n").unwrap_err(),
        LineError {
            line: 2,
            message: "not valid UTF-8".into()
        }
    );
}

#[test]
fn value_file_errors_name_the_file() {
    let dir = TempDir::new().unwrap();
    let good = write(&dir, "role", "web\n");
    assert_eq!(read_value_file("role", &good).unwrap(), "web");

    let two = write(&dir, "two", "web\ndb\n");
    let err = read_value_file("role", &two).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "{}:2: expected a single value on one line, found another line \"db\"",
            two.display()
        )),
        "{err}"
    );

    let empty = write(&dir, "empty", " \n");
    let err = read_value_file("role", &empty).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{} is empty: no `role` fact", empty.display())
    );

    let err = read_value_file("my role", &good).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: bad fact name \"my role\": a fact name holds only letters, digits, '_', '-' and '.', not ' '",
            good.display()
        )
    );

    let missing = dir.path().join("missing");
    assert!(is_not_found(
        &read_value_file("role", &missing).unwrap_err(),
        &missing
    ));
    let huge = oversized(&dir);
    assert!(is_too_large(
        &read_value_file("role", &huge).unwrap_err(),
        &huge
    ));
}

// ---- cloud user data ----

#[test]
fn userdata_facts_keep_their_yaml_types() {
    let text = "#cloud-config\n\
                packages: [nginx]\n\
                runcmd:\n  - echo hi\n\
                base: &base {dc: par1}\n\
                facts:\n  role: web\n  cpus: 8\n  enabled: true\n  ratio: 1.5\n  \
                tags: [a, b]\n  none: ~\n  location:\n    <<: *base\n    rack: 4\n";
    let got = parse_userdata(text.as_bytes()).unwrap();
    assert_eq!(
        got,
        facts(json!({
            "role": "web", "cpus": 8, "enabled": true, "ratio": 1.5,
            "tags": ["a", "b"], "none": null,
            "location": {"dc": "par1", "rack": 4}
        }))
    );
}

#[test]
fn userdata_ruby_symbol_facts_key() {
    let text = "---\n:facts:\n  role: db\n  cluster: alpha\n:other: 1\n";
    assert_eq!(
        parse_userdata(text.as_bytes()).unwrap(),
        facts(json!({"role": "db", "cluster": "alpha"}))
    );
    let both = "facts: {a: 1}\n:facts: {b: 2}\n";
    let err = parse_userdata(both.as_bytes()).unwrap_err();
    assert_eq!(err.line, None);
    assert_eq!(err.message, "has both `facts:` and `:facts:`; keep one");
}

#[test]
fn userdata_without_facts_gives_none_silently() {
    for text in [
        "",
        "#cloud-config\npackages: [nginx]\n",
        "#cloud-config\nfacts:\n",
        "facts: ~\n",
        "- a\n- b\n",
        "just some words\n",
        "#cloud-config-archive\n- type: text/cloud-config\n  content: 'facts: {a: 1}'\n",
        "Facts: {role: web}\n",
    ] {
        assert_eq!(
            parse_userdata(text.as_bytes()),
            Ok(FactMap::new()),
            "{text:?}"
        );
    }
}

#[test]
fn userdata_in_other_formats_is_skipped_without_error() {
    let gzip: &[u8] = &[0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0x00];
    for text in [
        // Valid YAML with facts, but a script: cloud-init runs it, it holds no facts.
        b"#!/bin/sh\nfacts:\n  role: web\n".as_slice(),
        b"#!/bin/bash\necho 'a: [unclosed' > /tmp/x\n",
        b"#include\nhttps://example.com/facts.yaml\n",
        b"#cloud-boothook\n#!/bin/sh\necho x\n",
        b"#upstart-job\ndescription: x\n",
        b"#part-handler\ndef list_types(): pass\n",
        b"Content-Type: multipart/mixed; boundary=\"==B==\"\nMIME-Version: 1.0\n\n--==B==\n",
        b"MIME-Version: 1.0\nContent-Type: text/x-shellscript\n",
        b"<powershell>\nWrite-Host 'facts: x'\n</powershell>\n",
        b"<script>echo x</script>\n",
        gzip,
    ] {
        assert_eq!(
            parse_userdata(text),
            Ok(FactMap::new()),
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn userdata_errors_name_file_and_line() {
    let dir = TempDir::new().unwrap();
    let bad = write(
        &dir,
        "user-data",
        "#cloud-config\nfacts:\n  role: web\n  tags: [a, b\n",
    );
    let err = read_userdata_file(&bad).unwrap_err();
    let line = match &err {
        FactsError::Line {
            origin: Origin::File(p),
            line,
            ..
        } if *p == bad => *line,
        other => panic!("expected a Line error naming the file, got {other:?}"),
    };
    assert_eq!(line, 5, "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}:5: invalid YAML: ", bad.display())),
        "{err}"
    );

    let list = write(&dir, "list", "#cloud-config\nfacts: [a, b]\n");
    let err = read_userdata_file(&list).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot parse {}: `facts:` must be a mapping of fact names to values, found a list",
            list.display()
        )
    );
    let scalar = write(&dir, "scalar", ":facts: web\n");
    let err = read_userdata_file(&scalar).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("`:facts:` must be a mapping of fact names to values, found a string"),
        "{err}"
    );

    let depth = mco_core::limits::MAX_VALUE_DEPTH;
    let deep = write(
        &dir,
        "deep",
        format!("facts:\n  a: {}1{}\n", "[".repeat(depth), "]".repeat(depth)),
    );
    let err = read_userdata_file(&deep).unwrap_err();
    assert!(
        matches!(&err, FactsError::Parse { origin: Origin::File(p), .. } if *p == deep),
        "{err:?}"
    );

    let missing = dir.path().join("missing");
    assert!(is_not_found(
        &read_userdata_file(&missing).unwrap_err(),
        &missing
    ));
    let huge = oversized(&dir);
    assert!(is_too_large(&read_userdata_file(&huge).unwrap_err(), &huge));
}

// ---- gathering ----

/// Every await in these tests is bounded, so a hang fails instead of stalling.
async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("test step took longer than 20s")
}

/// Each source overrides the one before it: files, key=value files, value
/// files, user data, commands.
#[tokio::test]
async fn sources_merge_in_the_documented_order() {
    let dir = TempDir::new().unwrap();
    let file = write(
        &dir,
        "f.yaml",
        "only_file: 1\nx1: file\nnested: {a: file, keep: 1}\n",
    );
    let kv = write(&dir, "facts.txt", "x1=keyvalue\nx2=keyvalue\n");
    let x2 = write(&dir, "x2", "value\n");
    let x3 = write(&dir, "x3", "value\n");
    let ud = write(
        &dir,
        "user-data",
        "#cloud-config\nfacts:\n  x3: userdata\n  x4: userdata\n  nested: {a: userdata}\n",
    );
    let cfg = FactsConfig {
        files: vec![file],
        keyvalue_files: vec![kv],
        value_files: [("x2".to_owned(), x2), ("x3".to_owned(), x3)].into(),
        userdata_files: vec![ud],
        commands: vec![r#"printf '{"x4":"command"}'"#.to_owned()],
        system: false,
        ..FactsConfig::default()
    };
    let got = within(gather(&cfg)).await;
    assert!(got.warnings.is_empty(), "{:?}", got.warnings);
    assert_eq!(
        got.facts,
        facts(json!({
            "only_file": 1, "x1": "keyvalue", "x2": "value", "x3": "userdata",
            "x4": "command", "nested": {"a": "userdata", "keep": 1}
        }))
    );
}

/// Broken first-boot sources are warnings; whatever they could give still counts.
#[tokio::test]
async fn broken_sources_are_warnings() {
    let dir = TempDir::new().unwrap();
    let kv = write(&dir, "facts.txt", "role=web\nnot a fact\nregion=eu\n");
    let empty = write(&dir, "empty", "");
    let good = write(&dir, "good", "par1\n");
    let ud = write(&dir, "user-data", "facts: {a: [unclosed\n");
    let script = write(&dir, "script", "#!/bin/sh\nexit 0\n");
    let cfg = FactsConfig {
        keyvalue_files: vec![kv.clone(), dir.path().join("missing.txt")],
        value_files: [
            ("cluster".to_owned(), empty.clone()),
            ("dc".to_owned(), good),
        ]
        .into(),
        userdata_files: vec![ud.clone(), script],
        system: false,
        ..FactsConfig::default()
    };
    let got = within(gather(&cfg)).await;
    assert_eq!(lookup(&got.facts, "role"), Some(&json!("web")));
    assert_eq!(lookup(&got.facts, "region"), Some(&json!("eu")));
    assert_eq!(lookup(&got.facts, "dc"), Some(&json!("par1")));
    assert_eq!(got.facts.len(), 3, "{:?}", got.facts);
    let w = &got.warnings;
    assert_eq!(w.len(), 4, "{w:?}");
    assert_eq!(
        w[0],
        format!(
            "{}:2: expected key=value, found \"not a fact\"",
            kv.display()
        )
    );
    assert!(w[1].contains("missing.txt"), "{w:?}");
    assert_eq!(
        w[2],
        format!("{} is empty: no `cluster` fact", empty.display())
    );
    assert!(
        w[3].starts_with(&format!("{}:2: invalid YAML", ud.display())),
        "{w:?}"
    );
}

/// YAML error lines are the YAML parser's: a lone `\r` breaks a line, and an error at the end of
/// a last line without a break is reported on the line after it.
#[test]
fn userdata_error_lines_count_as_yaml_does() {
    assert_eq!(parse_userdata(b"s: [").unwrap_err().line, Some(2));
    assert_eq!(parse_userdata(b"s: [\n").unwrap_err().line, Some(2));
    let err = parse_userdata(b"a: 1\rb: 2\rc: d: e\n").unwrap_err();
    assert_eq!(err.line, Some(3), "{err}");
}

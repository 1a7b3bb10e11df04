use super::*;
use crate::types::tests::Fixture;

fn fixture() -> Fixture {
    Fixture::new("exec").file(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
}

fn under(f: &Fixture, rel: &str) -> String {
    f.root().join(rel).display().to_string()
}

#[test]
fn words_split_like_a_shell_without_one() {
    assert_eq!(
        split_words(r#"sh -c 'exit 3' "a b" c\ d "q\"x" ''"#).unwrap(),
        ["sh", "-c", "exit 3", "a b", "c d", "q\"x", ""]
    );
    assert_eq!(
        split_words("echo '$(x) | y'").unwrap(),
        ["echo", "$(x) | y"]
    );
    for bad in [
        "a | b",
        "a; b",
        "a && b",
        "a > f",
        "a < f",
        "echo $(id)",
        "echo `id`",
        "echo $HOME",
        "echo \"${x}\"",
        "'open",
        "\"open",
        "a\\",
    ] {
        assert!(split_words(bad).is_err(), "{bad}");
    }
    assert_eq!(split_words("echo 5$").unwrap(), ["echo", "5$"]);
}

#[test]
fn runs_unless_creates_exists_with_noop_and_rerun() {
    let f = fixture();
    let made = under(&f, "made");
    let cmd = format!("touch {made}");
    let props = [("command", cmd.as_str()), ("creates", "/made")];

    // noop: would run, runs nothing
    let r = f.ensure("make it", &[props[0], props[1], ("noop", "true")]);
    assert_eq!(
        r["changes"],
        json!([{"property": "executed", "old": "notrun", "new": "ran"}])
    );
    assert_eq!(r["resource"]["would_run"], json!(true));
    assert!(!f.root().join("made").exists());

    // runs
    let r = f.ensure("make it", &props);
    assert_eq!(r["changed"], json!(true));
    assert_eq!(r["resource"]["exitcode"], json!(0));
    assert_eq!(r["message"], json!("exec[make it] changed executed"));
    assert_eq!(f.read("/made"), "");

    // rerun: creates exists
    let r = f.ensure("make it", &props);
    assert_eq!(r["changes"], json!([]));
    assert_eq!(r["resource"]["would_run"], json!(false));
    assert_eq!(r["resource"]["reason"], json!("creates /made exists"));

    // find; search is refused
    assert_eq!(
        f.find("true")["resource"],
        json!({"name": "true", "ensure": "present", "command": "true"})
    );
    let e = f
        .agent
        .inner
        .search(&serde_json::Map::from_iter([(
            "type".to_string(),
            json!("exec"),
        )]))
        .unwrap_err();
    assert_eq!(e.to_string(), "type: exec resources cannot be searched");
}

#[test]
fn onlyif_unless_returns_and_output() {
    let f = fixture();
    // the name is the command
    let r = f.ensure("true", &[]);
    assert_eq!(r["changed"], json!(true));
    // onlyif / unless
    let r = f.ensure("true", &[("onlyif", "false")]);
    assert_eq!(r["changes"], json!([]));
    assert_eq!(r["resource"]["reason"], json!("onlyif exited 1"));
    let r = f.ensure("true", &[("unless", "true")]);
    assert_eq!(r["changes"], json!([]));
    assert_eq!(r["resource"]["reason"], json!("unless exited 0"));
    let r = f.ensure("true", &[("onlyif", "true"), ("unless", "false")]);
    assert_eq!(r["changed"], json!(true));

    // a failing exit code: status 1 with the code and the output
    let e = f.ensure_err(
        "boom",
        &[("command", "sh -c 'echo out; echo boom >&2; exit 3'")],
    );
    assert_eq!(e.status, mco_core::Status::Aborted);
    assert!(
        e.message.contains("returned 3 instead of 0"),
        "{}",
        e.message
    );
    assert!(e.message.ends_with("out\nboom"), "{}", e.message);
    // ... acceptable when listed
    let r = f.ensure(
        "boom",
        &[("command", "sh -c 'echo out; exit 3'"), ("returns", "0, 3")],
    );
    assert_eq!(r["resource"]["exitcode"], json!(3));
    assert_eq!(r["resource"]["output"], json!("out"));
    let e = f.ensure_err("false", &[]);
    assert!(e.message.contains("returned 1"), "{}", e.message);

    // a shell, environment and cwd (under the root)
    let piped = under(&f, "piped");
    let line = format!("echo \"$GREETING\" | tee {piped}; touch here");
    let r = f.ensure(
        "greet",
        &[
            ("command", line.as_str()),
            ("shell", "true"),
            ("environment", "GREETING=hello there"),
            ("cwd", "/etc"),
        ],
    );
    // the command saw the value; the reply shows it scrubbed
    assert_eq!(r["resource"]["output"], json!("[redacted]"));
    assert_eq!(f.read("/piped"), "hello there\n");
    assert!(f.root().join("etc/here").exists());

    // as another user
    let r = f.ensure("who", &[("command", "id -u"), ("user", "nobody")]);
    assert_eq!(r["resource"]["output"], json!("65534"));

    // timeout
    let e = f.ensure_err("sleep 5", &[("timeout", "1")]);
    assert!(e.message.contains("timed out"), "{}", e.message);
}

#[test]
fn bad_input_names_the_property() {
    let f = fixture();
    let e = f.ensure_err("x", &[("command", "echo hi > /tmp/nope")]);
    assert_eq!(e.status, mco_core::Status::InvalidData);
    assert!(e.message.starts_with("command:"), "{}", e.message);
    assert!(e.message.contains("shell=true"), "{}", e.message);
    let e = f.ensure_err("true; reboot", &[]);
    assert!(e.message.starts_with("name:"), "{}", e.message);
    let e = f.ensure_err("x", &[("command", "true"), ("onlyif", "a | b")]);
    assert!(e.message.starts_with("onlyif:"), "{}", e.message);
    let e = f.ensure_err("x", &[("command", "true"), ("creates", "made")]);
    assert!(e.message.starts_with("creates:"), "{}", e.message);
    let e = f.ensure_err("x", &[("command", "true"), ("environment", "NOEQ")]);
    assert!(e.message.starts_with("environment:"), "{}", e.message);
    let e = f.ensure_err("x", &[("command", "true"), ("returns", "0,x")]);
    assert!(e.message.starts_with("returns:"), "{}", e.message);
    let e = f.ensure_err("x", &[("command", "true"), ("timeout", "0")]);
    assert!(e.message.starts_with("timeout:"), "{}", e.message);
    let e = f.ensure_err("x", &[("command", "true"), ("shell", "maybe")]);
    assert!(e.message.starts_with("shell:"), "{}", e.message);
    // an unknown user is refused before anything runs
    let marker = under(&f, "ran");
    let onlyif = format!("touch {marker}");
    let e = f.ensure_err(
        "x",
        &[
            ("command", "true"),
            ("user", "ghost"),
            ("onlyif", onlyif.as_str()),
        ],
    );
    assert_eq!(e.status, mco_core::Status::InvalidData);
    assert!(e.message.starts_with("user:"), "{}", e.message);
    assert!(!f.root().join("ran").exists());
}

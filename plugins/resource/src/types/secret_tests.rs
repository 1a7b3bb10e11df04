//! Secrets never leave the agent: a refused `environment` or `options` item
//! is named by its position, never quoted; changes, `find` and `search` show
//! sensitive values as `[redacted]` and file content as a digest; a password
//! hash reaches its tool on standard input, never on a command line.

use std::fs;

use serde_json::{json, Value};

use crate::model::{normalise, Kind, Property};
use crate::system::spawned;
use crate::types::tests::Fixture;

const SECRET: &str = "hunter2";
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n";
const GROUP: &str = "root:x:0:\ncrontab:x:107:\nalice:x:1001:\n";
const K1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH";

/// Asserts `what` (a reply, as JSON) carries neither the secret nor `also`.
#[track_caller]
fn clean(what: &Value, also: &[&str]) {
    let text = what.to_string();
    for s in std::iter::once(SECRET).chain(also.iter().copied()) {
        assert!(!text.contains(s), "{s:?} echoed in {text}");
    }
}

fn cron() -> Fixture {
    Fixture::new("cron")
        .file("/etc/passwd", PASSWD)
        .file("/etc/group", GROUP)
}

fn exec() -> Fixture {
    Fixture::new("exec").file("/etc/passwd", PASSWD)
}

fn keys() -> Fixture {
    let f = Fixture::new("ssh_authorized_key").file("/etc/passwd", PASSWD);
    fs::create_dir_all(f.root().join("home/alice")).unwrap();
    f
}

#[test]
fn a_refused_cron_environment_item_is_named_by_position_only() {
    let f = cron();
    let e = f.ensure_err(
        "backup",
        &[
            ("command", "/bin/true"),
            ("user", "root"),
            ("environment", "MAILTO=root,DB-PASSWORD=hunter2"),
        ],
    );
    assert_eq!(e.status, mco_core::Status::InvalidData);
    assert_eq!(e.message, "environment: item 2 is not KEY=VALUE");
    // a bare secret pasted without a name is not quoted either
    let e = f.ensure_err(
        "backup",
        &[("command", "/bin/true"), ("environment", SECRET)],
    );
    assert_eq!(e.message, "environment: item 1 is not KEY=VALUE");
    assert!(!f.root().join("var/spool/cron/crontabs/root").exists());
}

#[test]
fn a_refused_exec_environment_item_is_named_by_position_only() {
    let f = exec();
    let marker = f.root().join("ran");
    let cmd = format!("/usr/bin/touch {}", marker.display());
    let e = f.ensure_err(
        "x",
        &[
            ("command", &cmd),
            ("environment", "A=1,B=2,DB-PASSWORD=hunter2"),
        ],
    );
    assert_eq!(e.status, mco_core::Status::InvalidData);
    assert_eq!(e.message, "environment: item 3 is not KEY=VALUE");
    assert!(!marker.exists(), "nothing ran");
}

#[test]
fn a_refused_key_option_is_named_by_position_only() {
    let f = keys();
    let e = f.ensure_err(
        "alice@laptop",
        &[
            ("user", "alice"),
            ("key_type", "ssh-ed25519"),
            ("key", K1),
            ("options", "no-pty,token hunter2"),
        ],
    );
    assert_eq!(e.status, mco_core::Status::InvalidData);
    assert!(e.message.starts_with("options: item 2 "), "{}", e.message);
    assert!(!e.message.contains(SECRET), "{}", e.message);
    assert!(!f.root().join("home/alice/.ssh").exists());
}

#[test]
fn a_sensitive_value_of_a_quoting_kind_is_not_echoed_by_normalise() {
    let pin = Property::new("pin", Kind::Integer).sensitive();
    let e = normalise(&pin, &json!("hunter2")).unwrap_err();
    assert_eq!(e.to_string(), "pin: is not a valid value");
    assert_eq!(normalise(&pin, &json!("42")).unwrap(), json!(42));
}

#[test]
fn cron_environment_is_redacted_in_changes_find_and_search() {
    let f = cron();
    let props = [
        ("command", "/usr/local/bin/backup"),
        ("user", "root"),
        ("environment", "DB_PASSWORD=hunter2"),
    ];
    let r = f.ensure("backup", &props);
    assert_eq!(r["changed"], json!(true));
    clean(&r, &["DB_PASSWORD"]);
    let env = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["property"] == "environment")
        .cloned()
        .unwrap();
    assert_eq!(
        env,
        json!({"property": "environment", "old": null, "new": "[redacted]"})
    );
    assert_eq!(r["resource"]["environment"], json!("[redacted]"));
    // applied all the same, and compared on the real value: a rerun is a no-op
    assert!(f
        .read("/var/spool/cron/crontabs/root")
        .contains("DB_PASSWORD=hunter2\n"));
    assert_eq!(f.ensure("backup", &props)["changes"], json!([]));
    clean(&f.find("backup"), &["DB_PASSWORD"]);
    clean(&f.search(), &["DB_PASSWORD"]);
}

#[test]
fn exec_environment_is_redacted_in_the_reply() {
    let f = exec();
    let r = f.ensure(
        "x",
        &[("command", "/bin/true"), ("environment", "TOKEN=hunter2")],
    );
    assert_eq!(r["changed"], json!(true));
    clean(&r, &["TOKEN"]);
}

#[test]
fn exec_output_never_carries_an_environment_secret() {
    let f = exec();
    // a command that fails saying its secret: the error (reply, audit
    // statusmsg) shows it scrubbed, as does a successful run's output
    let e = f.ensure_err(
        "echo \"auth failed for $TOKEN ($SHORT)\" >&2; exit 3",
        &[
            ("shell", "true"),
            ("environment", "TOKEN=hunter2,SHORT=abc"),
        ],
    );
    assert!(e.message.contains("returned 3"), "{}", e.message);
    assert!(
        e.message.ends_with("auth failed for [redacted] (abc)"),
        "{}",
        e.message
    );
    let r = f.ensure(
        "printf '%s\\n' \"$A\" \"$B\"",
        &[
            ("shell", "true"),
            ("environment", "A=hunter2,B=hunter2hunter2"),
        ],
    );
    assert_eq!(r["resource"]["output"], json!("[redacted]\n[redacted]"));
}

#[test]
fn key_options_are_redacted_in_changes_find_and_search() {
    let f = keys();
    let props = [
        ("user", "alice"),
        ("key_type", "ssh-ed25519"),
        ("key", K1),
        ("options", "command=\"/bin/backup --token hunter2\",no-pty"),
    ];
    let r = f.ensure("alice@laptop", &props);
    assert_eq!(r["changed"], json!(true));
    clean(&r, &[]);
    assert_eq!(r["resource"]["options"], json!("[redacted]"));
    assert!(f
        .read("/home/alice/.ssh/authorized_keys")
        .contains("--token hunter2"));
    assert_eq!(f.ensure("alice@laptop", &props)["changes"], json!([]));
    clean(&f.find("alice@laptop"), &[]);
    clean(&f.search(), &[]);
    // no options at all is no secret: shown as it is
    let mut none = props[..3].to_vec();
    none.push(("options", ""));
    let r = f.ensure("alice@laptop", &none);
    assert_eq!(
        r["changes"],
        json!([{"property": "options", "old": "[redacted]", "new": []}])
    );
    assert_eq!(f.find("alice@laptop")["resource"]["options"], json!([]));
}

#[test]
fn file_content_is_reported_as_a_digest_only() {
    let f = Fixture::new("file");
    fs::create_dir_all(f.root().join("srv")).unwrap();
    let r = f.ensure("/srv/db.conf", &[("content", "password=hunter2\n")]);
    assert_eq!(r["changed"], json!(true));
    clean(&r, &[]);
    clean(&f.find("/srv/db.conf"), &[]);
    let e = f.ensure_err(
        "/srv/db.conf",
        &[("content", "password=hunter2\n"), ("ensure", "link")],
    );
    assert!(!e.message.contains(SECRET), "{}", e.message);
}

#[test]
fn a_password_hash_never_reaches_a_command_line() {
    let f = crate::types::user::tests::accounts("user");
    let root = f.root().display().to_string();
    let first = "$6$salt1$firsthashfirsthash";
    let second = "$6$salt2$secondhashsecondhash";
    // created with a hash, then a hash changed alone, then with another change
    f.ensure("alice", &[("password", first)]);
    let shadow = f.read("/etc/shadow");
    assert!(shadow.contains(&format!("\nalice:{first}:")), "{shadow}");
    f.ensure("alice", &[("password", second)]);
    let r = f.ensure("alice", &[("password", first), ("shell", "/bin/sh")]);
    assert_eq!(r["changes"].as_array().unwrap().len(), 2, "{r}");
    let shadow = f.read("/etc/shadow");
    assert!(shadow.contains(&format!("\nalice:{first}:")), "{shadow}");

    let ran = spawned::mentioning(&root);
    let programs: Vec<&str> = ran.iter().map(|s| s.program.as_str()).collect();
    assert_eq!(
        programs,
        ["useradd", "chpasswd", "chpasswd", "usermod", "chpasswd"]
    );
    for s in &ran {
        for hash in [first, second] {
            assert!(
                !s.args.iter().any(|a| a.contains(hash)),
                "{} was given the hash on its command line: {:?}",
                s.program,
                s.args
            );
        }
    }
    let fed: Vec<String> = ran
        .iter()
        .filter_map(|s| s.stdin.as_ref())
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(
        fed,
        [
            format!("alice:{first}\n"),
            format!("alice:{second}\n"),
            format!("alice:{first}\n")
        ]
    );
    for s in ran.iter().filter(|s| s.program == "chpasswd") {
        assert_eq!(s.args, ["-e", "-R", root.as_str()]);
    }
}

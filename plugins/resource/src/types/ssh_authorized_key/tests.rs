use super::*;
use crate::types::tests::Fixture;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

const K1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH";
const K2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJ";
const K3: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUF";
const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nalice:x:1001:1001::/home/alice:/bin/bash\nbob:x:1002:1002::/home/bob:/bin/bash\n";
const BOB_BEFORE: &str = "# bob's keys\n\ncommand=\"echo a, b\",no-pty   ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJ bob@desk\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUF  backup key\n";

fn fixture() -> Fixture {
    let f = Fixture::new("ssh_authorized_key")
        .file("/etc/passwd", PASSWD)
        .file("/home/bob/.ssh/authorized_keys", BOB_BEFORE);
    fs::create_dir_all(f.root().join("home/alice")).unwrap();
    f
}

#[test]
fn create_modify_rerun_noop_remove_find_search() {
    let f = fixture();
    let alice = "/home/alice/.ssh/authorized_keys";
    let bob = "/home/bob/.ssh/authorized_keys";
    let want = [("user", "alice"), ("key_type", "ssh-ed25519"), ("key", K1)];

    // noop
    let mut noop = want.to_vec();
    noop.push(("noop", "true"));
    let r = f.ensure("alice@laptop", &noop);
    assert_eq!(r["changed"], json!(false));
    assert_eq!(r["changes"][0]["property"], json!("ensure"));
    assert!(!f.root().join("home/alice/.ssh").exists());

    // create: .ssh and the file made with the user's ids and modes
    let r = f.ensure("alice@laptop", &want);
    assert_eq!(r["changed"], json!(true));
    assert_eq!(f.read(alice), format!("ssh-ed25519 {K1} alice@laptop\n"));
    let d = fs::metadata(f.root().join("home/alice/.ssh")).unwrap();
    assert_eq!(
        (d.uid(), d.gid(), d.permissions().mode() & 0o7777),
        (1001, 1001, 0o700)
    );
    let m = fs::metadata(f.root().join("home/alice/.ssh/authorized_keys")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
        (1001, 1001, 0o600)
    );
    assert_eq!(f.read(bob), BOB_BEFORE);

    // idempotent
    assert_eq!(f.ensure("alice@laptop", &want)["changes"], json!([]));

    // options, with a comma inside quotes
    let mut with = want.to_vec();
    with.push(("options", "from=\"10.0.0.1,10.0.0.2\",no-pty"));
    let r = f.ensure("alice@laptop", &with);
    assert_eq!(
        r["changes"],
        json!([{"property": "options", "old": [], "new": "[redacted]"}])
    );
    assert_eq!(
        f.read(alice),
        format!("from=\"10.0.0.1,10.0.0.2\",no-pty ssh-ed25519 {K1} alice@laptop\n")
    );
    assert_eq!(f.ensure("alice@laptop", &with)["changes"], json!([]));

    // modify an existing key in place; other lines untouched
    let r = f.ensure("bob@desk", &[("user", "bob"), ("key", K1)]);
    assert_eq!(
        r["changes"],
        json!([{"property": "key", "old": K2, "new": K1}])
    );
    assert_eq!(
            f.read(bob),
            format!("# bob's keys\n\ncommand=\"echo a, b\",no-pty ssh-ed25519 {K1} bob@desk\nssh-ed25519 {K3}  backup key\n")
        );

    // find and search
    let found = f.find("bob@desk");
    assert_eq!(found["resource"]["user"], json!("bob"));
    // the options are parsed, and shown only as redacted
    assert_eq!(found["resource"]["options"], json!("[redacted]"));
    let parsed = SshAuthorizedKey
        .find(&f.agent.inner.system, "bob@desk")
        .unwrap();
    assert_eq!(
        parsed["options"],
        json!(["command=\"echo a, b\"", "no-pty"])
    );
    assert_eq!(f.find("backup key")["resource"]["key"], json!(K3));
    assert_eq!(f.find("nope")["ensure"], json!("absent"));
    let names: Vec<String> = f.search()["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["alice@laptop", "bob@desk", "backup key"]);

    // another user: the key moves
    let r = f.ensure("alice@laptop", &[("user", "bob")]);
    assert_eq!(
        r["changes"],
        json!([{"property": "user", "old": "alice", "new": "bob"}])
    );
    assert_eq!(f.read(alice), "");
    assert_eq!(
            f.read(bob),
            format!("# bob's keys\n\ncommand=\"echo a, b\",no-pty ssh-ed25519 {K1} bob@desk\nssh-ed25519 {K3}  backup key\nfrom=\"10.0.0.1,10.0.0.2\",no-pty ssh-ed25519 {K1} alice@laptop\n")
        );

    // remove
    assert_eq!(
        f.ensure("alice@laptop", &[("ensure", "absent")])["changed"],
        json!(true)
    );
    assert_eq!(
        f.ensure("bob@desk", &[("ensure", "absent")])["changed"],
        json!(true)
    );
    assert_eq!(
        f.read(bob),
        format!("# bob's keys\n\nssh-ed25519 {K3}  backup key\n")
    );
    assert_eq!(
        f.ensure("bob@desk", &[("ensure", "absent")])["changed"],
        json!(false)
    );
}

/// Inputs, the property the error names, the status.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, mco_core::Status);

#[test]
fn bad_input_names_the_property_and_touches_nothing() {
    let f = fixture();
    let bad: &[Case<'_>] = &[
        (
            &[("user", "alice"), ("key_type", "ssh-foo"), ("key", K1)],
            "key_type",
            mco_core::Status::InvalidData,
        ),
        (
            &[
                ("user", "alice"),
                ("key_type", "ssh-ed25519"),
                ("key", "AAAA!"),
            ],
            "key",
            mco_core::Status::InvalidData,
        ),
        (
            &[("user", "alice"), ("key_type", "ssh-rsa"), ("key", K1)],
            "key",
            mco_core::Status::InvalidData,
        ),
        (
            &[
                ("user", "alice"),
                ("key_type", "ssh-ed25519"),
                ("key", K1),
                ("options", "no pty"),
            ],
            "options",
            mco_core::Status::InvalidData,
        ),
        (
            &[
                ("user", "alice"),
                ("key_type", "ssh-ed25519"),
                ("key", K1),
                ("options", "from=\"a"),
            ],
            "options",
            mco_core::Status::InvalidData,
        ),
        (
            &[("key_type", "ssh-ed25519"), ("key", K1)],
            "user",
            mco_core::Status::MissingData,
        ),
        (
            &[("user", "nosuch"), ("key_type", "ssh-ed25519"), ("key", K1)],
            "user",
            mco_core::Status::InvalidData,
        ),
        (
            &[("user", "alice"), ("key_type", "ssh-ed25519")],
            "key",
            mco_core::Status::MissingData,
        ),
    ];
    for (props, prop, status) in bad {
        let e = f.ensure_err("k1", props);
        assert_eq!(e.status, *status, "{props:?}: {}", e.message);
        assert!(e.message.starts_with(&format!("{prop}:")), "{}", e.message);
    }
    assert!(!f.root().join("home/alice/.ssh").exists());
    assert_eq!(f.read("/home/bob/.ssh/authorized_keys"), BOB_BEFORE);
}

#[test]
fn the_given_users_key_wins() {
    let f = fixture();
    let line = format!("ssh-ed25519 {K3} shared\n");
    let f = f.file("/home/alice/.ssh/authorized_keys", &line).file(
        "/home/bob/.ssh/authorized_keys",
        &format!("{BOB_BEFORE}{line}"),
    );
    let r = f.ensure(
        "shared",
        &[("user", "bob"), ("key_type", "ssh-ed25519"), ("key", K1)],
    );
    assert_eq!(
        r["changes"],
        json!([{"property": "key", "old": K3, "new": K1}])
    );
    assert_eq!(f.read("/home/alice/.ssh/authorized_keys"), line);
    assert_eq!(
        f.read("/home/bob/.ssh/authorized_keys"),
        format!("{BOB_BEFORE}ssh-ed25519 {K1} shared\n")
    );
    assert_eq!(f.find("shared")["resource"]["user"], json!("alice"));
}

#[test]
fn symbolic_links_are_refused() {
    let f = fixture();
    fs::create_dir_all(f.root().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(f.root().join("elsewhere"), f.root().join("home/alice/.ssh"))
        .unwrap();
    let e = f.ensure_err(
        "k",
        &[("user", "alice"), ("key_type", "ssh-ed25519"), ("key", K1)],
    );
    assert_eq!(e.status, mco_core::Status::Aborted);
    assert!(e.message.contains("symbolic link"), "{}", e.message);
    assert_eq!(fs::read_dir(f.root().join("elsewhere")).unwrap().count(), 0);
}

#[test]
fn base64_and_options_parse() {
    assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
    assert_eq!(base64_decode("aGk").unwrap(), b"hi");
    assert!(base64_decode("a").is_none());
    assert_eq!(
        split_options("a, b=\"x,y\" ,c=\"q\\\"r\""),
        ["a", "b=\"x,y\"", "c=\"q\\\"r\""]
    );
    assert!(option_ok("c=\"q\\\"r\""));
    assert!(!option_ok("c=\"q\"r\""));
}

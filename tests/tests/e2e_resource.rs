//! The resource agent end to end: real responders, each managing its own temporary system root,
//! and the real `mco resource` / `mco rpc resource` commands. A filtered half of the fleet
//! changes and the rest is untouched; the summary counts are right; denied types and names and
//! bad properties touch nothing; a forced noop node only reports; and a responder killed with
//! SIGKILL in the middle of rewriting a hosts file leaves a whole file behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mco_tests::replies::replies;
use mco_tests::{eventually, mco, NatsServer, Output, Responder, ResponderSpec};
use serde_json::json;
use tempfile::TempDir;

const HOSTS: &str = "# managed by hand\n127.0.0.1\tlocalhost\n\n10.0.0.5   db  # primary\n";

/// A node with its own system root holding an `etc/hosts`.
struct Node {
    root: TempDir,
    responder: Responder,
}

impl Node {
    fn hosts(&self) -> String {
        std::fs::read_to_string(self.hosts_path()).unwrap()
    }

    fn hosts_path(&self) -> PathBuf {
        self.root.path().join("etc/hosts")
    }
}

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/bash\n# local accounts\nops:x:1000:1000:Ops:/home/ops:/bin/sh\n";
const GROUP: &str = "root:x:0:\nops:x:1000:\nusers:x:100:\n";
const SHADOW: &str = "root:*:19000:0:99999:7:::\nops:!:19000:0:99999:7:::\n";
const GSHADOW: &str = "root:*::\nops:!::\nusers:*::\n";
const LOGIN_DEFS: &str =
    "USERGROUPS_ENAB yes\nPASS_MAX_DAYS 99999\nPASS_MIN_DAYS 0\nPASS_WARN_AGE 7\n";

/// A system root with a hosts file and the account databases the shadow tools edit.
fn root_with(hosts: &str) -> TempDir {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc");
    std::fs::create_dir_all(etc.join("skel")).unwrap();
    std::fs::create_dir_all(root.path().join("home")).unwrap();
    for (name, text) in [
        ("hosts", hosts),
        ("passwd", PASSWD),
        ("group", GROUP),
        ("shadow", SHADOW),
        ("gshadow", GSHADOW),
        ("login.defs", LOGIN_DEFS),
    ] {
        std::fs::write(etc.join(name), text).unwrap();
    }
    root
}

fn settings(root: &Path, extra: &str) -> String {
    format!(
        "[plugin.resource]\nallow_types = [\"host\", \"user\"]\nroot = {:?}\n{extra}",
        root.display().to_string()
    )
}

fn read(root: &Path, file: &str) -> String {
    std::fs::read_to_string(root.join(file)).unwrap()
}

/// The `[security]` table of an insecure test node whose resource policy allows every caller;
/// the policy file lives beside the system root.
fn allow_all(root: &Path) -> String {
    let dir = root.join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("resource.policy"), "policy default allow\n").unwrap();
    format!(
        "insecure = true\npolicy_dir = {:?}\n",
        dir.display().to_string()
    )
}

fn spawn(nats: &NatsServer, id: &str, role: &str, extra: &str) -> Node {
    spawn_with(nats, id, role, &["host", "user"], extra)
}

fn spawn_with(nats: &NatsServer, id: &str, role: &str, types: &[&str], extra: &str) -> Node {
    let root = root_with(HOSTS);
    let types: Vec<String> = types.iter().map(|t| format!("{t:?}")).collect();
    let settings = format!(
        "[plugin.resource]\nallow_types = [{}]\nroot = {:?}\n{extra}",
        types.join(", "),
        root.path().display().to_string()
    );
    let spec = ResponderSpec::new(id)
        .facts(json!({"role": role}))
        .secure(&allow_all(root.path()))
        .extra(&settings);
    let responder = Responder::spawn(nats, spec);
    Node { root, responder }
}

fn run(url: &str, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--nats", url, "--dt", "2s", "--np"]);
    mco(all)
}

#[test]
fn a_filtered_half_of_the_fleet_changes_and_reports() {
    let nats = NatsServer::start();
    let url = nats.url();
    let nodes: Vec<Node> = [
        ("web-1", "web"),
        ("web-2", "web"),
        ("db-1", "db"),
        ("db-2", "db"),
    ]
    .iter()
    .map(|(id, role)| spawn(&nats, id, role, ""))
    .collect();
    for n in &nodes {
        n.responder.wait_ready(&nats);
    }
    let web = &nodes[..2];
    let db = &nodes[2..];

    // noop first: reported, nothing written
    let out = run(
        &url,
        &[
            "resource",
            "host",
            "app",
            "ip=10.1.1.1",
            "host_aliases=app.local",
            "--noop",
            "-F",
            "role=web",
        ],
    );
    out.assert_success();
    assert!(
        out.stdout.contains("web-1: would change (noop)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Summary: changed: 0, would change (noop): 2, unchanged: 0"),
        "{}",
        out.stdout
    );
    for n in &nodes {
        assert_eq!(n.hosts(), HOSTS);
    }

    // the real thing, on the web half only
    let out = run(
        &url,
        &[
            "resource",
            "host",
            "app",
            "ip=10.1.1.1",
            "host_aliases=app.local",
            "-F",
            "role=web",
        ],
    );
    out.assert_success();
    assert!(
        out.stdout.contains(
            "web-1: changed\n    property     old new\n    ensure       -   present\n    ip           -   10.1.1.1\n    host_aliases -   app.local\n"
        ) || out.stdout.contains("web-1: changed\n    property     old    new\n    ensure       absent present\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Summary: changed: 2, unchanged: 0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Finished processing 2 / 2 hosts"),
        "{}",
        out.stdout
    );
    for n in web {
        assert_eq!(n.hosts(), format!("{HOSTS}10.1.1.1\tapp\tapp.local\n"));
    }
    for n in db {
        assert_eq!(n.hosts(), HOSTS, "a db node was touched");
    }

    // idempotent
    let out = run(
        &url,
        &[
            "resource",
            "host",
            "app",
            "ip=10.1.1.1",
            "host_aliases=app.local",
            "-F",
            "role=web",
        ],
    );
    out.assert_success();
    assert!(
        out.stdout.contains("Summary: changed: 0, unchanged: 2"),
        "{}",
        out.stdout
    );

    // the whole fleet: only the db half changes now, through mco rpc in batches, as JSON
    let out = run(
        &url,
        &[
            "rpc",
            "resource",
            "do",
            "type=host",
            "name=app",
            "ip=10.1.1.1",
            "host_aliases=app.local",
            "--batch",
            "1",
            "-j",
        ],
    );
    out.assert_success();
    let mut changed: Vec<(String, bool)> = replies(&out)
        .iter()
        .map(|r| {
            (
                r["sender"].as_str().unwrap().to_string(),
                r["data"]["changed"].as_bool().unwrap(),
            )
        })
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            ("db-1".to_string(), true),
            ("db-2".to_string(), true),
            ("web-1".to_string(), false),
            ("web-2".to_string(), false)
        ]
    );
    for n in &nodes {
        assert_eq!(n.hosts(), format!("{HOSTS}10.1.1.1\tapp\tapp.local\n"));
    }

    // find and search
    let out = run(&url, &["resource", "host", "app", "-I", "web-1"]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("  host { 'app':\n    ensure       => 'present',\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Summary: present: 1"), "{}", out.stdout);
    let out = run(&url, &["resource", "host", "--search", "-F", "role=db"]);
    out.assert_success();
    assert!(out.stdout.contains("db-1: 3 host\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("Summary: 6 host resources on 2 nodes"),
        "{}",
        out.stdout
    );

    // the aggregate summary of mco rpc's text output
    let out = run(
        &url,
        &[
            "rpc",
            "resource",
            "do",
            "type=host",
            "name=app",
            "ensure=absent",
            "-F",
            "role=db",
        ],
    );
    out.assert_success();
    assert!(out.stdout.contains("Changed"), "{}", out.stdout);
    for n in db {
        assert_eq!(n.hosts(), HOSTS);
    }
}

#[test]
fn a_user_ensured_on_half_the_fleet() {
    let nats = NatsServer::start();
    let url = nats.url();
    let nodes: Vec<Node> = [("web-1", "web"), ("web-2", "web"), ("db-1", "db")]
        .iter()
        .map(|(id, role)| spawn(&nats, id, role, ""))
        .collect();
    for n in &nodes {
        n.responder.wait_ready(&nats);
    }
    let ensure = [
        "resource",
        "user",
        "deploy",
        "ensure=present",
        "uid=2001",
        "comment=Deploy user",
        "shell=/bin/bash",
        "home=/home/deploy",
        "-F",
        "role=web",
    ];
    let out = run(&url, &ensure);
    out.assert_success();
    assert!(out.stdout.contains("web-1: changed\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("    uid      -      2001\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Summary: changed: 2, unchanged: 0"),
        "{}",
        out.stdout
    );
    for n in &nodes[..2] {
        let root = n.root.path();
        assert_eq!(
            read(root, "etc/passwd"),
            format!("{PASSWD}deploy:x:2001:2001:Deploy user:/home/deploy:/bin/bash\n")
        );
        assert_eq!(read(root, "etc/group"), format!("{GROUP}deploy:x:2001:\n"));
        assert!(read(root, "etc/shadow").starts_with(SHADOW));
    }
    let db = nodes[2].root.path();
    assert_eq!(read(db, "etc/passwd"), PASSWD, "the db node was touched");
    assert_eq!(read(db, "etc/group"), GROUP);

    let out = run(&url, &ensure);
    out.assert_success();
    assert!(
        out.stdout.contains("Summary: changed: 0, unchanged: 2"),
        "{}",
        out.stdout
    );

    // a plain-text password never leaves the node's validation
    let out = run(
        &url,
        &[
            "rpc",
            "resource",
            "do",
            "type=user",
            "name=deploy",
            "password=hunter2",
            "-F",
            "role=web",
            "-j",
        ],
    );
    out.assert_exit(2);
    for r in replies(&out) {
        assert_eq!(r["statuscode"], json!(4), "{r:?}");
        assert!(
            r["statusmsg"].as_str().unwrap().starts_with("password:"),
            "{r:?}"
        );
    }
    // find shows it the Puppet way; the fleet summary counts by ensure
    let out = run(&url, &["resource", "user", "deploy"]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("  user { 'deploy':\n    ensure   => 'present',\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Summary: absent: 1, present: 2"),
        "{}",
        out.stdout
    );

    // and removed again
    let out = run(
        &url,
        &[
            "resource",
            "user",
            "deploy",
            "ensure=absent",
            "-F",
            "role=web",
        ],
    );
    out.assert_success();
    assert!(
        out.stdout.contains("Summary: changed: 2, unchanged: 0"),
        "{}",
        out.stdout
    );
    for n in &nodes[..2] {
        assert_eq!(read(n.root.path(), "etc/passwd"), PASSWD);
        assert_eq!(read(n.root.path(), "etc/group"), GROUP);
    }
}

#[test]
fn refusals_and_bad_input_touch_nothing() {
    let nats = NatsServer::start();
    let url = nats.url();
    let strict = spawn_with(
        &nats,
        "strict",
        "web",
        &["host"],
        "[plugin.resource.host]\ndeny_names = [\"localhost\", \"db*\"]\n",
    );
    let dry = spawn(&nats, "dry", "web", "noop = true\n");
    strict.responder.wait_ready(&nats);
    dry.responder.wait_ready(&nats);

    // a type the node does not manage
    let out = run(
        &url,
        &[
            "resource",
            "user",
            "deploy",
            "ensure=present",
            "-I",
            "strict",
        ],
    );
    out.assert_exit(2);
    assert!(
        out.stdout
            .contains("strict: failed: type user is not managed on this node"),
        "{}",
        out.stdout
    );
    // a denied name
    let out = run(
        &url,
        &["resource", "host", "db", "ip=10.9.9.9", "-I", "strict"],
    );
    out.assert_exit(2);
    assert!(
        out.stdout.contains(
            "strict: failed: host \"db\" may not be managed on this node: it matches deny_names"
        ),
        "{}",
        out.stdout
    );
    // a property of another type: the node names it (status 4)
    let out = run(
        &url,
        &[
            "rpc",
            "resource",
            "do",
            "type=host",
            "name=x",
            "uid=5",
            "-I",
            "strict",
            "-j",
        ],
    );
    out.assert_exit(2);
    let r = &replies(&out)[0];
    assert_eq!(r["statuscode"], json!(4), "{r:?}");
    assert!(
        r["statusmsg"]
            .as_str()
            .unwrap()
            .starts_with("uid: not a property of type host"),
        "{r:?}"
    );
    // a value the DDL refuses never leaves the client
    let out = run(
        &url,
        &["resource", "host", "x", "ip=999.1.1.1", "-I", "strict"],
    );
    out.assert_exit(64);
    // an unknown type
    let out = run(
        &url,
        &["resource", "widget", "x", "ensure=present", "-I", "strict"],
    );
    out.assert_exit(64);
    assert_eq!(strict.hosts(), HOSTS);

    // forced noop: reported, not done
    let out = run(
        &url,
        &["resource", "host", "app", "ip=10.1.1.1", "-I", "dry"],
    );
    out.assert_success();
    assert!(
        out.stdout.contains("dry: would change (noop)"),
        "{}",
        out.stdout
    );
    assert_eq!(dry.hosts(), HOSTS);
}

/// The lines a hosts file may hold after `n` of our appends, in order.
fn appended(i: usize) -> String {
    format!("10.2.{}.{}\th{i}\n", i / 250, i % 250 + 1)
}

#[test]
fn a_kill_during_a_hosts_rewrite_leaves_the_old_or_the_new_file() {
    let nats = NatsServer::start();
    let url = nats.url();
    // A large hosts file, so each rewrite takes a while.
    let mut big = String::from(HOSTS);
    for i in 0..60_000 {
        big.push_str(&format!(
            "172.16.{}.{}\tfiller{i}.example\tf{i}\n",
            i / 250,
            i % 250
        ));
    }
    let root = root_with(&big);
    let spec = ResponderSpec::new("victim")
        .secure(&allow_all(root.path()))
        .extra(&settings(root.path(), ""));
    let mut responder = Responder::start(&nats, spec);
    let hosts = root.path().join("etc/hosts");

    // Fire requests without waiting, one after another, from a thread.
    let fire_url = url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let firing = std::thread::spawn(move || {
        for i in 0..400 {
            if stop2.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let ip = format!("ip=10.2.{}.{}", i / 250, i % 250 + 1);
            let name = format!("name=h{i}");
            mco([
                "rpc",
                "resource",
                "do",
                "type=host",
                &name,
                &ip,
                "-I",
                "victim",
                "--nats",
                &fire_url,
                "--no-results",
            ]);
        }
    });
    // Once a few rewrites have landed, kill -9 while more are under way.
    eventually(Duration::from_secs(60), "a few hosts rewrites", || {
        std::fs::read_to_string(&hosts).is_ok_and(|t| t.contains("\th3\n"))
    });
    responder.child.signal(libc::SIGKILL);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    firing.join().unwrap();

    let after = std::fs::read_to_string(&hosts).unwrap();
    assert!(after.starts_with(&big), "the untouched lines were damaged");
    let tail = &after[big.len()..];
    let mut expect = String::new();
    let mut n = 0;
    while expect.len() < tail.len() {
        expect.push_str(&appended(n));
        n += 1;
    }
    assert_eq!(
        tail, expect,
        "the file holds a partial rewrite after {n} appends"
    );
    assert!(n >= 4, "at least the four rewrites seen before the kill");
}

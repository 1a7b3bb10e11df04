//! Finding 8 of the hardening issue, end to end: the resource agent followed links and raced.
//! Each test is the attack that used to work, against a real responder hosting the resource
//! agent on a temporary system root, driven by the real `mco` over a real nats-server. Each
//! asserts the attack now fails with a clear error, that the node still answers
//! `rpcutil ping` afterwards, and that nothing outside the root (or the managed file) changed.
//!
//! - a `link` to a directory outside the root, then a `file` under it: refused;
//! - a local user swaps `~/.ssh/authorized_keys`, `~/.ssh` or the directory of a file the operator
//!   manages in her home for a link to the outside: not followed, nothing outside changes;
//! - a FIFO planted as `authorized_keys`: the call fails at once and the agent stays usable;
//! - a decoy key line or cron job with the managed name: cannot shadow the managed one.
//!
//! And finding 9 where the agent itself leaked: a refused `environment` or `options` item was
//! quoted whole in the error (reply, audit `statusmsg`, logs), accepted ones came back in the
//! change report, and a password hash went to `useradd`/`usermod` on their command line.

use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mco_tests::replies::replies;
use mco_tests::{mco, NatsServer, Output, Responder, ResponderSpec};
use serde_json::{json, Map, Value};
use tempfile::TempDir;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\nbob:x:1002:1002::/home/bob:/bin/sh\n";
const GROUP: &str = "root:x:0:\ncrontab:x:107:\nalice:x:1001:\nbob:x:1002:\n";
const K1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH";
const K2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJ";
const SHADOW: &str = "root:$6$secret:19000:0:99999:7:::\n";
const ROOT_SHADOW: &str =
    "root:*:19000:0:99999:7:::\nalice:!:19000:0:99999:7:::\nbob:!:19000:0:99999:7:::\n";
const GSHADOW: &str = "root:*::\ncrontab:*::\nalice:!::\nbob:!::\n";
const LOGIN_DEFS: &str =
    "USERGROUPS_ENAB yes\nPASS_MAX_DAYS 99999\nPASS_MIN_DAYS 0\nPASS_WARN_AGE 7\n";
/// What the tests below try to leak.
const SECRET: &str = "hunter2";

/// One node: its system root, a directory outside that root standing for the host's `/etc`,
/// and the responder managing files, keys and cron jobs under the root.
struct Node {
    root: TempDir,
    outside: TempDir,
    _policies: TempDir,
    /// The responder's audit log.
    audit: PathBuf,
    nats: NatsServer,
    _responder: Responder,
}

/// (name, content, mode, uid, gid) of every entry of a directory, to compare before and after.
type Snapshot = Vec<(String, String, u32, u32, u32)>;

fn snapshot(dir: &Path) -> Snapshot {
    let mut out: Snapshot = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let text = if m.is_file() {
                std::fs::read_to_string(e.path()).unwrap()
            } else {
                String::new()
            };
            let name = e.file_name().to_string_lossy().into_owned();
            (name, text, m.mode() & 0o7777, m.uid(), m.gid())
        })
        .collect();
    out.sort();
    out
}

impl Node {
    fn start() -> Node {
        let nats = NatsServer::start();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in [
            "etc",
            "srv",
            "home/alice/.ssh",
            "home/bob/.ssh",
            "var/spool/cron/crontabs",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        for (name, text) in [
            ("passwd", PASSWD),
            ("group", GROUP),
            ("shadow", ROOT_SHADOW),
            ("gshadow", GSHADOW),
            ("login.defs", LOGIN_DEFS),
        ] {
            std::fs::write(r.join("etc").join(name), text).unwrap();
        }
        for (user, id) in [("alice", 1001), ("bob", 1002)] {
            let home = r.join("home").join(user);
            std::os::unix::fs::chown(&home, Some(id), Some(id)).unwrap();
            std::os::unix::fs::chown(home.join(".ssh"), Some(id), Some(id)).unwrap();
        }
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("shadow"), SHADOW).unwrap();
        std::fs::set_permissions(
            outside.path().join("shadow"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        let policies = tempfile::tempdir().unwrap();
        std::fs::write(
            policies.path().join("resource.policy"),
            "policy default allow\n",
        )
        .unwrap();
        let audit = policies.path().join("audit.jsonl");
        let security = format!(
            "insecure = true\npolicy_dir = {:?}\naudit_log = {:?}\n",
            policies.path().display().to_string(),
            audit.display().to_string()
        );
        let settings = format!(
            "[plugin.resource]\nallow_types = [\"file\", \"ssh_authorized_key\", \"cron\", \"exec\", \"user\"]\nroot = {:?}\n[plugin.resource.file]\ndeny_names = [\"/etc/*\"]\n",
            r.display().to_string()
        );
        let spec = ResponderSpec::new("node-1")
            .secure(&security)
            .extra(&settings);
        let responder = Responder::start(&nats, spec);
        Node {
            root,
            outside,
            _policies: policies,
            audit,
            nats,
            _responder: responder,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    /// Every entry of the outside directory.
    fn outside_now(&self) -> Snapshot {
        snapshot(self.outside.path())
    }

    fn mco(&self, args: &[&str]) -> Output {
        let url = self.nats.url();
        let mut all = args.to_vec();
        all.extend(["--nats", url.as_str(), "--dt", "2s", "--np", "-I", "node-1"]);
        mco(all)
    }

    /// `mco rpc resource do` with `props`; the one reply.
    fn act(&self, props: &[&str]) -> Map<String, Value> {
        let mut args = vec!["rpc", "resource", "do"];
        args.extend(props);
        args.push("-j");
        let out = self.mco(&args);
        let mut rs = replies(&out);
        assert_eq!(rs.len(), 1, "one reply: {out:?}");
        rs.remove(0)
    }

    /// Asserts the reply is a refusal whose message contains `why`.
    #[track_caller]
    fn refused(&self, props: &[&str], why: &str) {
        let r = self.act(props);
        assert_eq!(r["statuscode"], json!(1), "{props:?}: {r:?}");
        let msg = r["statusmsg"].as_str().unwrap_or_default();
        assert!(msg.contains(why), "{props:?}: {msg:?} does not say {why:?}");
    }

    /// Asserts the node still answers a ping.
    #[track_caller]
    fn answers(&self) {
        let out = self.mco(&["rpc", "rpcutil", "ping", "-j"]);
        out.assert_success();
        let rs = replies(&out);
        assert_eq!(rs.len(), 1, "{out:?}");
        assert_eq!(rs[0]["statuscode"], json!(0), "{out:?}");
        assert!(rs[0]["data"]["pong"].is_number(), "{out:?}");
    }
}

#[test]
fn a_file_under_a_link_to_a_directory_outside_the_root_is_refused() {
    let n = Node::start();
    let before = n.outside_now();
    let outside = n.outside.path().display().to_string();
    let target = format!("target={outside}");
    // Making the link is allowed: it is the resource's own final component.
    let r = n.act(&["type=file", "name=/srv/etc", "ensure=link", &target]);
    assert_eq!(r["statuscode"], json!(0), "{r:?}");
    assert!(std::fs::symlink_metadata(n.path("srv/etc"))
        .unwrap()
        .file_type()
        .is_symlink());
    // Everything through it is refused: content, mode, owner, directories, removal.
    for props in [
        &[
            "type=file",
            "name=/srv/etc/shadow",
            "content=root::0:::::\n",
        ][..],
        &[
            "type=file",
            "name=/srv/etc/cron.d",
            "content=* * * * * root sh\n",
        ],
        &["type=file", "name=/srv/etc/shadow", "mode=0666"],
        &["type=file", "name=/srv/etc/shadow", "owner=alice"],
        &["type=file", "name=/srv/etc/sudoers.d", "ensure=directory"],
        &["type=file", "name=/srv/etc/shadow", "ensure=absent"],
    ] {
        n.refused(props, "is a symbolic link; refusing to follow it");
    }
    // deny_names holds on the real location: a link to the root's own /etc does not get
    // around `/etc/*`.
    let r = n.act(&["type=file", "name=/srv/in", "ensure=link", "target=../etc"]);
    assert_eq!(r["statuscode"], json!(0), "{r:?}");
    n.refused(
        &["type=file", "name=/srv/in/passwd", "content=owned\n"],
        "symbolic link",
    );
    n.refused(
        &["type=file", "name=/etc/passwd", "content=owned\n"],
        "deny_names",
    );
    assert_eq!(n.read("etc/passwd"), PASSWD);
    assert_eq!(n.outside_now(), before, "nothing outside the root changed");
    n.answers();
}

#[test]
fn a_link_swapped_in_for_authorized_keys_is_not_followed() {
    let n = Node::start();
    let key = format!("key={K1}");
    let want = [
        "type=ssh_authorized_key",
        "name=deploy",
        "user=alice",
        "key_type=ssh-ed25519",
        &key,
    ];
    let r = n.act(&want);
    assert_eq!(r["statuscode"], json!(0), "{r:?}");
    let keys = n.path("home/alice/.ssh/authorized_keys");
    let m = std::fs::metadata(&keys).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1001, 1001, 0o600));

    // alice swaps her file for a link to the host's shadow file.
    std::fs::remove_file(&keys).unwrap();
    symlink(n.outside.path().join("shadow"), &keys).unwrap();
    let before = n.outside_now();
    let key2 = format!("key={K2}");
    n.refused(
        &[
            "type=ssh_authorized_key",
            "name=ci",
            "user=alice",
            "key_type=ssh-ed25519",
            &key2,
        ],
        "symbolic link",
    );
    n.refused(&want, "symbolic link");
    assert!(std::fs::symlink_metadata(&keys)
        .unwrap()
        .file_type()
        .is_symlink());
    // The same with `.ssh` itself a link to the outside directory.
    std::fs::remove_file(&keys).unwrap();
    std::fs::remove_dir(n.path("home/alice/.ssh")).unwrap();
    symlink(n.outside.path(), n.path("home/alice/.ssh")).unwrap();
    n.refused(&want, "symbolic link");
    // The same for a file the operator manages in alice's home: she swaps its directory for a
    // link to the outside one just before the next run. Before, the content was written there
    // and then given to her by a chown through the same path.
    let conf = n.path("home/alice/conf");
    std::fs::create_dir(&conf).unwrap();
    std::os::unix::fs::chown(&conf, Some(1001), Some(1001)).unwrap();
    let app = [
        "type=file",
        "name=/home/alice/conf/app.conf",
        "content=level=1\n",
        "owner=alice",
        "mode=0600",
    ];
    let r = n.act(&app);
    assert_eq!(r["statuscode"], json!(0), "{r:?}");
    std::fs::rename(&conf, n.path("home/alice/conf.old")).unwrap();
    symlink(n.outside.path(), &conf).unwrap();
    n.refused(&app, "symbolic link");
    let after = n.outside_now();
    assert_eq!(
        after, before,
        "owner, mode and content outside are unchanged"
    );
    let shadow = after.iter().find(|e| e.0 == "shadow").unwrap();
    assert_eq!((shadow.1.as_str(), shadow.2, shadow.3), (SHADOW, 0o640, 0));
    n.answers();
}

#[test]
fn a_fifo_as_authorized_keys_fails_at_once_and_the_node_stays_usable() {
    let n = Node::start();
    let fifo = n.path("home/alice/.ssh/authorized_keys");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let key = format!("key={K1}");
    // Before, the agent opened the FIFO and waited for a writer forever, under the lock every
    // change takes: the call timed out and no change of any type was possible afterwards.
    n.refused(
        &[
            "type=ssh_authorized_key",
            "name=deploy",
            "user=alice",
            "key_type=ssh-ed25519",
            &key,
        ],
        "not a regular file",
    );
    n.answers();
    // The agent is not stuck: keys of other users and other types still change.
    let r = n.act(&[
        "type=ssh_authorized_key",
        "name=deploy",
        "user=bob",
        "key_type=ssh-ed25519",
        &key,
    ]);
    assert_eq!(r["statuscode"], json!(0), "{r:?}");
    assert_eq!(r["data"]["changed"], json!(true), "{r:?}");
    let r = n.act(&["type=file", "name=/srv/motd", "content=hello\n"]);
    assert_eq!(r["data"]["changed"], json!(true), "{r:?}");
    assert_eq!(n.read("srv/motd"), "hello\n");
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    n.answers();
}

#[test]
fn decoy_key_lines_and_cron_jobs_cannot_shadow_the_managed_ones() {
    let n = Node::start();
    let keys = n.path("home/alice/.ssh/authorized_keys");
    // A decoy identical to the wanted line comes first; the key being retired stays behind it.
    let planted = format!("ssh-ed25519 {K1} deploy\n# mine\nssh-ed25519 {K2} deploy\n");
    std::fs::write(&keys, &planted).unwrap();
    std::os::unix::fs::chown(&keys, Some(1001), Some(1001)).unwrap();
    let key = format!("key={K1}");
    let r = n.act(&[
        "type=ssh_authorized_key",
        "name=deploy",
        "user=alice",
        "key_type=ssh-ed25519",
        &key,
    ]);
    assert_eq!(r["statuscode"], json!(0), "{r:?}");
    assert_eq!(
        r["data"]["changes"],
        json!([{"property": "duplicates", "old": 1, "new": 0}]),
        "{r:?}"
    );
    assert_eq!(
        n.read("home/alice/.ssh/authorized_keys"),
        format!("ssh-ed25519 {K1} deploy\n# mine\n")
    );

    // A decoy job in a crontab that sorts before root's used to be the one found and removed.
    let spool = "var/spool/cron/crontabs";
    std::fs::write(
        n.path(&format!("{spool}/root")),
        "# mco Name: backup\n0 1 * * * /usr/bin/backup\n",
    )
    .unwrap();
    std::fs::write(
        n.path(&format!("{spool}/alice")),
        "# mco Name: backup\n0 1 * * * /bin/true\n",
    )
    .unwrap();
    let out = n.mco(&["rpc", "resource", "find", "type=cron", "name=backup", "-j"]);
    let found = &replies(&out)[0]["data"]["resource"];
    assert_eq!(found["duplicates"], json!(1), "{out:?}");
    let r = n.act(&["type=cron", "name=backup", "ensure=absent"]);
    assert_eq!(r["statuscode"], json!(0), "{r:?}");
    assert_eq!(r["data"]["changed"], json!(true), "{r:?}");
    assert_eq!(
        n.read(&format!("{spool}/root")),
        "",
        "the real job is gone too"
    );
    assert_eq!(n.read(&format!("{spool}/alice")), "");
    let out = n.mco(&["rpc", "resource", "find", "type=cron", "name=backup", "-j"]);
    assert_eq!(
        replies(&out)[0]["data"]["ensure"],
        json!("absent"),
        "{out:?}"
    );
    n.answers();
}

/// The attacks on secrets: each sends a secret the agent must keep to itself.
impl Node {
    /// `do` with `props`, which must be refused as invalid (status 4) with a message starting
    /// `why`; the whole output of `mco` must not carry the secret.
    #[track_caller]
    fn invalid(&self, props: &[&str], why: &str) {
        let mut args = vec!["rpc", "resource", "do"];
        args.extend(props);
        args.push("-j");
        let out = self.mco(&args);
        assert!(!out.stdout.contains(SECRET), "{out:?}");
        assert!(!out.stderr.contains(SECRET), "{out:?}");
        let rs = replies(&out);
        assert_eq!(rs.len(), 1, "{out:?}");
        assert_eq!(rs[0]["statuscode"], json!(4), "{props:?}: {out:?}");
        let msg = rs[0]["statusmsg"].as_str().unwrap_or_default();
        assert!(
            msg.starts_with(why),
            "{props:?}: {msg:?} does not say {why:?}"
        );
    }

    /// The audit log once it has `n` lines.
    fn audited(&self, n: usize) -> String {
        mco_tests::eventually(
            std::time::Duration::from_secs(10),
            "the audit log to have every request",
            || {
                std::fs::read_to_string(&self.audit)
                    .unwrap_or_default()
                    .lines()
                    .count()
                    >= n
            },
        );
        std::fs::read_to_string(&self.audit).unwrap()
    }
}

#[test]
fn a_sensitive_environment_or_option_value_is_never_echoed_nor_audited() {
    let n = Node::start();
    let tab = "var/spool/cron/crontabs/root";
    // The review's proof: a malformed item used to be quoted whole in the error.
    n.invalid(
        &[
            "type=cron",
            "name=backup",
            "command=/bin/true",
            "user=root",
            "environment=DB-PASSWORD=hunter2",
        ],
        "environment: item 1 is not KEY=VALUE",
    );
    n.invalid(
        &[
            "type=exec",
            "name=/bin/true",
            "environment=A=1,DB-PASSWORD=hunter2",
        ],
        "environment: item 2 is not KEY=VALUE",
    );
    n.invalid(
        &[
            "type=ssh_authorized_key",
            "name=alice@laptop",
            "user=alice",
            "key_type=ssh-ed25519",
            &format!("key={K1}"),
            "options=no-pty,token hunter2",
        ],
        "options: item 2 ",
    );
    assert!(!n.path(tab).exists(), "nothing written");
    assert!(!n.path("home/alice/.ssh/authorized_keys").exists());
    // Accepted secrets are applied, but the reply shows them redacted.
    for props in [
        &[
            "type=cron",
            "name=backup",
            "command=/bin/true",
            "user=root",
            "environment=DB_PASSWORD=hunter2",
        ][..],
        &["type=exec", "name=/bin/true", "environment=TOKEN=hunter2"],
    ] {
        let r = n.act(props);
        assert_eq!(r["statuscode"], json!(0), "{r:?}");
        assert!(
            !Value::Object(r.clone()).to_string().contains(SECRET),
            "{r:?}"
        );
    }
    // A command that fails saying its secret: the failure shows it scrubbed.
    let r = n.act(&[
        "type=exec",
        "name=echo \"denied for $TOKEN\" >&2; exit 3",
        "shell=true",
        "environment=TOKEN=hunter2",
    ]);
    assert_eq!(r["statuscode"], json!(1), "{r:?}");
    let msg = r["statusmsg"].as_str().unwrap_or_default();
    assert!(msg.ends_with("denied for [redacted]"), "{msg:?}");
    assert!(n.read(tab).contains("DB_PASSWORD=hunter2\n"));
    let found = n.act(&["type=cron", "name=backup"][..]);
    assert!(!Value::Object(found).to_string().contains(SECRET));
    let out = n.mco(&["rpc", "resource", "find", "type=cron", "name=backup", "-j"]);
    assert!(!out.stdout.contains(SECRET), "{out:?}");
    let logged = n.audited(8);
    assert!(!logged.contains(SECRET), "{logged}");
    assert!(
        logged.contains("[REDACTED]"),
        "the inputs are redacted: {logged}"
    );
    n.answers();
}

/// The hash now reaches `chpasswd -e -R ROOT` on its standard input (that no tool is given it
/// on its command line is checked on the commands the agent starts, in the resource crate's
/// `a_password_hash_never_reaches_a_command_line`); here the real tools, driven by a real
/// responder, set it under the root, and neither the reply nor the audit log carries it.
#[test]
fn a_password_hash_is_set_through_chpasswd_and_never_echoed() {
    let n = Node::start();
    let hash = format!("$6$salt${SECRET}hashhashhash");
    let pw = format!("password={hash}");
    for props in [
        // created with its hash, then the hash changed along with another property
        &["type=user", "name=carol", "managehome=false", &pw][..],
        &["type=user", "name=alice", "shell=/bin/bash", &pw],
    ] {
        let r = n.act(props);
        assert_eq!(r["statuscode"], json!(0), "{r:?}");
        assert_eq!(r["data"]["changed"], json!(true), "{r:?}");
        assert!(
            !Value::Object(r.clone()).to_string().contains(SECRET),
            "{r:?}"
        );
    }
    let shadow = n.read("etc/shadow");
    for user in ["carol", "alice"] {
        assert!(
            shadow.contains(&format!("\n{user}:{hash}:")),
            "{user}: {shadow}"
        );
    }
    // A plain password is refused without being echoed.
    n.invalid(
        &["type=user", "name=bob", "password=hunter2"],
        "password: must be a crypt(3) hash",
    );
    assert!(n.read("etc/shadow").contains("\nbob:!:"));
    let logged = n.audited(3);
    assert!(!logged.contains(SECRET), "{logged}");
    n.answers();
}

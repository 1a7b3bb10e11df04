//! The attacks on the providers' files that used to work: links among a
//! path's directories, links and FIFOs planted in users' homes, decoy
//! lines shadowing the managed one.

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use crate::types::tests::Fixture;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\nbob:x:1002:1002::/home/bob:/bin/sh\n";
const GROUP: &str = "root:x:0:\ncrontab:x:107:\nalice:x:1001:\nbob:x:1002:\n";
const K1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH";
const K2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJ";

/// A directory outside the fixture's root with one file, and a snapshot
/// of it (names, content, mode, owner) to compare with afterwards.
struct Outside(tempfile::TempDir);

impl Outside {
    fn new() -> Outside {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("shadow"), "root:secret:1::::::\n").unwrap();
        fs::set_permissions(d.path().join("shadow"), fs::Permissions::from_mode(0o640)).unwrap();
        Outside(d)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn snapshot(&self) -> Vec<(String, String, u32, u32, u32)> {
        let mut out: Vec<_> = fs::read_dir(self.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let m = fs::symlink_metadata(e.path()).unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read_to_string(e.path()).unwrap_or_default(),
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid(),
                )
            })
            .collect();
        out.sort();
        out
    }
}

#[test]
fn a_file_under_a_link_to_a_directory_outside_the_root_is_refused() {
    let out = Outside::new();
    let before = out.snapshot();
    let f = Fixture::with("file", "[file]\ndeny_names = [\"/etc/*\"]\n")
        .file("/etc/passwd", PASSWD)
        .file("/etc/group", GROUP)
        .file("/srv/keep", "k\n");
    // The link itself may be made: it is the resource's own final component.
    let outside = out.path().display().to_string();
    f.ensure("/srv/etc", &[("ensure", "link"), ("target", &outside)]);
    f.ensure("/srv/inroot", &[("ensure", "link"), ("target", "../etc")]);
    for (name, props) in [
        ("/srv/etc/shadow", vec![("content", "owned\n")]),
        ("/srv/etc/new", vec![("content", "owned\n")]),
        ("/srv/etc/shadow", vec![("mode", "0666")]),
        ("/srv/etc/shadow", vec![("owner", "alice")]),
        ("/srv/etc/shadow", vec![("ensure", "absent")]),
        ("/srv/etc/dir", vec![("ensure", "directory")]),
        ("/srv/etc/l", vec![("ensure", "link"), ("target", "/x")]),
        // deny_names ["/etc/*"] is checked on the real location: a link
        // inside the root to /etc does not get around it.
        ("/srv/inroot/passwd", vec![("content", "owned\n")]),
    ] {
        let e = f.ensure_err(name, &props);
        assert_eq!(e.status, mco_core::Status::Aborted, "{name} {props:?}");
        assert!(e.message.contains("symbolic link"), "{name}: {}", e.message);
    }
    assert!(f
        .ensure_err("/etc/passwd", &[("content", "x")])
        .message
        .contains("deny_names"));
    assert_eq!(f.read("/etc/passwd"), PASSWD);
    // find says why instead of describing what is behind the link.
    let e = f
        .agent
        .inner
        .find(&serde_json::Map::from_iter([
            ("type".to_string(), json!("file")),
            ("name".to_string(), json!("/srv/etc/shadow")),
        ]))
        .unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    // Owner of the link: the link changes, not the directory it names.
    f.ensure("/srv/etc", &[("owner", "alice")]);
    let lm = fs::symlink_metadata(f.root().join("srv/etc")).unwrap();
    assert_eq!(lm.uid(), 1001);
    assert_eq!(out.snapshot(), before, "nothing outside the root changed");
    assert_eq!(fs::metadata(out.path()).unwrap().uid(), 0);
}

fn keys() -> Fixture {
    let f = Fixture::new("ssh_authorized_key").file("/etc/passwd", PASSWD);
    for u in ["alice", "bob"] {
        let home = f.root().join("home").join(u);
        fs::create_dir_all(home.join(".ssh")).unwrap();
        let id = if u == "alice" { 1001 } else { 1002 };
        std::os::unix::fs::chown(&home, Some(id), Some(id)).unwrap();
        std::os::unix::fs::chown(home.join(".ssh"), Some(id), Some(id)).unwrap();
    }
    f
}

const ALICE: [(&str, &str); 3] = [("user", "alice"), ("key_type", "ssh-ed25519"), ("key", K1)];

#[test]
fn a_symlink_swapped_in_for_authorized_keys_is_not_followed() {
    let out = Outside::new();
    let f = keys();
    let keys = f.root().join("home/alice/.ssh/authorized_keys");
    symlink(out.path().join("shadow"), &keys).unwrap();
    let before = out.snapshot();
    let e = f.ensure_err("deploy", &ALICE);
    assert!(e.message.contains("symbolic link"), "{}", e.message);
    assert!(fs::symlink_metadata(&keys)
        .unwrap()
        .file_type()
        .is_symlink());
    // The same with .ssh itself a link to the outside directory.
    fs::remove_file(&keys).unwrap();
    fs::remove_dir(f.root().join("home/alice/.ssh")).unwrap();
    symlink(out.path(), f.root().join("home/alice/.ssh")).unwrap();
    let e = f.ensure_err("deploy", &ALICE);
    assert!(e.message.contains("symbolic link"), "{}", e.message);
    assert_eq!(out.snapshot(), before, "nothing outside the root changed");
}

#[test]
fn a_fifo_as_authorized_keys_fails_promptly_and_blocks_nothing() {
    let f = keys();
    let fifo = f.root().join("home/alice/.ssh/authorized_keys");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let f = std::sync::Arc::new(f);
    let (tx, rx) = mpsc::channel();
    let g = f.clone();
    std::thread::spawn(move || {
        let e = g.ensure_err("deploy", &ALICE);
        let _ = tx.send(e.message);
    });
    let msg = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the change returned instead of blocking on the FIFO");
    assert!(msg.contains("not a regular file"), "{msg}");
    // Other users' keys are still managed, and find skips the FIFO.
    let bob = [("user", "bob"), ("key_type", "ssh-ed25519"), ("key", K2)];
    assert_eq!(f.ensure("bob-key", &bob)["changed"], json!(true));
    assert_eq!(f.find("bob-key")["resource"]["user"], json!("bob"));
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn a_decoy_key_line_cannot_shadow_the_managed_one() {
    let f = keys();
    // A decoy identical to the desired line comes first; the old key the
    // operator is replacing stays after it.
    let planted = format!("ssh-ed25519 {K1} deploy\n# note\nssh-ed25519 {K2} deploy\n");
    let f = f.file("/home/alice/.ssh/authorized_keys", &planted);
    assert_eq!(f.find("deploy")["resource"]["duplicates"], json!(1));
    let r = f.ensure("deploy", &ALICE);
    assert_eq!(
        r["changes"],
        json!([{"property": "duplicates", "old": 1, "new": 0}])
    );
    assert_eq!(
        f.read("/home/alice/.ssh/authorized_keys"),
        format!("ssh-ed25519 {K1} deploy\n# note\n")
    );
    assert_eq!(f.ensure("deploy", &ALICE)["changes"], json!([]));
    assert!(f.find("deploy")["resource"].get("duplicates").is_none());

    // A decoy in a user's file that comes first in passwd order cannot
    // stand in for the real key on removal.
    let f = f.file(
        "/home/bob/.ssh/authorized_keys",
        &format!("ssh-ed25519 {K2} deploy\n"),
    );
    let f = f.file(
        "/home/alice/.ssh/authorized_keys",
        &format!("ssh-ed25519 {K1} deploy\nssh-ed25519 {K1} other\n"),
    );
    let r = f.ensure("deploy", &[("ensure", "absent")]);
    assert_eq!(r["changed"], json!(true));
    assert_eq!(
        f.read("/home/alice/.ssh/authorized_keys"),
        format!("ssh-ed25519 {K1} other\n")
    );
    assert_eq!(f.read("/home/bob/.ssh/authorized_keys"), "");
    assert_eq!(f.find("deploy")["ensure"], json!("absent"));
}

#[test]
fn a_decoy_cron_job_cannot_shadow_the_managed_one() {
    let f = Fixture::new("cron")
        .file("/etc/passwd", PASSWD)
        .file("/etc/group", GROUP)
        .file(
            "/var/spool/cron/crontabs/root",
            "# mco Name: backup\n0 1 * * * /usr/bin/backup\n# mco Name: backup\n0 2 * * * /usr/bin/old-backup\n",
        )
        // alice sorts before root: her decoy used to be the one found.
        .file(
            "/var/spool/cron/crontabs/alice",
            "# mco Name: backup\n0 1 * * * /usr/bin/backup\n",
        );
    let found = f.find("backup");
    assert_eq!(found["resource"]["user"], json!("alice"));
    assert_eq!(found["resource"]["duplicates"], json!(2));
    let want = [
        ("user", "root"),
        ("command", "/usr/bin/backup"),
        ("minute", "0"),
        ("hour", "1"),
    ];
    let r = f.ensure("backup", &want);
    assert_eq!(
        r["changes"],
        json!([{"property": "duplicates", "old": 1, "new": 0}])
    );
    assert_eq!(
        f.read("/var/spool/cron/crontabs/root"),
        "# mco Name: backup\n0 1 * * * /usr/bin/backup\n"
    );
    // Removal without a user removes every job of the name.
    let r = f.ensure("backup", &[("ensure", "absent")]);
    assert_eq!(r["changed"], json!(true));
    assert_eq!(f.read("/var/spool/cron/crontabs/root"), "");
    assert_eq!(f.read("/var/spool/cron/crontabs/alice"), "");
    assert_eq!(f.find("backup")["ensure"], json!("absent"));
}

#[test]
fn a_fifo_or_link_in_the_cron_spool_is_not_read() {
    let out = Outside::new();
    let before = out.snapshot();
    let f = Fixture::new("cron")
        .file("/etc/passwd", PASSWD)
        .file("/etc/group", GROUP)
        .file("/var/spool/cron/crontabs/root", "");
    let spool = f.root().join("var/spool/cron/crontabs");
    symlink(out.path().join("shadow"), spool.join("alice")).unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        spool.join("bob"),
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    assert_eq!(f.search()["count"], json!(0));
    let e = f.ensure_err("j", &[("user", "alice"), ("command", "/bin/true")]);
    assert!(e.message.contains("symbolic link"), "{}", e.message);
    let e = f.ensure_err("j", &[("user", "bob"), ("command", "/bin/true")]);
    assert!(e.message.contains("not a regular file"), "{}", e.message);
    assert_eq!(out.snapshot(), before);
}

#[test]
fn key_changes_do_not_wait_for_the_lock_of_the_nodes_files() {
    let f = std::sync::Arc::new(keys());
    let system = f
        .agent
        .inner
        .changing
        .iter()
        .find(|(s, _)| *s == "system")
        .map(|(_, m)| m)
        .unwrap();
    // A change of the node's own files is under way (as a slow exec would be)...
    let _held = system.lock();
    let (tx, rx) = mpsc::channel();
    let g = f.clone();
    std::thread::spawn(move || {
        let r = g.ensure("deploy", &ALICE);
        let _ = tx.send(r["changed"].clone());
    });
    // ...and a key change in a home still goes through.
    let changed = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the key change did not wait for the system lock");
    assert_eq!(changed, json!(true));
    assert_eq!(
        f.read("/home/alice/.ssh/authorized_keys"),
        format!("ssh-ed25519 {K1} deploy\n")
    );
}

#[test]
fn exec_cwd_and_creates_are_not_resolved_through_links() {
    let out = Outside::new();
    let f = Fixture::new("exec")
        .file("/etc/passwd", PASSWD)
        .file("/srv/keep", "k\n");
    let outside = out.path().display().to_string();
    symlink(&outside, f.root().join("srv/etc")).unwrap();
    let e = f.ensure_err("pwd", &[("cwd", "/srv/etc")]);
    assert!(e.message.contains("symbolic link"), "{}", e.message);
    // `creates` behind a link cannot make the command skip (or run) at a local user's will.
    let e = f.ensure_err("true", &[("creates", "/srv/etc/shadow")]);
    assert!(e.message.contains("symbolic link"), "{}", e.message);
    // The real directory works, entered by descriptor.
    let r = f.ensure("pwd", &[("cwd", "/srv")]);
    let shown = r["resource"]["output"].as_str().unwrap().trim().to_string();
    assert_eq!(
        Path::new(&shown),
        f.root().canonicalize().unwrap().join("srv")
    );
}

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use super::*;

/// A root with `srv/` in it, and a directory outside the root holding
/// `secret` (0640) that no operation may reach.
struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    fs: Beneath,
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    fs::create_dir_all(root.join("srv")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), "secret\n").unwrap();
    fs::set_permissions(outside.join("secret"), fs::Permissions::from_mode(0o640)).unwrap();
    let fs = Beneath::new(&root);
    Tree {
        _dir: dir,
        root,
        outside,
        fs,
    }
}

impl Tree {
    /// (content, mode, uid, gid) of the outside file, and what the outside
    /// directory holds.
    fn outside_state(&self) -> (String, u32, u32, u32, Vec<String>) {
        let p = self.outside.join("secret");
        let m = fs::symlink_metadata(&p).unwrap();
        let mut names: Vec<String> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        (
            fs::read_to_string(&p).unwrap(),
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            names,
        )
    }
}

fn refused(r: Result<impl std::fmt::Debug, Failure>, what: &str) -> String {
    let e = r.expect_err(what).to_string();
    assert!(e.contains("symbolic link"), "{what}: {e}");
    e
}

#[test]
fn a_symlinked_directory_on_the_way_is_refused_by_every_operation() {
    let t = tree();
    symlink(&t.outside, t.root.join("srv/etc")).unwrap();
    let before = t.outside_state();
    let f = &t.fs;
    let e = refused(f.read("/srv/etc/secret", READ_LIMIT), "read");
    assert!(e.contains("srv/etc"), "the error names the link: {e}");
    refused(f.lstat("/srv/etc/secret"), "lstat");
    refused(f.open_file("/srv/etc/secret").map(|_| ()), "open");
    refused(
        f.write("/srv/etc/secret", b"owned\n", &WriteOpts::keep(0o644)),
        "write",
    );
    refused(
        f.write("/srv/etc/new", b"owned\n", &WriteOpts::keep(0o644)),
        "create",
    );
    refused(
        f.set_meta("/srv/etc/secret", Some(0o777), (Some(0), Some(0))),
        "chmod",
    );
    refused(
        f.set_link_owner("/srv/etc/secret", (Some(0), None)),
        "lchown",
    );
    refused(f.mkdir("/srv/etc/d", 0o755, (None, None)), "mkdir");
    refused(f.mkdir_all("/srv/etc/d/e", 0o755), "mkdir -p");
    refused(f.symlink("/srv/etc/l", "/x"), "symlink");
    refused(f.remove("/srv/etc/secret", false), "remove");
    refused(f.create_new("/srv/etc/lock", b"1", 0o600), "create_new");
    refused(f.list("/srv/etc"), "list");
    refused(f.open_dir("/srv/etc").map(|_| ()), "open_dir");
    refused(f.chown_tree("/srv/etc", 0, 1), "chown_tree");
    // `..` is clamped lexically: it cannot climb out either.
    assert_eq!(f.read("/../outside/secret", READ_LIMIT).unwrap(), None);
    assert_eq!(t.outside_state(), before, "nothing outside changed");
}

#[test]
fn a_final_symlink_is_neither_read_nor_written_through() {
    let t = tree();
    let link = t.root.join("srv/keys");
    symlink(t.outside.join("secret"), &link).unwrap();
    let before = t.outside_state();
    let f = &t.fs;
    refused(f.read("/srv/keys", READ_LIMIT), "read");
    refused(
        f.write("/srv/keys", b"x\n", &WriteOpts::keep(0o600)),
        "write",
    );
    refused(
        f.set_meta("/srv/keys", Some(0o666), (Some(1001), None)),
        "chmod",
    );
    assert_eq!(f.lstat("/srv/keys").unwrap().unwrap().kind, Kind::Symlink);
    assert_eq!(
        f.read_link("/srv/keys").unwrap().unwrap(),
        t.outside.join("secret")
    );
    // Owner of the link itself, not of what it points to.
    f.set_link_owner("/srv/keys", (Some(1001), Some(1002)))
        .unwrap();
    let lm = fs::symlink_metadata(&link).unwrap();
    assert_eq!((lm.uid(), lm.gid()), (1001, 1002));
    // Replacing the link by a file replaces the link only.
    let opts = WriteOpts {
        replace_link: true,
        ..WriteOpts::keep(0o600)
    };
    f.write("/srv/keys", b"mine\n", &opts).unwrap();
    assert!(fs::symlink_metadata(&link).unwrap().is_file());
    assert_eq!(fs::read_to_string(&link).unwrap(), "mine\n");
    assert_eq!(t.outside_state(), before, "nothing outside changed");
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let t = tree();
    let fifo = t.root.join("srv/authorized_keys");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
    let f = t.fs.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let read = f.read("/srv/authorized_keys", READ_LIMIT).map(|_| ());
        let chmod = f.set_meta("/srv/authorized_keys", Some(0o644), (None, None));
        let write = f.write("/srv/authorized_keys", b"x", &WriteOpts::keep(0o600));
        let _ = tx.send((read, chmod, write));
    });
    // A reader stuck in open(2) would never answer: the deadline fails the
    // test instead of hanging it.
    let (read, chmod, write) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("reading a FIFO returned instead of blocking");
    let e = read.unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
    assert!(chmod.unwrap_err().to_string().contains("FIFO"));
    assert!(write.unwrap_err().to_string().contains("FIFO"));
    let m = fs::symlink_metadata(&fifo).unwrap();
    assert!(
        m.file_type().is_fifo(),
        "the FIFO is still there, untouched"
    );
    assert_eq!(m.mode() & 0o7777, 0o600);
}

#[test]
fn a_new_file_gets_owner_and_mode_on_its_descriptor_and_no_temporaries_stay() {
    let t = tree();
    let f = &t.fs;
    let opts = WriteOpts {
        new_uid: Some(1001),
        new_gid: Some(1002),
        ..WriteOpts::keep(0o600)
    };
    f.write("/srv/k", b"one\n", &opts).unwrap();
    let m = fs::metadata(t.root.join("srv/k")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1001, 1002, 0o600));
    // An existing file keeps its owner and mode...
    fs::set_permissions(t.root.join("srv/k"), fs::Permissions::from_mode(0o640)).unwrap();
    f.write("/srv/k", b"two\n", &opts).unwrap();
    let m = fs::metadata(t.root.join("srv/k")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1001, 1002, 0o640));
    // ...unless told otherwise.
    let force = WriteOpts {
        mode: Some(0o644),
        uid: Some(0),
        gid: Some(0),
        ..opts
    };
    f.write("/srv/k", b"three\n", &force).unwrap();
    let m = fs::metadata(t.root.join("srv/k")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 0, 0o644));
    // A failure after the temporary was made leaves the old file and no
    // temporary.
    let bad = WriteOpts {
        uid: Some(u32::MAX),
        ..opts
    };
    assert!(f.write("/srv/k", b"four\n", &bad).is_err());
    assert_eq!(fs::read_to_string(t.root.join("srv/k")).unwrap(), "three\n");
    let names: Vec<_> = fs::read_dir(t.root.join("srv")).unwrap().collect();
    assert_eq!(names.len(), 1, "only the file itself: {names:?}");
    // A directory made with its owner and mode, on its descriptor.
    f.mkdir("/srv/.ssh", 0o700, (Some(1001), Some(1002)))
        .unwrap();
    let m = fs::metadata(t.root.join("srv/.ssh")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1001, 1002, 0o700));
    assert!(f.mkdir("/srv/.ssh", 0o700, (None, None)).is_err());
    // Mode and owner on a descriptor; a hard-linked file is refused.
    f.set_meta("/srv/k", Some(0o600), (Some(1001), None))
        .unwrap();
    let m = fs::metadata(t.root.join("srv/k")).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (1001, 0o600));
    fs::hard_link(t.outside.join("secret"), t.root.join("srv/hard")).unwrap();
    let before = t.outside_state();
    let e = f
        .set_meta("/srv/hard", Some(0o666), (Some(1001), None))
        .unwrap_err();
    assert!(e.to_string().contains("hard links"), "{e}");
    assert_eq!(t.outside_state(), before);
}

#[test]
fn reads_are_bounded() {
    let t = tree();
    fs::write(t.root.join("srv/big"), vec![b'x'; 100]).unwrap();
    assert_eq!(t.fs.read("/srv/big", 100).unwrap().unwrap().len(), 100);
    let e = t.fs.read("/srv/big", 99).unwrap_err();
    assert!(e.to_string().contains("larger than 99 bytes"), "{e}");
    assert_eq!(t.fs.read("/srv/none", 10).unwrap(), None);
    assert_eq!(t.fs.read("/none/none", 10).unwrap(), None);
    let e = t.fs.read("/srv", 10).unwrap_err();
    assert!(e.to_string().contains("directory"), "{e}");
}

#[test]
fn chown_tree_changes_only_the_users_entries_and_never_follows_links() {
    let t = tree();
    let home = t.root.join("home/alice");
    fs::create_dir_all(home.join("a/b")).unwrap();
    fs::write(home.join("a/b/f"), "f").unwrap();
    fs::write(home.join("root-owned"), "r").unwrap();
    for p in ["", "a", "a/b", "a/b/f"] {
        std::os::unix::fs::lchown(home.join(p), Some(1001), Some(1001)).unwrap();
    }
    // Links to a file and a directory outside, owned by the user.
    symlink(t.outside.join("secret"), home.join("a/shadow")).unwrap();
    symlink(&t.outside, home.join("a/etc")).unwrap();
    std::os::unix::fs::lchown(home.join("a/shadow"), Some(1001), Some(1001)).unwrap();
    std::os::unix::fs::chown(t.outside.join("secret"), Some(1001), None).unwrap();
    let before = t.outside_state();
    t.fs.chown_tree("/home/alice", 1001, 2002).unwrap();
    for p in ["", "a", "a/b", "a/b/f", "a/shadow"] {
        let m = fs::symlink_metadata(home.join(p)).unwrap();
        assert_eq!(m.uid(), 2002, "{p}");
        assert_eq!(m.gid(), 1001, "{p}: only the owner changes");
    }
    assert_eq!(fs::metadata(home.join("root-owned")).unwrap().uid(), 0);
    assert_eq!(
        t.outside_state(),
        before,
        "the links' targets are untouched"
    );
}

#[test]
fn chown_tree_is_bounded_in_depth() {
    let t = tree();
    let mut p = t.root.join("deep");
    for _ in 0..(TREE_DEPTH + 2) {
        p.push("d");
    }
    fs::create_dir_all(&p).unwrap();
    let e = t.fs.chown_tree("/deep", 1, 2).unwrap_err();
    assert!(e.to_string().contains("directories deep"), "{e}");
}

#[test]
fn links_are_made_atomically_and_listings_do_not_follow() {
    let t = tree();
    let f = &t.fs;
    f.symlink("/srv/cur", "/etc").unwrap();
    f.symlink("/srv/cur", "../x").unwrap();
    assert_eq!(
        fs::read_link(t.root.join("srv/cur")).unwrap(),
        Path::new("../x")
    );
    f.mkdir_all("/srv/a/b", 0o750).unwrap();
    let m = fs::metadata(t.root.join("srv/a/b")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o750);
    let listed = f.list("/srv").unwrap().unwrap();
    assert_eq!(
        listed,
        vec![
            (OsString::from("a"), Kind::Dir),
            (OsString::from("cur"), Kind::Symlink)
        ]
    );
    let e = f.symlink("/srv/a", "/x").unwrap_err();
    assert!(e.to_string().contains("directory"), "{e}");
    assert!(f.remove("/srv/cur", false).unwrap());
    assert!(!f.remove("/srv/cur", false).unwrap());
    assert!(f
        .remove("/srv/a", true)
        .unwrap_err()
        .to_string()
        .contains("not empty"));
    assert!(f.create_new("/srv/lock", b"1", 0o600).unwrap());
    assert!(!f.create_new("/srv/lock", b"2", 0o600).unwrap());
    assert_eq!(fs::read_to_string(t.root.join("srv/lock")).unwrap(), "1");
}

#[test]
fn devices_and_sockets_are_refused_without_being_opened() {
    let t = tree();
    let dev = t.root.join("srv/null");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &dev,
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o600),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(t.root.join("srv/sock")).unwrap();
    for name in ["/srv/null", "/srv/sock"] {
        let e = t.fs.read(name, 10).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{name}: {e}");
        let e =
            t.fs.set_meta(name, Some(0o666), (None, None))
                .unwrap_err()
                .to_string();
        assert!(e.contains("refusing to change it"), "{name}: {e}");
        assert_eq!(t.fs.lstat(name).unwrap().unwrap().kind, Kind::Other);
    }
    assert_eq!(fs::symlink_metadata(&dev).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(t.fs.lstat("/").unwrap().unwrap().kind, Kind::Dir);
}

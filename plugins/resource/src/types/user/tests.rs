use super::*;
use crate::types::tests::Fixture;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) const PASSWD0: &str = "root:x:0:0:root:/root:/bin/bash\n# local accounts below\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\nold:x:1500:100:Old Timer:/home/old:/bin/sh\n";
pub(crate) const GROUP0: &str = "root:x:0:\nbin:x:2:\nusers:x:100:old\nstaff:x:50:\n";
pub(crate) const SHADOW0: &str =
    "root:*:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\nold:$6$salt$oldhash:19000:0:99999:7:::\n";
pub(crate) const GSHADOW0: &str = "root:*::\nbin:*::\nusers:*::old\nstaff:*::\n";
/// As Debian ships them: user groups, no password ageing.
const LOGIN_DEFS: &str =
    "# test\nUSERGROUPS_ENAB yes\nPASS_MAX_DAYS 99999\nPASS_MIN_DAYS 0\nPASS_WARN_AGE 7\n";

pub(crate) fn accounts(ty: &'static str) -> Fixture {
    Fixture::new(ty)
        .file(PASSWD, PASSWD0)
        .file(GROUP, GROUP0)
        .file(SHADOW, SHADOW0)
        .file(GSHADOW, GSHADOW0)
        .file("/etc/login.defs", LOGIN_DEFS)
}

fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86400
}

fn unchanged(f: &Fixture) {
    assert_eq!(f.read(PASSWD), PASSWD0);
    assert_eq!(f.read(GROUP), GROUP0);
    assert_eq!(f.read(SHADOW), SHADOW0);
    assert_eq!(f.read(GSHADOW), GSHADOW0);
}

const ALICE: &[(&str, &str)] = &[
    ("uid", "1001"),
    ("groups", "staff"),
    ("comment", "Alice A"),
    ("home", "/home/alice"),
    ("shell", "/bin/bash"),
    ("password", "$6$salt$hash"),
    ("managehome", "true"),
];

#[test]
fn create_modify_rerun_noop_remove_find_search() {
    let f = accounts("user");
    let day = today();

    // noop: reports, touches nothing
    let mut noop = ALICE.to_vec();
    noop.push(("noop", "true"));
    let r = f.ensure("alice", &noop);
    assert_eq!(r["changed"], json!(false));
    assert_eq!(r["changes"][0]["property"], json!("ensure"));
    unchanged(&f);
    assert!(!f.root().join("home/alice").exists());

    // create
    let r = f.ensure("alice", ALICE);
    assert_eq!(r["changed"], json!(true));
    let props: Vec<&str> = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["property"].as_str().unwrap())
        .collect();
    assert_eq!(
        props,
        ["ensure", "uid", "groups", "comment", "home", "shell", "password"]
    );
    let pw = r["changes"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(pw["new"], json!("[redacted]"));
    assert_eq!(r["resource"]["password"], json!("[redacted]"));
    assert_eq!(
        f.read(PASSWD),
        format!("{PASSWD0}alice:x:1001:1001:Alice A:/home/alice:/bin/bash\n")
    );
    assert_eq!(
        f.read(GROUP),
        "root:x:0:\nbin:x:2:\nusers:x:100:old\nstaff:x:50:alice\nalice:x:1001:\n"
    );
    assert_eq!(
        f.read(SHADOW),
        format!("{SHADOW0}alice:$6$salt$hash:{day}:0:99999:7:::\n")
    );
    assert_eq!(
        f.read(GSHADOW),
        "root:*::\nbin:*::\nusers:*::old\nstaff:*::alice\nalice:!::\n"
    );
    let home = fs::metadata(f.root().join("home/alice")).unwrap();
    assert!(home.is_dir());
    assert_eq!((home.uid(), home.gid()), (1001, 1001));

    // idempotent, the primary group given by name or number
    let mut again = ALICE.to_vec();
    again.push(("gid", "alice"));
    let r = f.ensure("alice", &again);
    assert_eq!(r["changed"], json!(false));
    assert_eq!(r["changes"], json!([]));
    again.pop();
    again.push(("gid", "1001"));
    assert_eq!(f.ensure("alice", &again)["changes"], json!([]));

    // modify: uid (natively under a temporary root), groups, shell,
    // comment, password; the home's files follow the uid
    fs::write(f.root().join("home/alice/notes"), "x").unwrap();
    std::os::unix::fs::lchown(f.root().join("home/alice/notes"), Some(1001), Some(1001)).unwrap();
    let r = f.ensure(
        "alice",
        &[
            ("uid", "1005"),
            ("groups", "bin,2"),
            ("shell", "/bin/sh"),
            ("comment", "Alice B"),
            ("password", "!"),
        ],
    );
    assert_eq!(
        r["changes"],
        json!([
            {"property": "uid", "old": 1001, "new": 1005},
            {"property": "groups", "old": ["staff"], "new": ["bin", "2"]},
            {"property": "comment", "old": "Alice A", "new": "Alice B"},
            {"property": "shell", "old": "/bin/bash", "new": "/bin/sh"},
            {"property": "password", "old": "[redacted]", "new": "[redacted]"},
        ])
    );
    assert_eq!(
        f.read(PASSWD),
        format!("{PASSWD0}alice:x:1005:1001:Alice B:/home/alice:/bin/sh\n")
    );
    assert_eq!(
        f.read(GROUP),
        "root:x:0:\nbin:x:2:alice\nusers:x:100:old\nstaff:x:50:\nalice:x:1001:\n"
    );
    assert_eq!(
        f.read(SHADOW),
        format!("{SHADOW0}alice:!:{day}:0:99999:7:::\n")
    );
    assert_eq!(
        f.read(GSHADOW),
        "root:*::\nbin:*::alice\nusers:*::old\nstaff:*::\nalice:!::\n"
    );
    for p in ["home/alice", "home/alice/notes"] {
        assert_eq!(fs::metadata(f.root().join(p)).unwrap().uid(), 1005, "{p}");
    }
    assert!(!f.root().join("etc/passwd.lock").exists());

    // primary group of another user, by number; other lines untouched
    let r = f.ensure("old", &[("gid", "50")]);
    assert_eq!(
        r["changes"],
        json!([{"property": "gid", "old": "users", "new": "50"}])
    );
    let passwd1 = "root:x:0:0:root:/root:/bin/bash\n# local accounts below\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\nold:x:1500:50:Old Timer:/home/old:/bin/sh\n";
    assert_eq!(
        f.read(PASSWD),
        format!("{passwd1}alice:x:1005:1001:Alice B:/home/alice:/bin/sh\n")
    );

    // find and search
    let found = f.find("alice");
    assert_eq!(found["ensure"], json!("present"));
    let res = &found["resource"];
    assert_eq!(res["uid"], json!(1005));
    assert_eq!(res["gid"], json!("alice"));
    assert_eq!(res["groups"], json!(["bin"]));
    assert_eq!(res["home"], json!("/home/alice"));
    assert_eq!(res["password"], json!("[redacted]"));
    assert_eq!(f.find("nobody")["ensure"], json!("absent"));
    let names: Vec<String> = f.search()["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["root", "bin", "old", "alice"]);

    // remove, with the home and the user's own group
    let r = f.ensure("alice", &[("ensure", "absent"), ("managehome", "true")]);
    assert_eq!(r["changed"], json!(true));
    assert_eq!(f.read(PASSWD), passwd1);
    assert_eq!(f.read(GROUP), GROUP0);
    assert_eq!(f.read(SHADOW), SHADOW0);
    assert_eq!(f.read(GSHADOW), GSHADOW0);
    assert!(!f.root().join("home/alice").exists());
    let r = f.ensure("alice", &[("ensure", "absent")]);
    assert_eq!(r["changed"], json!(false));
}

#[test]
fn system_users_and_existing_user_groups() {
    let f = accounts("user")
        .file(GROUP, &format!("{GROUP0}svc:x:1200:\n"))
        .file(GSHADOW, &format!("{GSHADOW0}svc:!::\n"));
    let r = f.ensure("svc", &[("system", "true"), ("shell", "/usr/sbin/nologin")]);
    assert_eq!(r["changed"], json!(true));
    let res = &f.find("svc")["resource"];
    assert!(res["uid"].as_i64().unwrap() < 1000, "{res}");
    assert_eq!(res["gid"], json!("svc"));
    assert_eq!(res["password"], json!("[redacted]"));
    assert!(f.read(SHADOW).starts_with(SHADOW0));
    assert!(!f.root().join("home/svc").exists());
    assert_eq!(f.read(GROUP), format!("{GROUP0}svc:x:1200:\n"));
}

#[test]
fn managed_homes_move_and_stay_unless_managed() {
    let f = accounts("user");
    let bob = [("uid", "1010"), ("home", "/home/bob"), ("shell", "/bin/sh")];
    let mut create = bob.to_vec();
    create.push(("managehome", "true"));
    f.ensure("bob", &create);
    fs::write(f.root().join("home/bob/notes"), "kept").unwrap();
    // usermod -m moves the home but does not make its parent
    fs::create_dir(f.root().join("srv")).unwrap();
    let r = f.ensure("bob", &[("home", "/srv/bob"), ("managehome", "true")]);
    assert_eq!(
        r["changes"],
        json!([{"property": "home", "old": "/home/bob", "new": "/srv/bob"}])
    );
    assert!(!f.root().join("home/bob").exists());
    assert_eq!(
        fs::read_to_string(f.root().join("srv/bob/notes")).unwrap(),
        "kept"
    );
    assert_eq!(
        f.read(PASSWD),
        format!("{PASSWD0}bob:x:1010:1010::/srv/bob:/bin/sh\n")
    );
    // removed without managehome: the home stays
    f.ensure("bob", &[("ensure", "absent")]);
    assert_eq!(f.read(PASSWD), PASSWD0);
    assert_eq!(f.read(GROUP), GROUP0);
    assert!(f.root().join("srv/bob/notes").exists());
}

#[test]
fn the_real_root_gets_no_prefix() {
    let real = System::new("/", std::time::Duration::from_secs(1));
    assert!(prefix(&real).is_empty());
    let tmp = System::new("/tmp/r", std::time::Duration::from_secs(1));
    assert_eq!(prefix(&tmp), ["--prefix", "/tmp/r"]);
}

#[test]
fn bad_input_names_the_property_and_touches_nothing() {
    let f = accounts("user");
    for (props, prop) in [
        (vec![("password", "secret")], "password"),
        (vec![("password", "$6$onlysalt")], "password"),
        (vec![("uid", "abc")], "uid"),
        (vec![("comment", "a:b")], "comment"),
        (vec![("home", "home/x")], "home"),
        (vec![("shell", "/bin/sh\nx")], "shell"),
        (vec![("groups", "ok,b@d")], "groups"),
        (vec![("managehome", "perhaps")], "managehome"),
    ] {
        let e = f.ensure_err("carol", &props);
        assert_eq!(e.status, mco_core::Status::InvalidData, "{props:?}");
        assert!(e.message.starts_with(&format!("{prop}:")), "{}", e.message);
    }
    let e = f.ensure_err("bad:name", &[]);
    assert!(e.message.starts_with("name:"), "{}", e.message);
    // groups the root does not have, even in noop
    for (props, prop) in [
        (vec![("gid", "nosuch")], "gid"),
        (vec![("gid", "4242")], "gid"),
        (vec![("groups", "staff,nosuch"), ("noop", "true")], "groups"),
        (vec![("groups", "4242")], "groups"),
    ] {
        let e = f.ensure_err("carol", &props);
        assert_eq!(e.status, mco_core::Status::InvalidData, "{props:?}");
        assert!(e.message.starts_with(&format!("{prop}:")), "{}", e.message);
    }
    // refused by the tool: a uid in use; the hash is never echoed
    let e = f.ensure_err("carol", &[("uid", "0"), ("password", "$6$salt$hash")]);
    assert_eq!(e.status, mco_core::Status::Aborted);
    assert!(e.message.contains("useradd failed"), "{}", e.message);
    assert!(!e.message.contains("$6$"), "{}", e.message);
    unchanged(&f);
}

#[test]
fn passwords_must_be_hashes() {
    for ok in [
        "$6$salt$hash",
        "$y$j9T$salt$hash",
        "$2b$10$abcdefghijklmnopqrstuv",
        "!",
        "!!",
        "*",
        "!$6$salt$hash",
        "!*",
    ] {
        assert!(password_ok(ok), "{ok}");
    }
    for bad in ["", "secret", "$6$", "$6$salt$", "$6$a b$c", "x:y", "$$a$b"] {
        assert!(!password_ok(bad), "{bad}");
    }
}

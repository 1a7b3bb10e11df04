//! `group`: local groups in the root's `/etc/group` (and `/etc/gshadow`).
//!
//! Groups are created, renumbered and removed with the shadow tools
//! (`groupadd`, `groupmod -g`, `groupdel`), given `--prefix ROOT` when the
//! root is not `/`; `system` allocates a system gid (`groupadd -r`).
//!
//! Members are set natively: `gpasswd` and `groupmems` have no `--prefix`
//! (only `--root`, a chroot, which needs the tools inside the root), and
//! `groupmod -U` rewrites `/etc/group` but leaves `/etc/gshadow`'s member
//! list stale. So the member field of the group's line in `/etc/group` and,
//! when present, `/etc/gshadow` is rewritten atomically, under the
//! `.lock` files the shadow tools honour; every other line is kept byte for
//! byte. Members must be users of the root's `/etc/passwd`; they are
//! compared as a set and written in the order given.

use serde_json::{json, Value};

use crate::model::{strings, Change, Failure, Kind, Property, State};
use crate::system::{lines, Cmd, System};
use crate::types::user::{
    account_name_ok, fields, prefix, read_groups, read_passwd, run_tool, set_field, FileLock,
    GroupEntry, GROUP, GSHADOW,
};
use crate::types::{missing, ResourceType};

const PROPS: &[Property] = &[
    Property::new("ensure", Kind::OneOf(&["present", "absent"])),
    Property::new("gid", Kind::Integer),
    Property::new("members", Kind::List),
    Property::new("system", Kind::Boolean).parameter(),
];

/// The `group` type.
pub struct Group;

fn state(g: &GroupEntry) -> State {
    let mut s = State::new();
    s.insert("name".into(), json!(g.name));
    s.insert("ensure".into(), json!("present"));
    s.insert("gid".into(), json!(g.gid));
    s.insert("members".into(), json!(g.members));
    s
}

/// Refuses members that are not users of the root.
fn check_members(sys: &System, members: &[String]) -> Result<(), Failure> {
    if members.is_empty() {
        return Ok(());
    }
    let users = read_passwd(sys)?;
    for m in members {
        if !users.iter().any(|u| u.name == *m) {
            return Err(Failure::invalid(
                "members",
                format!("{m:?} is not a user of this node"),
            ));
        }
    }
    Ok(())
}

/// Rewrites the member field of `name` in one database file (field
/// `index`); a missing file or line is left alone.
fn set_members_in(
    sys: &System,
    file: &str,
    name: &str,
    index: usize,
    members: &str,
) -> Result<(), Failure> {
    let Some(text) = sys.read(file)? else {
        return Ok(());
    };
    let mut out = lines(&text);
    let mut hit = false;
    for l in out.iter_mut() {
        if fields(l).is_some_and(|f| f.first() == Some(&name) && f.len() > index) {
            *l = set_field(l, index, members);
            hit = true;
        }
    }
    if hit {
        sys.write(file, out.concat().as_bytes(), 0o640)?;
    }
    Ok(())
}

fn set_members(sys: &System, name: &str, members: &[String]) -> Result<(), Failure> {
    let _g = FileLock::take(sys, GROUP)?;
    let _gs = FileLock::take(sys, GSHADOW)?;
    let list = members.join(",");
    if !read_groups(sys)?.iter().any(|g| g.name == name) {
        return Err(Failure::failed(format!(
            "group {name} vanished from {GROUP}"
        )));
    }
    set_members_in(sys, GROUP, name, 3, &list)?;
    set_members_in(sys, GSHADOW, name, 3, &list)
}

impl ResourceType for Group {
    fn name(&self) -> &'static str {
        "group"
    }

    fn properties(&self) -> &'static [Property] {
        PROPS
    }

    fn validate(&self, name: &str, desired: &State) -> Result<(), Failure> {
        if !account_name_ok(name) || name.ends_with('$') {
            return Err(Failure::invalid(
                "name",
                format!("{name:?} is not a valid group name"),
            ));
        }
        if let Some(gid) = desired.get("gid").and_then(Value::as_i64) {
            if !(0..u32::MAX as i64).contains(&gid) {
                return Err(Failure::invalid("gid", format!("{gid} is out of range")));
            }
        }
        if let Some(ms) = desired.get("members") {
            for m in strings(ms) {
                if !account_name_ok(&m) {
                    return Err(Failure::invalid(
                        "members",
                        format!("{m:?} is not a valid user name"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn find(&self, sys: &System, name: &str) -> Result<State, Failure> {
        Ok(read_groups(sys)?
            .iter()
            .find(|g| g.name == name)
            .map(state)
            .unwrap_or_else(|| missing(name)))
    }

    fn search(&self, sys: &System) -> Result<Vec<State>, Failure> {
        Ok(read_groups(sys)?.iter().map(state).collect())
    }

    /// [`ResourceType::find`], refusing members the root's `/etc/passwd`
    /// does not have (also in noop).
    fn current(&self, sys: &System, name: &str, desired: &State) -> Result<State, Failure> {
        if let Some(m) = desired.get("members") {
            check_members(sys, &strings(m))?;
        }
        self.find(sys, name)
    }

    fn apply(
        &self,
        sys: &System,
        name: &str,
        desired: &State,
        current: &State,
        changes: &[Change],
    ) -> Result<(), Failure> {
        if desired.get("ensure").and_then(Value::as_str) == Some("absent") {
            let c = Cmd::new("groupdel").args(prefix(sys)).arg(name);
            return run_tool(sys, &c, "groupdel");
        }
        let members = desired.get("members").map(strings);
        if let Some(m) = &members {
            check_members(sys, m)?;
        }
        let gid = desired.get("gid").and_then(Value::as_i64);
        let creating = current.get("ensure").and_then(Value::as_str) != Some("present");
        if creating {
            let mut c = Cmd::new("groupadd").args(prefix(sys));
            if let Some(g) = gid {
                c = c.args(["-g".to_string(), g.to_string()]);
            }
            if desired.get("system").and_then(Value::as_bool) == Some(true) {
                c = c.arg("-r");
            }
            run_tool(sys, &c.arg(name), "groupadd")?;
        } else if let Some(g) = gid.filter(|_| changes.iter().any(|c| c.property == "gid")) {
            let c = Cmd::new("groupmod")
                .args(prefix(sys))
                .args(["-g".to_string(), g.to_string()])
                .arg(name);
            run_tool(sys, &c, "groupmod")?;
        }
        if let Some(m) = members {
            if changes.iter().any(|c| c.property == "members") && !(creating && m.is_empty()) {
                set_members(sys, name, &m)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::user::tests::{accounts, GROUP0, GSHADOW0};
    use crate::types::user::{PASSWD, SHADOW};

    #[test]
    fn create_modify_rerun_noop_remove_find_search() {
        let f = accounts("group");
        let passwd0 = f.read(PASSWD);
        let shadow0 = f.read(SHADOW);

        // noop
        let r = f.ensure(
            "devs",
            &[("gid", "2000"), ("members", "old,bin"), ("noop", "true")],
        );
        assert_eq!(r["changed"], json!(false));
        assert_eq!(r["changes"][0]["property"], json!("ensure"));
        assert_eq!(f.read(GROUP), GROUP0);
        assert_eq!(f.read(GSHADOW), GSHADOW0);

        // create
        let r = f.ensure("devs", &[("gid", "2000"), ("members", "old,bin")]);
        assert_eq!(r["changed"], json!(true));
        assert_eq!(f.read(GROUP), format!("{GROUP0}devs:x:2000:old,bin\n"));
        assert_eq!(f.read(GSHADOW), format!("{GSHADOW0}devs:!::old,bin\n"));

        // idempotent: members as a set
        let r = f.ensure("devs", &[("gid", "2000"), ("members", "bin, old")]);
        assert_eq!(r["changes"], json!([]));

        // modify
        let r = f.ensure("devs", &[("gid", "2001"), ("members", "old")]);
        assert_eq!(
            r["changes"],
            json!([
                {"property": "gid", "old": 2000, "new": 2001},
                {"property": "members", "old": ["old", "bin"], "new": ["old"]},
            ])
        );
        assert_eq!(f.read(GROUP), format!("{GROUP0}devs:x:2001:old\n"));
        assert_eq!(f.read(GSHADOW), format!("{GSHADOW0}devs:!::old\n"));
        let r = f.ensure("staff", &[("members", "old")]);
        assert_eq!(r["changed"], json!(true));
        assert_eq!(
            f.read(GROUP),
            "root:x:0:\nbin:x:2:\nusers:x:100:old\nstaff:x:50:old\ndevs:x:2001:old\n"
        );
        assert_eq!(
            f.read(GSHADOW),
            "root:*::\nbin:*::\nusers:*::old\nstaff:*::old\ndevs:!::old\n"
        );
        let r = f.ensure("staff", &[("members", "")]);
        assert_eq!(
            r["changes"],
            json!([{"property": "members", "old": ["old"], "new": []}])
        );
        assert!(!f.root().join("etc/group.lock").exists());

        // find and search
        let found = f.find("devs");
        assert_eq!(found["resource"]["gid"], json!(2001));
        assert_eq!(found["resource"]["members"], json!(["old"]));
        assert_eq!(f.find("nope")["ensure"], json!("absent"));
        let names: Vec<String> = f.search()["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["root", "bin", "users", "staff", "devs"]);

        // remove
        let r = f.ensure("devs", &[("ensure", "absent")]);
        assert_eq!(r["changed"], json!(true));
        assert_eq!(f.read(GROUP), GROUP0);
        assert_eq!(f.read(GSHADOW), GSHADOW0);
        assert_eq!(
            f.ensure("devs", &[("ensure", "absent")])["changed"],
            json!(false)
        );
        assert_eq!(f.read(PASSWD), passwd0);
        assert_eq!(f.read(SHADOW), shadow0);
    }

    #[test]
    fn system_groups_get_a_system_gid() {
        let f = accounts("group");
        f.ensure("svc", &[("system", "yes")]);
        let gid = f.find("svc")["resource"]["gid"].as_i64().unwrap();
        assert!(gid < 1000, "{gid}");
        assert_eq!(f.read(GROUP), format!("{GROUP0}svc:x:{gid}:\n"));
    }

    #[test]
    fn bad_input_names_the_property_and_touches_nothing() {
        let f = accounts("group");
        let e = f.ensure_err("devs", &[("members", "old,nosuch")]);
        assert_eq!(e.status, mco_core::Status::InvalidData);
        assert!(e.message.starts_with("members:"), "{}", e.message);
        let e = f.ensure_err("devs", &[("members", "a:b")]);
        assert!(e.message.starts_with("members:"), "{}", e.message);
        let e = f.ensure_err("devs", &[("gid", "x")]);
        assert!(e.message.starts_with("gid:"), "{}", e.message);
        let e = f.ensure_err("de:vs", &[]);
        assert!(e.message.starts_with("name:"), "{}", e.message);
        // the primary group of a user cannot go
        let e = f.ensure_err("users", &[("ensure", "absent")]);
        assert_eq!(e.status, mco_core::Status::Aborted);
        assert!(e.message.contains("groupdel failed"), "{}", e.message);
        assert_eq!(f.read(GROUP), GROUP0);
        assert_eq!(f.read(GSHADOW), GSHADOW0);
    }
}

//! `user`: local accounts in the root's `/etc/passwd`, `/etc/shadow` and
//! `/etc/group` (supplementary groups).
//!
//! Changes are made with the shadow tools (`useradd`, `usermod`,
//! `userdel`), given `--prefix ROOT` when the root is not `/`, so they read
//! and write the root's `/etc/passwd`, `/etc/group`, `/etc/shadow` and
//! `/etc/gshadow` (and its `/etc/login.defs`, which decides for instance
//! whether `userdel` removes the user's own group, and the password ageing
//! fields of a new `/etc/shadow` line; without it the tools' built-in
//! defaults apply). The tools keep every line they do not change as it was.
//! Supplementary groups given by number are turned into names first:
//! shadow 4.13's `usermod -G NUMBER` crashes under `--prefix`. Under a prefix we also pass
//! `useradd -l` (its lastlog/faillog reset would write the host's
//! `/var/log` files, which the prefix does not cover) and take the skeleton
//! from the root's `/etc/skel`.
//!
//! One case is done natively: changing the uid under a root other than `/`.
//! `usermod -u` copies the user's lastlog and faillog entries in the host's
//! `/var/log` whatever the prefix, so there the uid field of the user's
//! `/etc/passwd` line is rewritten atomically (under `/etc/passwd.lock`,
//! the lock the shadow tools honour), and the files in the home directory
//! owned by the old uid are given to the new one, as `usermod` does.
//!
//! Reported values: `gid` is the primary group's NAME when the root's
//! `/etc/group` knows it (its number otherwise); a desired `gid` or
//! `groups` entry may be a name or a number, compared through the root's
//! `/etc/group` (one naming the same gid is shown as given; one the root
//! does not have is refused, also in noop). `groups` lists the groups
//! naming the user as a member, compared as a set. `password` is the
//! `/etc/shadow` field and must be given as a crypt hash (`$id$…`) or a
//! locked form (`!`, `*`, `!…`); it is never echoed back, and never put
//! on a command line (see [`set_password`]). When no `gid` is given on creation the user
//! gets the group named after it: the existing one if there is one
//! (`-g NAME`), a new one otherwise (`-U`). `managehome` creates the home
//! with the user (`-m`, otherwise `-M`), moves it when `home` changes
//! (`usermod -m`) and removes it with the user (`userdel -r`); `system`
//! allocates a system uid (`-r`) on creation.

use serde_json::{json, Value};

use crate::beneath::Kind as FileKind;
use crate::model::{strings, Change, Failure, Kind, Property, State};
use crate::system::{lines, Cmd, System};
use crate::types::{missing, ResourceType};

mod lock;
pub(crate) use lock::FileLock;

/// The accounts file, as written on the node.
pub const PASSWD: &str = "/etc/passwd";
/// The shadowed passwords.
pub const SHADOW: &str = "/etc/shadow";
/// The groups file.
pub const GROUP: &str = "/etc/group";
/// The shadowed group data.
pub const GSHADOW: &str = "/etc/gshadow";

const PROPS: &[Property] = &[
    Property::new("ensure", Kind::OneOf(&["present", "absent"])),
    Property::new("uid", Kind::Integer),
    Property::new("gid", Kind::Text),
    Property::new("groups", Kind::List),
    Property::new("comment", Kind::Text),
    Property::new("home", Kind::Text),
    Property::new("managehome", Kind::Boolean).parameter(),
    Property::new("shell", Kind::Text),
    Property::new("password", Kind::Text).sensitive(),
    Property::new("system", Kind::Boolean).parameter(),
];

/// The `user` type.
pub struct User;

/// One `/etc/passwd` entry.
#[derive(Debug, Clone)]
pub(crate) struct PasswdEntry {
    pub name: String,
    pub password: String,
    pub uid: u32,
    pub gid: u32,
    pub comment: String,
    pub home: String,
    pub shell: String,
}

/// One `/etc/group` entry.
#[derive(Debug, Clone)]
pub(crate) struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The colon-separated fields of a database line (without its line
/// ending), or `None` for comments, blank lines and NIS `+`/`-` entries.
pub(crate) fn fields(line: &str) -> Option<Vec<&str>> {
    let l = line.trim_end_matches(['\n', '\r']);
    if l.trim().is_empty() || l.starts_with('#') || l.starts_with('+') || l.starts_with('-') {
        return None;
    }
    Some(l.split(':').collect())
}

/// Parses a passwd line.
pub(crate) fn parse_passwd(line: &str) -> Option<PasswdEntry> {
    let f = fields(line)?;
    if f.len() != 7 {
        return None;
    }
    Some(PasswdEntry {
        name: f[0].to_string(),
        password: f[1].to_string(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        comment: f[4].to_string(),
        home: f[5].to_string(),
        shell: f[6].to_string(),
    })
}

/// Parses a group line.
pub(crate) fn parse_group(line: &str) -> Option<GroupEntry> {
    let f = fields(line)?;
    if f.len() != 4 {
        return None;
    }
    Some(GroupEntry {
        name: f[0].to_string(),
        gid: f[2].parse().ok()?,
        members: f[3]
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// Every entry of the root's `/etc/passwd`.
pub(crate) fn read_passwd(sys: &System) -> Result<Vec<PasswdEntry>, Failure> {
    let text = sys.read(PASSWD)?.unwrap_or_default();
    Ok(text.lines().filter_map(parse_passwd).collect())
}

/// Every entry of the root's `/etc/group`.
pub(crate) fn read_groups(sys: &System) -> Result<Vec<GroupEntry>, Failure> {
    let text = sys.read(GROUP)?.unwrap_or_default();
    Ok(text.lines().filter_map(parse_group).collect())
}

/// The password field of every `/etc/shadow` entry.
fn read_shadow(sys: &System) -> Result<Vec<(String, String)>, Failure> {
    let text = sys.read(SHADOW)?.unwrap_or_default();
    Ok(text
        .lines()
        .filter_map(fields)
        .filter(|f| f.len() >= 2)
        .map(|f| (f[0].to_string(), f[1].to_string()))
        .collect())
}

/// The arguments that point a shadow tool at the root: none for `/`.
pub(crate) fn prefix(sys: &System) -> Vec<String> {
    if sys.is_real_root() {
        Vec::new()
    } else {
        vec![
            "--prefix".to_string(),
            sys.root().to_string_lossy().into_owned(),
        ]
    }
}

/// Runs a tool that edits the account databases; a failure names the
/// program and says why, never echoing the arguments (a password hash may
/// be among them).
pub(crate) fn run_tool(sys: &System, cmd: &Cmd, program: &str) -> Result<(), Failure> {
    let out = sys.run(cmd)?;
    if out.success() {
        Ok(())
    } else {
        Err(Failure::failed(format!(
            "{program} failed (exit {}): {}",
            out.code,
            out.why()
        )))
    }
}

/// Replaces field `index` of the colon-separated line `line`, keeping its
/// line ending.
pub(crate) fn set_field(line: &str, index: usize, value: &str) -> String {
    let body = line.trim_end_matches(['\n', '\r']);
    let ending = &line[body.len()..];
    let mut f: Vec<&str> = body.split(':').collect();
    while f.len() <= index {
        f.push("");
    }
    f[index] = value;
    format!("{}{ending}", f.join(":"))
}

/// Whether `s` may name a user or group: what `useradd` accepts without
/// `--badname`, plus upper case.
pub(crate) fn account_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && !s.starts_with('-')
        && !s.bytes().all(|b| b.is_ascii_digit())
        && s != "."
        && s != ".."
        && s.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric() || b"_.-".contains(&b) || (b == b'$' && i == s.len() - 1)
        })
}

/// Whether `s` is a crypt(3) hash or a locked/disabled password field.
pub fn password_ok(s: &str) -> bool {
    if s.contains([':', '\n', '\r', ' ', '\t']) {
        return false;
    }
    let rest = s.trim_start_matches('!');
    if rest.is_empty() {
        // "!" or "!!": locked, no password
        return !s.is_empty();
    }
    if rest == "*" {
        return true;
    }
    // $id$[param$]salt$hash (also bcrypt's $2b$cost$…): at least three
    // '$'-separated parts after the leading '$', drawn from crypt's alphabet.
    let Some(body) = rest.strip_prefix('$') else {
        return false;
    };
    let parts: Vec<&str> = body.split('$').collect();
    parts.len() >= 3
        && parts[0].bytes().all(|b| b.is_ascii_alphanumeric())
        && !parts[0].is_empty()
        && !parts.last().is_some_and(|p| p.is_empty())
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"./$=,-".contains(&b))
}

/// The gid of a group given by name or number, if the root's
/// `/etc/group` has it.
fn gid_of(table: &[GroupEntry], g: &str) -> Option<u32> {
    match g.parse::<u32>() {
        Ok(n) => table.iter().find(|e| e.gid == n).map(|e| e.gid),
        Err(_) => table.iter().find(|e| e.name == g).map(|e| e.gid),
    }
}

/// Supplementary groups given by name or number, as names, each known to
/// the root's `/etc/group` (`usermod -G NUMBER` crashes under `--prefix`
/// in shadow 4.13, so numbers are resolved here first).
fn group_names(table: &[GroupEntry], groups: &Value) -> Result<Vec<String>, Failure> {
    let mut out: Vec<String> = Vec::new();
    for g in strings(groups) {
        let name = gid_of(table, &g)
            .and_then(|id| {
                if g.parse::<u32>().is_ok() {
                    table.iter().find(|e| e.gid == id).map(|e| e.name.clone())
                } else {
                    Some(g.clone())
                }
            })
            .ok_or_else(|| Failure::invalid("groups", format!("{g:?} is not in {GROUP}")))?;
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

fn state(p: &PasswdEntry, groups: &[GroupEntry], shadow: &[(String, String)]) -> State {
    let gid = groups
        .iter()
        .find(|g| g.gid == p.gid)
        .map(|g| g.name.clone())
        .unwrap_or_else(|| p.gid.to_string());
    let member_of: Vec<&str> = groups
        .iter()
        .filter(|g| g.members.contains(&p.name))
        .map(|g| g.name.as_str())
        .collect();
    let password = shadow
        .iter()
        .find(|(n, _)| *n == p.name)
        .map(|(_, pw)| pw.clone())
        .unwrap_or_else(|| p.password.clone());
    let mut s = State::new();
    s.insert("name".into(), json!(p.name));
    s.insert("ensure".into(), json!("present"));
    s.insert("uid".into(), json!(p.uid));
    s.insert("gid".into(), json!(gid));
    s.insert("groups".into(), json!(member_of));
    s.insert("comment".into(), json!(p.comment));
    s.insert("home".into(), json!(p.home));
    s.insert("shell".into(), json!(p.shell));
    s.insert("password".into(), json!(password));
    s
}

fn text<'a>(desired: &'a State, k: &str) -> Option<&'a str> {
    desired.get(k).and_then(Value::as_str)
}

fn flag(desired: &State, k: &str) -> bool {
    desired.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn one_field(property: &str, v: &str) -> Result<(), Failure> {
    if v.contains([':', '\n', '\r']) {
        return Err(Failure::invalid(property, "must be one line without ':'"));
    }
    Ok(())
}

fn path_field(property: &str, v: &str) -> Result<(), Failure> {
    one_field(property, v)?;
    if !v.starts_with('/') {
        return Err(Failure::invalid(
            property,
            format!("{v:?} is not an absolute path"),
        ));
    }
    Ok(())
}

/// Sets the uid of `name` in the root's `/etc/passwd` directly (see the
/// module documentation for why), then hands its home's files over.
fn set_uid_natively(sys: &System, name: &str, new: u32) -> Result<(), Failure> {
    let _lock = FileLock::take(sys, PASSWD)?;
    let text = sys.read(PASSWD)?.unwrap_or_default();
    let all: Vec<PasswdEntry> = text.lines().filter_map(parse_passwd).collect();
    let me = all
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| Failure::failed(format!("user {name} vanished from {PASSWD}")))?;
    if let Some(other) = all.iter().find(|p| p.uid == new && p.name != name) {
        return Err(Failure::failed(format!(
            "uid {new} is already used by {}",
            other.name
        )));
    }
    let old = me.uid;
    let home = me.home.clone();
    let mut out = lines(&text);
    for l in out.iter_mut() {
        if parse_passwd(l).is_some_and(|p| p.name == name) {
            *l = set_field(l, 2, &new.to_string());
        }
    }
    sys.write(PASSWD, out.concat().as_bytes(), 0o644)?;
    if !home.is_empty() && home != "/" {
        // The home is the user's: every entry is checked and changed
        // through its own descriptor, never through a link it planted.
        if let Some(md) = sys.fs().lstat(&home)? {
            if md.kind == FileKind::Dir && md.uid == old {
                sys.fs().chown_tree(&home, old, new)?;
            }
        }
    }
    Ok(())
}

impl ResourceType for User {
    fn name(&self) -> &'static str {
        "user"
    }

    fn properties(&self) -> &'static [Property] {
        PROPS
    }

    fn validate(&self, name: &str, desired: &State) -> Result<(), Failure> {
        if !account_name_ok(name) {
            return Err(Failure::invalid(
                "name",
                format!("{name:?} is not a valid user name"),
            ));
        }
        if let Some(uid) = desired.get("uid").and_then(Value::as_i64) {
            if !(0..u32::MAX as i64).contains(&uid) {
                return Err(Failure::invalid("uid", format!("{uid} is out of range")));
            }
        }
        if let Some(g) = text(desired, "gid") {
            if !account_name_ok(g) && g.parse::<u32>().is_err() {
                return Err(Failure::invalid(
                    "gid",
                    format!("{g:?} is not a group name or number"),
                ));
            }
        }
        if let Some(gs) = desired.get("groups") {
            for g in strings(gs) {
                if !account_name_ok(&g) && g.parse::<u32>().is_err() {
                    return Err(Failure::invalid(
                        "groups",
                        format!("{g:?} is not a group name or number"),
                    ));
                }
            }
        }
        if let Some(c) = text(desired, "comment") {
            one_field("comment", c)?;
        }
        for p in ["home", "shell"] {
            if let Some(v) = text(desired, p) {
                path_field(p, v)?;
            }
        }
        if let Some(pw) = text(desired, "password") {
            if !password_ok(pw) {
                return Err(Failure::invalid(
                    "password",
                    "must be a crypt(3) hash ($id$salt$hash) or a locked form (!, *, !HASH); plain text is refused",
                ));
            }
        }
        Ok(())
    }

    fn find(&self, sys: &System, name: &str) -> Result<State, Failure> {
        let Some(p) = read_passwd(sys)?.into_iter().find(|p| p.name == name) else {
            return Ok(missing(name));
        };
        Ok(state(&p, &read_groups(sys)?, &read_shadow(sys)?))
    }

    /// [`ResourceType::find`], then a primary group or a set of
    /// supplementary groups naming the same gids as the desired ones (by
    /// name or number) is shown as desired; a group the root's
    /// `/etc/group` does not have is refused.
    fn current(&self, sys: &System, name: &str, desired: &State) -> Result<State, Failure> {
        let table = read_groups(sys)?;
        let mut s = self.find(sys, name)?;
        if let Some(g) = text(desired, "gid") {
            let id = gid_of(&table, g)
                .ok_or_else(|| Failure::invalid("gid", format!("{g:?} is not in {GROUP}")))?;
            if text(&s, "gid").and_then(|have| gid_of(&table, have)) == Some(id) {
                s.insert("gid".into(), json!(g));
            }
        }
        if let Some(gs) = desired.get("groups") {
            let mut want = group_names(&table, gs)?;
            if let Some(have) = s.get("groups") {
                let mut have = strings(have);
                want.sort();
                have.sort();
                have.dedup();
                if want == have {
                    s.insert("groups".into(), gs.clone());
                }
            }
        }
        Ok(s)
    }

    fn search(&self, sys: &System) -> Result<Vec<State>, Failure> {
        let groups = read_groups(sys)?;
        let shadow = read_shadow(sys)?;
        Ok(read_passwd(sys)?
            .iter()
            .map(|p| state(p, &groups, &shadow))
            .collect())
    }

    fn apply(
        &self,
        sys: &System,
        name: &str,
        desired: &State,
        current: &State,
        changes: &[Change],
    ) -> Result<(), Failure> {
        let managehome = flag(desired, "managehome");
        if text(desired, "ensure") == Some("absent") {
            let mut c = Cmd::new("userdel").args(prefix(sys));
            if managehome {
                c = c.arg("-r");
            }
            return run_tool(sys, &c.arg(name), "userdel");
        }
        if current.get("ensure").and_then(Value::as_str) != Some("present") {
            return create(sys, name, desired, managehome);
        }
        let mut c = Cmd::new("usermod").args(prefix(sys));
        let mut any = false;
        let mut native_uid = None;
        let mut password = None;
        for ch in changes {
            let v = desired.get(&ch.property);
            match ch.property.as_str() {
                "uid" => {
                    let Some(uid) = v.and_then(Value::as_i64) else {
                        continue;
                    };
                    if sys.is_real_root() {
                        c = c.args(["-u".to_string(), uid.to_string()]);
                        any = true;
                    } else {
                        native_uid = u32::try_from(uid).ok();
                    }
                }
                "groups" => {
                    let named = group_names(&read_groups(sys)?, v.unwrap_or(&Value::Null))?;
                    c = c.args(["-G".to_string(), named.join(",")]);
                    any = true;
                }
                "password" => {
                    password = v.and_then(Value::as_str);
                }
                p @ ("gid" | "comment" | "home" | "shell") => {
                    let Some(s) = v.and_then(Value::as_str) else {
                        continue;
                    };
                    let opt = match p {
                        "gid" => "-g",
                        "comment" => "-c",
                        "home" => "-d",
                        _ => "-s",
                    };
                    c = c.args([opt, s]);
                    if p == "home" && managehome {
                        c = c.arg("-m");
                    }
                    any = true;
                }
                _ => {}
            }
        }
        if any {
            run_tool(sys, &c.arg(name), "usermod")?;
        }
        if let Some(uid) = native_uid {
            set_uid_natively(sys, name, uid)?;
        }
        if let Some(hash) = password {
            set_password(sys, name, hash)?;
        }
        Ok(())
    }
}

/// Sets the `/etc/shadow` password field of `name` to `hash` (already
/// checked by [`password_ok`]) with `chpasswd -e`, which reads `name:hash`
/// on its standard input, never from its command line: any local user can
/// read every process's arguments (`/proc/PID/cmdline`, `ps`), so
/// `useradd`/`usermod -p HASH` would hand them the hash to crack offline.
/// Under a root other than `/` it is given `-R ROOT` (this `chpasswd` has
/// no `--prefix`; it chroots, so the root's own `/etc` is edited and a link
/// in it cannot lead out). The tool rather than a native edit of
/// `/etc/shadow`: it takes the locks the other shadow tools honour, keeps
/// the file's owner, mode and backup as they do, and sets the
/// last-change day as `usermod -p` did.
fn set_password(sys: &System, name: &str, hash: &str) -> Result<(), Failure> {
    let mut c = Cmd::new("chpasswd").arg("-e");
    if !sys.is_real_root() {
        c = c.arg("-R").arg(sys.root());
    }
    run_tool(sys, &c.stdin(format!("{name}:{hash}\n")), "chpasswd")
}

fn create(sys: &System, name: &str, desired: &State, managehome: bool) -> Result<(), Failure> {
    let mut c = Cmd::new("useradd").args(prefix(sys));
    if !sys.is_real_root() {
        c = c.arg("-l");
        if managehome {
            c = c.arg("-k").arg(sys.path("/etc/skel"));
        }
    }
    if let Some(uid) = desired.get("uid").and_then(Value::as_i64) {
        c = c.args(["-u".to_string(), uid.to_string()]);
    }
    match text(desired, "gid") {
        Some(g) => c = c.args(["-g", g]),
        None if read_groups(sys)?.iter().any(|g| g.name == name) => {
            c = c.args(["-g", name]);
        }
        None => c = c.arg("-U"),
    }
    if let Some(gs) = desired.get("groups") {
        let gs = group_names(&read_groups(sys)?, gs)?;
        if !gs.is_empty() {
            c = c.args(["-G".to_string(), gs.join(",")]);
        }
    }
    for (p, opt) in [("comment", "-c"), ("home", "-d"), ("shell", "-s")] {
        if let Some(v) = text(desired, p) {
            c = c.args([opt, v]);
        }
    }
    c = c.arg(if managehome { "-m" } else { "-M" });
    if flag(desired, "system") {
        c = c.arg("-r");
    }
    run_tool(sys, &c.arg(name), "useradd")?;
    // Created locked ("!"), then given its hash off the command line.
    match text(desired, "password") {
        Some(hash) => set_password(sys, name, hash),
        None => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests;

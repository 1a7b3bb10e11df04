//! `ssh_authorized_key`: keys in users' `~/.ssh/authorized_keys`.
//!
//! As in Puppet, the resource's name is the key's trailing comment, and it
//! is unique on the node: `find` looks through the `authorized_keys` of
//! every user of the root's `/etc/passwd` (in that order; a home shared by
//! several users is read once) and takes the first line whose comment is
//! the name (`do` first looks in the given user's file). A key owns only
//! that line; every other line (other keys,
//! comments, blank lines, odd spacing) is kept byte for byte. Giving a key
//! another `user` moves it from the old user's file to the new one's.
//!
//! The file is `HOME/.ssh/authorized_keys` under the root, HOME from the
//! root's `/etc/passwd`. A missing `.ssh` is created mode 0700 and a missing
//! file mode 0600, both owned by the user's uid and gid (numbers from the
//! root's passwd; the new file gets its owner before it is renamed into
//! place). An existing file keeps its mode and owner. A `.ssh` or
//! `authorized_keys` that is a symbolic link is refused: following it as
//! root could read or write another file (`find` and `search` skip such
//! files; `do` fails on them).
//!
//! Lines are written `[OPTIONS ]KEY_TYPE KEY NAME`. `options` are split on
//! commas outside double quotes (so `from="a,b"` is one option) and
//! compared in order. The key must be base64 that decodes to a blob of the
//! given `key_type`.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use serde_json::{json, Value};

use crate::model::{Change, Failure, Kind, Property, State};
use crate::system::{lines, push_line, System};
use crate::types::user::{read_passwd, PasswdEntry};
use crate::types::{default_changes, missing, ResourceType};

const PROPS: &[Property] = &[
    Property::new("ensure", Kind::OneOf(&["present", "absent"])),
    Property::new("user", Kind::Text),
    Property::new("key_type", Kind::Text),
    Property::new("key", Kind::Text),
    Property::new("options", Kind::Text),
];

/// How `changes` compares: options as an ordered list (parsed by
/// [`split_options`], not by the plain comma split of the wire format).
const COMPARE: &[Property] = &[
    Property::new("ensure", Kind::OneOf(&["present", "absent"])),
    Property::new("user", Kind::Text),
    Property::new("key_type", Kind::Text),
    Property::new("key", Kind::Text),
    Property::new("options", Kind::OrderedList),
];

/// Key types OpenSSH accepts in `authorized_keys` (and their certificate
/// forms, `…-cert-v01@openssh.com`).
pub const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "sk-ssh-ed25519@openssh.com",
];

/// The `ssh_authorized_key` type.
pub struct SshAuthorizedKey;

/// Whether `t` is a key type OpenSSH knows.
pub fn key_type_ok(t: &str) -> bool {
    if KEY_TYPES.contains(&t) {
        return true;
    }
    t.strip_suffix("-cert-v01@openssh.com").is_some_and(|base| {
        KEY_TYPES.contains(&base) || KEY_TYPES.contains(&format!("{base}@openssh.com").as_str())
    })
}

/// Decodes standard base64 (padding optional); `None` if it is not.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 || body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in body.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Splits key options on commas outside double quotes.
pub fn split_options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' && quoted {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == ',' && !quoted {
            let t = cur.trim();
            if !t.is_empty() {
                out.push(t.to_string());
            }
            cur.clear();
            continue;
        }
        cur.push(c);
    }
    let t = cur.trim();
    if !t.is_empty() {
        out.push(t.to_string());
    }
    out
}

/// One option: `name` or `name="value"`, quotes balanced.
fn option_ok(o: &str) -> bool {
    let (name, value) = match o.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (o, None),
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let value_ok = value.is_none_or(|v| {
        v.len() >= 2 && v.starts_with('"') && v.ends_with('"') && split_options(v).len() == 1 && {
            // no unescaped quote inside
            let inner = &v[1..v.len() - 1];
            let mut esc = false;
            inner.chars().all(|c| {
                let ok = esc || c != '"';
                esc = !esc && c == '\\';
                ok
            })
        }
    });
    name_ok && value_ok && !o.contains(['\n', '\r'])
}

/// One parsed key line.
#[derive(Debug, Clone)]
struct Entry {
    options: Vec<String>,
    key_type: String,
    key: String,
    name: String,
}

/// The first whitespace-delimited word of `s` with quoted spans kept
/// whole, and the rest.
fn first_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' && quoted {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c.is_whitespace() && !quoted {
            return (&s[..i], &s[i..]);
        }
    }
    (s, "")
}

fn parse(line: &str) -> Option<Entry> {
    let l = line.trim_end_matches(['\n', '\r']);
    let t = l.trim_start();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let (w, rest) = first_word(t);
    let (options, key_type, rest) = if key_type_ok(w) {
        (Vec::new(), w, rest)
    } else {
        let (kt, rest) = first_word(rest);
        (split_options(w), kt, rest)
    };
    let (key, comment) = first_word(rest);
    if key.is_empty() {
        return None;
    }
    Some(Entry {
        options,
        key_type: key_type.to_string(),
        key: key.to_string(),
        name: comment.trim().to_string(),
    })
}

fn format(e: &Entry) -> String {
    let mut l = String::new();
    if !e.options.is_empty() {
        l.push_str(&e.options.join(","));
        l.push(' ');
    }
    l.push_str(&format!("{} {} {}\n", e.key_type, e.key, e.name));
    l
}

fn state(user: &str, e: &Entry) -> State {
    let mut s = State::new();
    s.insert("name".into(), json!(e.name));
    s.insert("ensure".into(), json!("present"));
    s.insert("user".into(), json!(user));
    s.insert("key_type".into(), json!(e.key_type));
    s.insert("key".into(), json!(e.key));
    s.insert("options".into(), json!(e.options));
    s
}

/// `HOME/.ssh/authorized_keys` of `u`, as on the node.
fn keys_file(u: &PasswdEntry) -> String {
    format!("{}/.ssh/authorized_keys", u.home.trim_end_matches('/'))
}

fn is_symlink(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// The file's text, refusing symbolic links; `None` if it is missing.
fn read_keys(sys: &System, abs: &str) -> Result<Option<String>, Failure> {
    let p = sys.path(abs);
    if let Some(dir) = p.parent() {
        if is_symlink(dir) || is_symlink(&p) {
            return Err(Failure::failed(format!(
                "{} or its directory is a symbolic link; refusing to follow it",
                p.display()
            )));
        }
    }
    sys.read(abs)
}

/// Every (user, entry) with a non-empty comment, users in passwd order,
/// each file read once.
fn all_keys(sys: &System) -> Result<Vec<(String, Entry)>, Failure> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for u in read_passwd(sys)? {
        if u.home.is_empty() || !u.home.starts_with('/') {
            continue;
        }
        let file = keys_file(&u);
        let p = sys.path(&file);
        if seen.contains(&p) {
            continue;
        }
        seen.push(p);
        let Ok(Some(text)) = read_keys(sys, &file) else {
            continue;
        };
        for e in text.lines().filter_map(parse) {
            if !e.name.is_empty() {
                out.push((u.name.clone(), e));
            }
        }
    }
    Ok(out)
}

/// Writes `content` to `abs`: an existing file through [`System::write`]
/// (keeping its mode and owner); a new one written beside it under a
/// hidden name, given `uid`/`gid` and `mode`, then renamed into place, so
/// that it never appears with the wrong owner.
pub(crate) fn write_owned(
    sys: &System,
    abs: &str,
    content: &[u8],
    mode: u32,
    uid: u32,
    gid: Option<u32>,
) -> Result<(), Failure> {
    let path = sys.path(abs);
    if fs::symlink_metadata(&path).is_ok() {
        return sys.write(abs, content, mode);
    }
    let (dir, name) = match (Path::new(abs).parent(), Path::new(abs).file_name()) {
        (Some(d), Some(n)) => (d, n.to_string_lossy()),
        _ => return Err(Failure::failed(format!("{abs}: not a file path"))),
    };
    let tmp_abs = dir.join(format!(".{name}.mco-new"));
    let tmp = sys.path(&tmp_abs);
    let _ = fs::remove_file(&tmp);
    sys.write(&tmp_abs.to_string_lossy(), content, mode)?;
    let done = std::os::unix::fs::chown(&tmp, Some(uid), gid)
        .and_then(|_| fs::rename(&tmp, &path))
        .map_err(|e| Failure::io(&path, e));
    if done.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    done?;
    if let Some(d) = path.parent() {
        if let Ok(d) = fs::File::open(d) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn user_entry(sys: &System, user: &str) -> Result<PasswdEntry, Failure> {
    read_passwd(sys)?
        .into_iter()
        .find(|u| u.name == user)
        .ok_or_else(|| Failure::invalid("user", format!("{user:?} is not a user of this node")))
}

/// Rewrites `user`'s file with `edit` applied to its lines.
fn edit_file(sys: &System, user: &str, edit: impl FnOnce(&mut Vec<String>)) -> Result<(), Failure> {
    let u = user_entry(sys, user)?;
    if !u.home.starts_with('/') {
        return Err(Failure::failed(format!(
            "user {user} has no home directory"
        )));
    }
    let file = keys_file(&u);
    let old = read_keys(sys, &file)?;
    let mut out = lines(old.as_deref().unwrap_or_default());
    edit(&mut out);
    let text = out.concat();
    if old.as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    let home = sys.path(&u.home);
    if !home.is_dir() {
        return Err(Failure::failed(format!(
            "the home of {user}, {}, does not exist",
            home.display()
        )));
    }
    let ssh = home.join(".ssh");
    if is_symlink(&ssh) {
        return Err(Failure::failed(format!(
            "{} is a symbolic link; refusing to follow it",
            ssh.display()
        )));
    }
    if !ssh.exists() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&ssh)
            .map_err(|e| Failure::io(&ssh, e))?;
        std::os::unix::fs::chown(&ssh, Some(u.uid), Some(u.gid))
            .map_err(|e| Failure::io(&ssh, e))?;
    } else if let Ok(md) = fs::metadata(&ssh) {
        if md.uid() != u.uid && md.uid() != 0 {
            return Err(Failure::failed(format!(
                "{} belongs to uid {}, not {user}; refusing to write in it",
                ssh.display(),
                md.uid()
            )));
        }
    }
    write_owned(sys, &file, text.as_bytes(), 0o600, u.uid, Some(u.gid))
}

fn owns(line: &str, name: &str) -> bool {
    parse(line).is_some_and(|e| e.name == name)
}

impl ResourceType for SshAuthorizedKey {
    fn name(&self) -> &'static str {
        "ssh_authorized_key"
    }

    fn properties(&self) -> &'static [Property] {
        PROPS
    }

    fn validate(&self, name: &str, desired: &State) -> Result<(), Failure> {
        if name.trim() != name || name.contains(['\n', '\r']) || name.starts_with('#') {
            return Err(Failure::invalid(
                "name",
                format!("{name:?}: the key's comment must be one line without surrounding spaces"),
            ));
        }
        let text = |k: &str| desired.get(k).and_then(Value::as_str);
        let absent = text("ensure") == Some("absent");
        match text("user") {
            None if !absent => {
                return Err(Failure::missing("user", "is required: whose key is it?"))
            }
            Some(u) if !crate::types::user::account_name_ok(u) => {
                return Err(Failure::invalid(
                    "user",
                    format!("{u:?} is not a valid user name"),
                ))
            }
            _ => {}
        }
        let kt = text("key_type");
        if let Some(t) = kt {
            if !key_type_ok(t) {
                return Err(Failure::invalid(
                    "key_type",
                    format!("{t:?} is not a key type ({})", KEY_TYPES.join(", ")),
                ));
            }
        }
        if let Some(k) = text("key") {
            let blob = base64_decode(k)
                .filter(|b| b.len() > 4)
                .ok_or_else(|| Failure::invalid("key", "is not base64 of an SSH public key"))?;
            let n = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
            let inner = blob
                .get(4..4 + n)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .ok_or_else(|| Failure::invalid("key", "is not an SSH public key blob"))?;
            if let Some(t) = kt {
                if inner != t {
                    return Err(Failure::invalid(
                        "key",
                        format!("is a {inner} key, not {t}"),
                    ));
                }
            }
        }
        if let Some(o) = text("options") {
            for opt in split_options(o) {
                if !option_ok(&opt) {
                    return Err(Failure::invalid(
                        "options",
                        format!("{opt:?} is not an option (NAME or NAME=\"VALUE\")"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn find(&self, sys: &System, name: &str) -> Result<State, Failure> {
        Ok(all_keys(sys)?
            .iter()
            .find(|(_, e)| e.name == name)
            .map(|(u, e)| state(u, e))
            .unwrap_or_else(|| missing(name)))
    }

    fn search(&self, sys: &System) -> Result<Vec<State>, Failure> {
        Ok(all_keys(sys)?.iter().map(|(u, e)| state(u, e)).collect())
    }

    /// The key of that name in the desired user's file if it has one,
    /// otherwise [`ResourceType::find`]'s (which `do` then moves); a user
    /// the root does not have is refused.
    fn current(&self, sys: &System, name: &str, desired: &State) -> Result<State, Failure> {
        if let Some(u) = desired.get("user").and_then(Value::as_str) {
            user_entry(sys, u)?;
            let all = all_keys(sys)?;
            if let Some((owner, e)) = all.iter().find(|(o, e)| o == u && e.name == name) {
                return Ok(state(owner, e));
            }
        }
        self.find(sys, name)
    }

    fn changes(&self, _name: &str, desired: &State, current: &State) -> Vec<Change> {
        let mut want = desired.clone();
        if let Some(o) = desired.get("options").and_then(Value::as_str) {
            want.insert("options".into(), json!(split_options(o)));
        }
        default_changes(COMPARE, &want, current)
    }

    fn apply(
        &self,
        sys: &System,
        name: &str,
        desired: &State,
        current: &State,
        _changes: &[Change],
    ) -> Result<(), Failure> {
        let text = |s: &'_ State, k: &str| s.get(k).and_then(Value::as_str).map(str::to_string);
        let was = if text(current, "ensure").as_deref() == Some("present") {
            text(current, "user")
        } else {
            None
        };
        let target = text(desired, "user");
        if text(desired, "ensure").as_deref() == Some("absent") {
            if let Some(u) = was {
                edit_file(sys, &u, |out| out.retain(|l| !owns(l, name)))?;
            }
            return Ok(());
        }
        let target = target.ok_or_else(|| Failure::missing("user", "is required"))?;
        user_entry(sys, &target)?;
        let same_user = was.as_deref() == Some(target.as_str());
        let get =
            |k: &str| text(desired, k).or_else(|| was.as_ref().and_then(|_| text(current, k)));
        let key_type = get("key_type")
            .ok_or_else(|| Failure::missing("key_type", "is required to add a key"))?;
        let key = get("key").ok_or_else(|| Failure::missing("key", "is required to add a key"))?;
        let options = match desired.get("options").and_then(Value::as_str) {
            Some(o) => split_options(o),
            None => current
                .get("options")
                .map(crate::model::strings)
                .unwrap_or_default(),
        };
        let line = format(&Entry {
            options,
            key_type,
            key,
            name: name.to_string(),
        });
        if let (Some(old), false) = (&was, same_user) {
            edit_file(sys, old, |out| out.retain(|l| !owns(l, name)))?;
        }
        edit_file(sys, &target, |out| {
            match out.iter().position(|l| owns(l, name)) {
                Some(i) => out[i] = line,
                None => push_line(out, line),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::tests::Fixture;
    use std::os::unix::fs::PermissionsExt;

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
            json!([{"property": "options", "old": [], "new": ["from=\"10.0.0.1,10.0.0.2\"", "no-pty"]}])
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
        assert_eq!(
            found["resource"]["options"],
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
        let bad: &[Case] = &[
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
}

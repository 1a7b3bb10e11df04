//! `ssh_authorized_key`: keys in users' `~/.ssh/authorized_keys`.
//!
//! As in Puppet, the resource's name is the key's trailing comment, and it
//! is unique on the node: `find` looks through the `authorized_keys` of
//! every user of the root's `/etc/passwd` (in that order; a home shared by
//! several users is read once) and takes the first line whose comment is
//! the name (`do` first looks in the given user's file). A key owns the
//! lines with its name; every other line (other keys, comments, blank
//! lines, odd spacing) is kept byte for byte. Giving a key another `user`
//! moves it from the old user's file to the new one's.
//!
//! No line can hide behind another of the same name (a decoy planted
//! before the managed line, or an old key left after it): every line with
//! the name is part of the resource. In the file `do` edits, the first is
//! replaced and any others are removed; `ensure: absent` without a `user`
//! removes the name from every user's file, so a decoy in another user's
//! file cannot stand in for the real key. `find` and `do` show how many
//! other lines carry the name as `duplicates` (only when there are any),
//! and a `do` that finds duplicates in the file it edits removes them even
//! when the first line is already as desired (the change `duplicates` → 0).
//!
//! The file is `HOME/.ssh/authorized_keys` under the root, HOME from the
//! root's `/etc/passwd`. A missing `.ssh` is created mode 0700 and a missing
//! file mode 0600, both owned by the user's uid and gid (numbers from the
//! root's passwd; the new file gets its owner before it is renamed into
//! place). An existing file keeps its mode and owner. Homes belong to
//! their users, so every step goes through [`crate::beneath`]: a `.ssh`,
//! `authorized_keys` or any directory above them that is a symbolic link
//! is refused, and so is an `authorized_keys` that is not a regular file
//! (a FIFO is refused without blocking), has other hard links, or is
//! larger than [`READ_LIMIT`] bytes. `find` and `search` skip such files;
//! `do` fails on the file it must edit. The new file gets its owner and
//! mode on its descriptor before it is renamed into place, never by path.
//! Changes of this type hold a lock of their own (not the one of the
//! types that edit the node's files), so a slow home directory holds up
//! only other key changes.
//!
//! Lines are written `[OPTIONS ]KEY_TYPE KEY NAME`. `options` are split on
//! commas outside double quotes (so `from="a,b"` is one option) and
//! compared in order. The key must be base64 that decodes to a blob of the
//! given `key_type`. `options` may carry secrets (a forced command's
//! arguments): changes, `find` and `search` show them as `[redacted]` (an
//! empty list as it is), and a refused option is named by its position.

use serde_json::{json, Value};

use crate::beneath::{Kind as FileKind, WriteOpts, READ_LIMIT};
use crate::model::{bad_item, Change, Failure, Kind, Property, State};
use crate::system::{lines, push_line, System};
use crate::types::user::{read_passwd, PasswdEntry};
use crate::types::{default_changes, missing, ResourceType};

const PROPS: &[Property] = &[
    Property::new("ensure", Kind::OneOf(&["present", "absent"])),
    Property::new("user", Kind::Text),
    Property::new("key_type", Kind::Text),
    Property::new("key", Kind::Text),
    Property::new("options", Kind::Text).sensitive(),
];

/// How `changes` compares: options as an ordered list (parsed by
/// [`split_options`], not by the plain comma split of the wire format).
const COMPARE: &[Property] = &[
    Property::new("ensure", Kind::OneOf(&["present", "absent"])),
    Property::new("user", Kind::Text),
    Property::new("key_type", Kind::Text),
    Property::new("key", Kind::Text),
    Property::new("options", Kind::OrderedList).sensitive(),
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

/// The file's text; `None` if it is missing. Refuses links anywhere on
/// the way, non-regular files, files with other hard links and files over
/// [`READ_LIMIT`] bytes, without blocking.
fn read_keys(sys: &System, abs: &str) -> Result<Option<String>, Failure> {
    let Some((bytes, m)) = sys.fs().read_with_meta(abs, READ_LIMIT)? else {
        return Ok(None);
    };
    if m.nlink > 1 {
        return Err(Failure::failed(format!(
            "{} has {} hard links; refusing to use it",
            sys.path(abs).display(),
            m.nlink
        )));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Every (user, entry) with a non-empty comment, users in passwd order,
/// each file read once.
fn all_keys(sys: &System) -> Result<Vec<(String, Entry)>, Failure> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for u in read_passwd(sys)? {
        if u.home.is_empty() || !u.home.starts_with('/') {
            continue;
        }
        let file = keys_file(&u);
        if !seen.insert(sys.path(&file)) {
            continue;
        }
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
    let fs = sys.fs();
    if fs.lstat(&u.home)?.map(|m| m.kind) != Some(FileKind::Dir) {
        return Err(Failure::failed(format!(
            "the home of {user}, {}, does not exist",
            sys.path(&u.home).display()
        )));
    }
    let ssh = format!("{}/.ssh", u.home.trim_end_matches('/'));
    let shown = sys.path(&ssh);
    match fs.lstat(&ssh)? {
        None => fs.mkdir(&ssh, 0o700, (Some(u.uid), Some(u.gid)))?,
        Some(m) if m.kind == FileKind::Symlink => {
            return Err(Failure::failed(format!(
                "{} is a symbolic link; refusing to follow it",
                shown.display()
            )))
        }
        Some(m) if m.kind != FileKind::Dir => {
            return Err(Failure::failed(format!(
                "{} is not a directory",
                shown.display()
            )))
        }
        Some(m) if m.uid != u.uid && m.uid != 0 => {
            return Err(Failure::failed(format!(
                "{} belongs to uid {}, not {user}; refusing to write in it",
                shown.display(),
                m.uid
            )))
        }
        Some(_) => {}
    }
    let opts = WriteOpts {
        new_uid: Some(u.uid),
        new_gid: Some(u.gid),
        ..WriteOpts::keep(0o600)
    };
    fs.write(&file, text.as_bytes(), &opts)
}

/// Replaces the first line named `name` with `line` (appending it when
/// there is none) and drops every other line of that name.
fn put_line(out: &mut Vec<String>, name: &str, line: String) {
    match out.iter().position(|l| owns(l, name)) {
        Some(i) => {
            out[i] = line;
            let mut n = 0;
            out.retain(|l| {
                n += 1;
                n - 1 == i || !owns(l, name)
            });
        }
        None => push_line(out, line),
    }
}

/// How many lines of `all` carry `name`, in `user`'s file or anywhere.
fn count(all: &[(String, Entry)], name: &str, user: Option<&str>) -> usize {
    all.iter()
        .filter(|(u, e)| e.name == name && user.is_none_or(|w| w == u))
        .count()
}

/// `state` with `duplicates` added when `n` lines carry the name.
fn with_duplicates(mut s: State, n: usize) -> State {
    if n > 1 {
        s.insert("duplicates".into(), json!(n - 1));
    }
    s
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
            for (i, opt) in split_options(o).iter().enumerate() {
                if !option_ok(opt) {
                    return Err(Failure::invalid(
                        "options",
                        bad_item(i, "is not an option (NAME or NAME=\"VALUE\")"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn lock_scope(&self) -> &'static str {
        "ssh_authorized_key"
    }

    fn find(&self, sys: &System, name: &str) -> Result<State, Failure> {
        let all = all_keys(sys)?;
        Ok(match all.iter().find(|(_, e)| e.name == name) {
            Some((u, e)) => with_duplicates(state(u, e), count(&all, name, None)),
            None => missing(name),
        })
    }

    fn search(&self, sys: &System) -> Result<Vec<State>, Failure> {
        Ok(all_keys(sys)?.iter().map(|(u, e)| state(u, e)).collect())
    }

    /// The key of that name in the desired user's file if it has one,
    /// otherwise [`ResourceType::find`]'s (which `do` then moves); a user
    /// the root does not have is refused. `duplicates` counts the other
    /// lines of that name `do` will remove: in that user's file, or
    /// anywhere when no user is given.
    fn current(&self, sys: &System, name: &str, desired: &State) -> Result<State, Failure> {
        let all = all_keys(sys)?;
        let Some(u) = desired.get("user").and_then(Value::as_str) else {
            return self.find(sys, name);
        };
        user_entry(sys, u)?;
        let found = all
            .iter()
            .find(|(o, e)| o == u && e.name == name)
            .or_else(|| all.iter().find(|(_, e)| e.name == name));
        Ok(match found {
            Some((o, e)) => with_duplicates(state(o, e), count(&all, name, Some(o))),
            None => missing(name),
        })
    }

    fn changes(&self, _name: &str, desired: &State, current: &State) -> Vec<Change> {
        let mut want = desired.clone();
        if let Some(o) = desired.get("options").and_then(Value::as_str) {
            want.insert("options".into(), json!(split_options(o)));
        }
        let mut out = default_changes(COMPARE, &want, current);
        let absent = want.get("ensure").and_then(Value::as_str) == Some("absent");
        if let Some(d) = current.get("duplicates") {
            if !absent && !out.iter().any(|c| c.property == "ensure") {
                out.push(Change::new("duplicates", d.clone(), json!(0)));
            }
        }
        out
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
            let mut holders: Vec<String> = match (&target, &was) {
                // No user given: the name goes from every file that has it.
                (None, _) => all_keys(sys)?
                    .into_iter()
                    .filter(|(_, e)| e.name == name)
                    .map(|(u, _)| u)
                    .collect(),
                (Some(_), Some(u)) => vec![u.clone()],
                (Some(_), None) => Vec::new(),
            };
            holders.dedup();
            for u in holders {
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
        edit_file(sys, &target, |out| put_line(out, name, line))
    }
}

#[cfg(test)]
mod tests;

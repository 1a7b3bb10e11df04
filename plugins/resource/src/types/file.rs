//! `file`: files, directories and symbolic links, by absolute path.
//!
//! Works on the path under the system root (`System::path(name)`) and on
//! nothing else, except that owner and group names are looked up in the
//! root's `/etc/passwd` and `/etc/group` (numbers are accepted as they are).
//! The resource owns the one path it names (and `PATH<backup>` when a
//! backup suffix is given).
//!
//! - `ensure`: `present` (anything there will do; a plain empty file is
//!   created when nothing is), `file`, `directory`, `link` (needs `target`)
//!   or `absent`. Without `ensure`, `target` means `link`, `content` means
//!   `file`, and otherwise only an existing path's mode and owner are
//!   managed (a missing one is left missing, as Puppet does).
//! - `content`: the whole content, compared byte for byte. Changes and
//!   `find` never show content itself, only its digest, `{sha256}HEX`:
//!   content may be large or secret.
//! - `mode`, `owner`, `group`; `target` for links (written as given, never
//!   resolved under the root).
//! - `backup` (a parameter): a suffix such as `.bak` to keep the replaced
//!   content at `PATH.bak`, or `false` (the default): no backup.
//!
//! Content is written atomically ([`crate::system::write_atomic`]), then
//! mode and owner are set; links are made at a temporary name and renamed
//! into place. A directory is never replaced by a file or a link nor the
//! other way round (Puppet needs `force` for that; this type refuses), and
//! `ensure: absent` removes a directory only when it is empty.
//!
//! `search` is refused: there is no meaningful list of "every file".

use std::io::Read;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::beneath::{Kind as FileKind, WriteOpts};
use crate::model::{ensure_of, Change, Failure, Kind, Property, State};
use crate::system::System;
use crate::types::user::{read_groups, read_passwd, GROUP, PASSWD};
use crate::types::{missing, ResourceType};

const PROPS: &[Property] = &[
    Property::new(
        "ensure",
        Kind::OneOf(&["present", "file", "directory", "link", "absent"]),
    ),
    Property::new("content", Kind::Text),
    Property::new("mode", Kind::Mode),
    Property::new("owner", Kind::Text),
    Property::new("group", Kind::Text),
    Property::new("target", Kind::Text),
    Property::new("backup", Kind::Text).parameter(),
];

/// The `file` type.
pub struct File;

/// The digest shown for content: `{sha256}` and 64 hex digits.
pub fn digest(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    hex_digest(h)
}

fn hex_digest(h: Sha256) -> String {
    let d = h.finalize();
    let mut s = String::with_capacity(8 + 64);
    s.push_str("{sha256}");
    for b in d.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Files larger than this are not digested: `find` shows their content as
/// `{large}` and their size, which no content a request carries equals.
pub const DIGEST_LIMIT: u64 = 256 * 1024 * 1024;

/// The digest of the regular file `name` under the root (opened without
/// following a link and without blocking), or `{large}N bytes` for one
/// over [`DIGEST_LIMIT`].
fn digest_file(sys: &System, name: &str) -> Result<String, Failure> {
    let shown = sys.path(name);
    let (f, m) = sys
        .fs()
        .open_file(name)?
        .ok_or_else(|| Failure::failed(format!("{} vanished", shown.display())))?;
    if m.size > DIGEST_LIMIT {
        return Ok(format!("{{large}}{} bytes", m.size));
    }
    let mut f = f.take(DIGEST_LIMIT + 1);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Failure::io(&shown, e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    if total > DIGEST_LIMIT {
        return Ok(format!("{{large}}{total} bytes"));
    }
    Ok(hex_digest(h))
}

/// The name and id of every entry of the root's `/etc/passwd` or
/// `/etc/group` (`db`), read by the same parsers the `user` and `group`
/// types use.
fn ids(sys: &System, db: &str) -> Result<Vec<(String, u32)>, Failure> {
    Ok(if db == PASSWD {
        read_passwd(sys)?
            .into_iter()
            .map(|p| (p.name, p.uid))
            .collect()
    } else {
        read_groups(sys)?
            .into_iter()
            .map(|g| (g.name, g.gid))
            .collect()
    })
}

/// A user of the root's `/etc/passwd`, by name or number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name (the number as text when the id has no entry).
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id (the uid when the id has no entry).
    pub gid: u32,
    /// Home directory (empty when the id has no entry).
    pub home: String,
}

/// Looks `who` (a name or a number) up in the root's `/etc/passwd`. A number
/// without an entry is accepted as it is, with the same number as its group;
/// an unknown name is `None`.
pub fn account(sys: &System, who: &str) -> Result<Option<Account>, Failure> {
    let num = who.parse::<u32>().ok();
    if let Some(p) = read_passwd(sys)?
        .into_iter()
        .find(|p| p.name == who || Some(p.uid) == num)
    {
        return Ok(Some(Account {
            name: p.name,
            uid: p.uid,
            gid: p.gid,
            home: p.home,
        }));
    }
    Ok(num.map(|uid| Account {
        name: uid.to_string(),
        uid,
        gid: uid,
        home: String::new(),
    }))
}

/// The id of `who` (a name or a number) in the root's `db`
/// (`/etc/passwd` or `/etc/group`).
fn id_of(sys: &System, db: &str, who: &str) -> Result<Option<u32>, Failure> {
    if let Ok(n) = who.parse::<u32>() {
        return Ok(Some(n));
    }
    Ok(ids(sys, db)?
        .into_iter()
        .find(|(name, _)| name == who)
        .map(|(_, id)| id))
}

/// The name of id `id` in the root's `db`, or the number as text.
fn name_of(sys: &System, db: &str, id: u32) -> Result<String, Failure> {
    Ok(ids(sys, db)?
        .into_iter()
        .find(|(_, i)| *i == id)
        .map(|(name, _)| name)
        .unwrap_or_else(|| id.to_string()))
}

fn text<'a>(s: &'a State, k: &str) -> Option<&'a str> {
    s.get(k).and_then(Value::as_str)
}

/// What the path should be once done: `absent`, `file`, `directory` or
/// `link`; `None` when nothing is to be created (no `ensure`, `content` or
/// `target`, and the path is missing).
fn wanted(desired: &State, current: &State) -> Option<&'static str> {
    let have = ensure_of(current);
    let w = match text(desired, "ensure") {
        Some(w) => w,
        None if desired.contains_key("target") => "link",
        None if desired.contains_key("content") => "file",
        None => "present",
    };
    Some(match w {
        "absent" => "absent",
        "file" => "file",
        "directory" => "directory",
        "link" => "link",
        // `present`, or nothing said: whatever is there, but content means a file.
        _ if desired.contains_key("content") => "file",
        _ => match have {
            "absent" if desired.contains_key("ensure") => "file",
            "absent" => return None,
            "directory" => "directory",
            "link" => "link",
            "other" => "other",
            _ => "file",
        },
    })
}

/// `PATH<suffix>` for a backup, or `None` for no backup.
fn backup_name(name: &str, desired: &State) -> Option<String> {
    let b = text(desired, "backup")?;
    if b == "false" || b.is_empty() {
        return None;
    }
    Some(format!("{name}{b}"))
}

fn normalised_absolute(name: &str) -> bool {
    // Path::components() hides `.` and `//`, so the segments are checked as
    // written.
    match name.strip_prefix('/') {
        Some(rest) => rest.split('/').all(|seg| !matches!(seg, "" | "." | "..")),
        None => false,
    }
}

impl ResourceType for File {
    fn name(&self) -> &'static str {
        "file"
    }

    fn properties(&self) -> &'static [Property] {
        PROPS
    }

    fn validate(&self, name: &str, desired: &State) -> Result<(), Failure> {
        if name.contains(['\0', '\n', '\r']) || !normalised_absolute(name) {
            return Err(Failure::invalid(
                "name",
                format!(
                    "{name:?} is not a normalised absolute path (no '.', '..', '//' or trailing '/', not '/')"
                ),
            ));
        }
        let ensure = text(desired, "ensure");
        if let Some(t) = text(desired, "target") {
            if t.is_empty() || t.contains(['\0', '\n', '\r']) {
                return Err(Failure::invalid(
                    "target",
                    "must be a non-empty path on one line",
                ));
            }
            if matches!(ensure, Some("file" | "directory" | "absent" | "present")) {
                return Err(Failure::invalid(
                    "target",
                    "is only for links (ensure: link)",
                ));
            }
        } else if ensure == Some("link") {
            return Err(Failure::missing("target", "is required with ensure: link"));
        }
        if desired.contains_key("content") {
            if let Some(e @ ("directory" | "link" | "absent")) = ensure {
                return Err(Failure::invalid(
                    "content",
                    format!("cannot be set with ensure: {e}"),
                ));
            }
            if desired.contains_key("target") {
                return Err(Failure::invalid("content", "cannot be set on a link"));
            }
        }
        if desired.contains_key("mode")
            && (ensure == Some("link") || desired.contains_key("target"))
        {
            return Err(Failure::invalid("mode", "links have no mode of their own"));
        }
        for k in ["owner", "group"] {
            if let Some(v) = text(desired, k) {
                if v.is_empty()
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                {
                    return Err(Failure::invalid(
                        k,
                        format!("{v:?} is not a user or group name or number"),
                    ));
                }
            }
        }
        if let Some(b) = text(desired, "backup") {
            if b != "false" && (b.is_empty() || b.len() > 64 || b.contains(['/', '\0', '\n', '\r']))
            {
                return Err(Failure::invalid(
                    "backup",
                    format!("{b:?} is neither false nor a file name suffix such as .bak"),
                ));
            }
        }
        Ok(())
    }

    fn find(&self, sys: &System, name: &str) -> Result<State, Failure> {
        let Some(md) = sys.fs().lstat(name)? else {
            return Ok(missing(name));
        };
        let mut s = State::new();
        s.insert("name".into(), json!(name));
        match md.kind {
            FileKind::Symlink => {
                s.insert("ensure".into(), json!("link"));
                let t = sys.fs().read_link(name)?.unwrap_or_default();
                s.insert("target".into(), json!(t.to_string_lossy()));
            }
            FileKind::Dir => {
                s.insert("ensure".into(), json!("directory"));
            }
            FileKind::File => {
                s.insert("ensure".into(), json!("file"));
                s.insert("content".into(), json!(digest_file(sys, name)?));
            }
            FileKind::Other => {
                s.insert("ensure".into(), json!("other"));
            }
        }
        if md.kind != FileKind::Symlink {
            s.insert("mode".into(), json!(format!("{:04o}", md.mode)));
        }
        s.insert("owner".into(), json!(name_of(sys, PASSWD, md.uid)?));
        s.insert("group".into(), json!(name_of(sys, GROUP, md.gid)?));
        Ok(s)
    }

    fn search(&self, _sys: &System) -> Result<Vec<State>, Failure> {
        Err(Failure::invalid(
            "type",
            "file resources cannot be searched; use find with a path",
        ))
    }

    /// [`ResourceType::find`], then an owner or group that names the same id
    /// as the desired one (`0` and `root`) is shown as desired, and one that
    /// the root's databases do not know is refused.
    fn current(&self, sys: &System, name: &str, desired: &State) -> Result<State, Failure> {
        let mut s = self.find(sys, name)?;
        for (k, db) in [("owner", PASSWD), ("group", GROUP)] {
            let Some(want) = text(desired, k) else {
                continue;
            };
            let id = id_of(sys, db, want)?
                .ok_or_else(|| Failure::invalid(k, format!("{want:?} is not in {db}")))?;
            if let Some(have) = text(&s, k) {
                if id_of(sys, db, have)? == Some(id) {
                    s.insert(k.into(), json!(want));
                }
            }
        }
        Ok(s)
    }

    fn changes(&self, _name: &str, desired: &State, current: &State) -> Vec<Change> {
        let have = ensure_of(current);
        let Some(want) = wanted(desired, current) else {
            return Vec::new();
        };
        if want == "absent" {
            return if have == "absent" {
                Vec::new()
            } else {
                vec![Change::new("ensure", json!(have), json!("absent"))]
            };
        }
        let mut out = Vec::new();
        let fresh = have != want;
        if fresh {
            out.push(Change::new("ensure", json!(have), json!(want)));
        }
        let old = |k: &str| {
            if fresh {
                Value::Null
            } else {
                current.get(k).cloned().unwrap_or(Value::Null)
            }
        };
        if want == "file" {
            if let Some(c) = text(desired, "content") {
                let d = digest(c.as_bytes());
                if fresh || text(current, "content") != Some(d.as_str()) {
                    out.push(Change::new("content", old("content"), json!(d)));
                }
            }
        }
        if want == "link" {
            if let Some(t) = desired.get("target") {
                if fresh || current.get("target") != Some(t) {
                    out.push(Change::new("target", old("target"), t.clone()));
                }
            }
        }
        for k in ["mode", "owner", "group"] {
            if k == "mode" && want == "link" {
                continue;
            }
            if let Some(v) = desired.get(k) {
                if fresh || current.get(k) != Some(v) {
                    out.push(Change::new(k, old(k), v.clone()));
                }
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
        changes: &[Change],
    ) -> Result<(), Failure> {
        let fs = sys.fs();
        let have = ensure_of(current);
        let Some(want) = wanted(desired, current) else {
            return Ok(());
        };
        if want == "absent" {
            fs.remove(name, have == "directory")?;
            return Ok(());
        }
        if have != "absent" && have != want && (have == "directory" || want == "directory") {
            return Err(Failure::failed(format!(
                "{name} is a {have}; refusing to replace it with a {want} (remove it first)"
            )));
        }
        if have == "other" || want == "other" {
            if have != want {
                return Err(Failure::failed(format!(
                    "{name} is a socket, FIFO or device; refusing to replace it"
                )));
            }
        } else if have == "absent" {
            let parent = Path::new(name).parent().unwrap_or(Path::new("/"));
            if parent != Path::new("/") && fs.lstat(parent)?.map(|m| m.kind) != Some(FileKind::Dir)
            {
                return Err(Failure::failed(format!(
                    "the directory that would hold {name} does not exist"
                )));
            }
        }
        let changed = |k: &str| changes.iter().any(|c| c.property == k);
        let mode = text(desired, "mode").and_then(|m| u32::from_str_radix(m, 8).ok());
        let uid = match text(desired, "owner") {
            Some(o) => id_of(sys, PASSWD, o)?,
            None => None,
        };
        let gid = match text(desired, "group") {
            Some(g) => id_of(sys, GROUP, g)?,
            None => None,
        };
        // Mode and owner go with the content or the new directory, on its
        // descriptor, before it appears under its name.
        let mut settled = false;
        match want {
            "file" if have != "file" || changed("content") => {
                if have == "file" {
                    if let Some(b) = backup_name(name, desired) {
                        backup(sys, name, &b)?;
                    }
                }
                let content = text(desired, "content").unwrap_or_default();
                let opts = WriteOpts {
                    mode,
                    uid,
                    gid,
                    replace_link: have == "link",
                    ..WriteOpts::keep(0o644)
                };
                fs.write(name, content.as_bytes(), &opts)?;
                settled = true;
            }
            "directory" if have == "absent" => {
                fs.mkdir(name, mode.unwrap_or(0o755), (uid, gid))?;
                settled = true;
            }
            "link" if have != "link" || changed("target") => {
                let t = text(desired, "target")
                    .ok_or_else(|| Failure::missing("target", "is required with ensure: link"))?;
                fs.symlink(name, t)?;
            }
            _ => {}
        }
        if want == "link" {
            if uid.is_some() || gid.is_some() {
                fs.set_link_owner(name, (uid, gid))?;
            }
        } else if !settled && (mode.is_some() || uid.is_some() || gid.is_some()) {
            fs.set_meta(name, mode, (uid, gid))?;
        }
        Ok(())
    }
}

/// Copies the regular file `name` to `backup` (whole, with the original's
/// mode and owner, so a backup never shows more than the file did).
fn backup(sys: &System, name: &str, backup: &str) -> Result<(), Failure> {
    let (mut f, m) = sys
        .fs()
        .open_file(name)?
        .ok_or_else(|| Failure::failed(format!("{name} vanished")))?;
    if m.size > DIGEST_LIMIT {
        return Err(Failure::failed(format!(
            "{name} is larger than {DIGEST_LIMIT} bytes; refusing to back it up"
        )));
    }
    let mut old = Vec::new();
    (&mut f)
        .take(DIGEST_LIMIT)
        .read_to_end(&mut old)
        .map_err(|e| Failure::io(&sys.path(name), e))?;
    let opts = WriteOpts {
        mode: Some(m.mode),
        uid: Some(m.uid),
        gid: Some(m.gid),
        ..WriteOpts::keep(m.mode)
    };
    sys.fs().write(backup, &old, &opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::tests::Fixture;
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1001:1002:Alice:/home/alice:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:1002:\n";

    fn fixture() -> Fixture {
        Fixture::new("file")
            .file("/etc/passwd", PASSWD)
            .file("/etc/group", GROUP)
            .file("/srv/keep.conf", "keep me\n")
    }

    fn meta(f: &Fixture, abs: &str) -> fs::Metadata {
        fs::symlink_metadata(f.agent.inner.system.path(abs)).unwrap()
    }

    #[test]
    fn create_modify_rerun_noop_remove_find_search_a_file() {
        let f = fixture();
        let name = "/srv/app.conf";

        // noop: reports, touches nothing
        let r = f.ensure(name, &[("content", "a=1\n"), ("noop", "true")]);
        assert_eq!(r["changed"], json!(false));
        assert_eq!(
            r["changes"],
            json!([
                {"property": "ensure", "old": "absent", "new": "file"},
                {"property": "content", "old": null, "new": digest(b"a=1\n")},
            ])
        );
        assert!(!f.root().join("srv/app.conf").exists());

        // create with mode and owner
        let props = [
            ("content", "a=1\n"),
            ("mode", "640"),
            ("owner", "alice"),
            ("group", "staff"),
        ];
        let r = f.ensure(name, &props);
        assert_eq!(r["changed"], json!(true));
        assert_eq!(f.read(name), "a=1\n");
        let md = meta(&f, name);
        assert_eq!(
            (md.mode() & 0o7777, md.uid(), md.gid()),
            (0o640, 1001, 1002)
        );
        assert_eq!(r["resource"]["content"], json!(digest(b"a=1\n")));
        assert_eq!(r["resource"]["owner"], json!("alice"));

        // idempotent, also with the ids given as numbers
        let r = f.ensure(name, &props);
        assert_eq!(r["changes"], json!([]));
        let r = f.ensure(
            name,
            &[("owner", "1001"), ("group", "1002"), ("mode", "0640")],
        );
        assert_eq!(r["changes"], json!([]));

        // modify content with a backup: only the content changes
        let r = f.ensure(name, &[("content", "a=2\n"), ("backup", ".bak")]);
        assert_eq!(
            r["changes"],
            json!([{"property": "content", "old": digest(b"a=1\n"), "new": digest(b"a=2\n")}])
        );
        assert_eq!(f.read(name), "a=2\n");
        assert_eq!(f.read("/srv/app.conf.bak"), "a=1\n");
        let md = meta(&f, name);
        assert_eq!(
            (md.mode() & 0o7777, md.uid(), md.gid()),
            (0o640, 1001, 1002)
        );
        // no backup by default
        f.ensure(name, &[("content", "a=3\n")]);
        assert_eq!(f.read("/srv/app.conf.bak"), "a=1\n");
        // mode alone
        let r = f.ensure(name, &[("mode", "0600")]);
        assert_eq!(
            r["changes"],
            json!([{"property": "mode", "old": "0640", "new": "0600"}])
        );
        assert_eq!(meta(&f, name).mode() & 0o7777, 0o600);

        // find: the content only as a digest
        let found = f.find(name);
        assert_eq!(found["ensure"], json!("file"));
        assert_eq!(
            found["resource"],
            json!({"name": name, "ensure": "file", "content": digest(b"a=3\n"),
                   "mode": "0600", "owner": "alice", "group": "staff"})
        );
        assert_eq!(f.find("/srv/nope")["ensure"], json!("absent"));
        // search is refused
        let e = f
            .agent
            .inner
            .search(&serde_json::Map::from_iter([(
                "type".to_string(),
                json!("file"),
            )]))
            .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("type: file resources cannot be searched"));

        // remove
        let r = f.ensure(name, &[("ensure", "absent")]);
        assert_eq!(
            r["changes"],
            json!([{"property": "ensure", "old": "file", "new": "absent"}])
        );
        assert!(!f.root().join("srv/app.conf").exists());
        assert_eq!(
            f.ensure(name, &[("ensure", "absent")])["changed"],
            json!(false)
        );
        assert_eq!(f.read("/srv/keep.conf"), "keep me\n");

        // present: an empty file when missing, anything existing otherwise
        f.ensure("/srv/empty", &[("ensure", "present")]);
        assert_eq!(f.read("/srv/empty"), "");
        assert_eq!(meta(&f, "/srv/empty").mode() & 0o7777, 0o644);
        let r = f.ensure("/srv", &[("ensure", "present")]);
        assert_eq!(r["changes"], json!([]));
        // mode without ensure on a missing path: nothing to manage
        let r = f.ensure("/srv/ghost", &[("mode", "0644")]);
        assert_eq!(r["changes"], json!([]));
        assert!(!f.root().join("srv/ghost").exists());
    }

    #[test]
    fn directories_and_links() {
        let f = fixture();

        // directory
        let r = f.ensure("/srv/data", &[("ensure", "directory"), ("mode", "0750")]);
        assert_eq!(r["changed"], json!(true));
        let md = meta(&f, "/srv/data");
        assert!(md.is_dir());
        assert_eq!(md.mode() & 0o7777, 0o750);
        assert_eq!(
            f.ensure("/srv/data", &[("ensure", "directory"), ("mode", "0750")])["changes"],
            json!([])
        );

        // link: created, idempotent, retargeted atomically
        let r = f.ensure(
            "/srv/current",
            &[("ensure", "link"), ("target", "/srv/data")],
        );
        assert_eq!(
            r["changes"],
            json!([{"property": "ensure", "old": "absent", "new": "link"},
                   {"property": "target", "old": null, "new": "/srv/data"}])
        );
        let link = f.root().join("srv/current");
        assert_eq!(fs::read_link(&link).unwrap(), PathBuf::from("/srv/data"));
        assert_eq!(
            f.find("/srv/current")["resource"]["target"],
            json!("/srv/data")
        );
        assert_eq!(
            f.ensure("/srv/current", &[("target", "/srv/data")])["changes"],
            json!([])
        );
        let r = f.ensure("/srv/current", &[("target", "keep.conf")]);
        assert_eq!(
            r["changes"],
            json!([{"property": "target", "old": "/srv/data", "new": "keep.conf"}])
        );
        assert_eq!(fs::read_link(&link).unwrap(), PathBuf::from("keep.conf"));
        // the file it pointed to is untouched; no temporaries are left
        assert_eq!(f.read("/srv/keep.conf"), "keep me\n");
        let mut left: Vec<String> = fs::read_dir(f.root().join("srv"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["current", "data", "keep.conf"]);

        // a link replaced by a file (not the file it points to)
        f.ensure("/srv/current", &[("ensure", "file"), ("content", "x\n")]);
        assert!(meta(&f, "/srv/current").is_file());
        assert_eq!(f.read("/srv/keep.conf"), "keep me\n");
        // a file replaced by a link
        f.ensure("/srv/current", &[("ensure", "link"), ("target", "data")]);
        assert!(meta(&f, "/srv/current").file_type().is_symlink());

        // directories are never replaced
        let e = f.ensure_err("/srv/data", &[("ensure", "file")]);
        assert_eq!(e.status, mco_core::Status::Aborted);
        assert!(e.message.contains("refusing to replace"), "{}", e.message);
        let e = f.ensure_err("/srv/data", &[("ensure", "present"), ("content", "x")]);
        assert!(e.message.contains("refusing to replace"), "{}", e.message);
        let e = f.ensure_err("/srv/keep.conf", &[("ensure", "directory")]);
        assert!(e.message.contains("refusing to replace"), "{}", e.message);
        assert_eq!(f.read("/srv/keep.conf"), "keep me\n");

        // removal: links and empty directories; a full directory is refused
        f.ensure("/srv/data/inner", &[("content", "i\n")]);
        let e = f.ensure_err("/srv/data", &[("ensure", "absent")]);
        assert!(e.message.contains("not empty"), "{}", e.message);
        assert_eq!(f.read("/srv/data/inner"), "i\n");
        f.ensure("/srv/data/inner", &[("ensure", "absent")]);
        f.ensure("/srv/current", &[("ensure", "absent")]);
        f.ensure("/srv/data", &[("ensure", "absent")]);
        assert!(!f.root().join("srv/data").exists());
        assert!(fs::symlink_metadata(&link).is_err());
    }

    #[test]
    fn bad_input_names_the_property() {
        let f = fixture();
        for bad in [
            "srv/x",
            "/srv/../etc/passwd",
            "/srv/./x",
            "/srv//x",
            "/srv/x/",
            "/",
        ] {
            let e = f.ensure_err(bad, &[("content", "x")]);
            assert_eq!(e.status, mco_core::Status::InvalidData, "{bad}");
            assert!(e.message.starts_with("name:"), "{}", e.message);
        }
        let e = f.ensure_err("/srv/l", &[("ensure", "link")]);
        assert_eq!(e.status, mco_core::Status::MissingData);
        assert!(e.message.starts_with("target:"), "{}", e.message);
        let e = f.ensure_err("/srv/d", &[("ensure", "directory"), ("content", "x")]);
        assert!(e.message.starts_with("content:"), "{}", e.message);
        let e = f.ensure_err("/srv/x", &[("mode", "rwx")]);
        assert!(e.message.starts_with("mode:"), "{}", e.message);
        let e = f.ensure_err("/srv/x", &[("content", "x"), ("backup", "../x")]);
        assert!(e.message.starts_with("backup:"), "{}", e.message);
        let e = f.ensure_err("/srv/x", &[("content", "x"), ("owner", "nobody")]);
        assert_eq!(e.status, mco_core::Status::InvalidData);
        assert!(e.message.starts_with("owner:"), "{}", e.message);
        let e = f.ensure_err("/srv/x", &[("content", "x"), ("group", "a:b")]);
        assert!(e.message.starts_with("group:"), "{}", e.message);
        let e = f.ensure_err("/nodir/x", &[("content", "x")]);
        assert_eq!(e.status, mco_core::Status::Aborted);
        assert!(!f.root().join("srv/x").exists());
        assert!(!f.root().join("nodir").exists());
    }
}

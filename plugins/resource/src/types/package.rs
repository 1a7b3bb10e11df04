//! `package`: Debian packages, through dpkg and apt.
//!
//! Reading never runs a tool: `find` and `search` parse dpkg's status
//! database (`/var/lib/dpkg/status` under the root) directly. A package is
//! installed when the last word of its `Status` is `installed` (or a
//! `triggers-*` state); `find` then shows the installed version as `ensure`
//! (as Puppet does), otherwise `absent`. Alongside the `ensure` property the
//! state carries read-only facts: `status` (dpkg's state word, e.g.
//! `installed`, `config-files`, `not-installed`, or `unknown` when dpkg has no
//! record), `selection` (`install`, `hold`, `deinstall`, `purge`),
//! `architecture`, and in `find` the `candidate` version an install would
//! pick, when one is known.
//!
//! `ensure` accepts `present`/`installed` (any installed version), `absent`
//! (not installed; a package whose configuration files are left counts as
//! absent), `purged` (dpkg has no record left), `latest` (the candidate
//! version is installed), `held` (installed and on hold), or a version
//! (exactly that version installed).
//!
//! Changing goes through the real tools:
//! - on the real system (root `/`): `apt-get install -y -q` with
//!   `DEBIAN_FRONTEND=noninteractive` and `--force-confold`, the candidate
//!   coming from `apt-cache policy`; removal with `dpkg -r`/`dpkg -P`, which
//!   refuse to break dependent packages rather than remove them too;
//! - under another root there is no apt index, so packages come from a
//!   **local repository**: the `.deb` files in `/var/cache/mco/debs` under
//!   the root named `NAME_*.deb` (their real package name and version are read
//!   with `dpkg-deb`). They are installed with `dpkg --root=R
//!   --admindir=R/var/lib/dpkg --force-not-root -i FILE`; the candidate is the
//!   newest such file. Maintainer scripts then run chrooted into the root (dpkg's
//!   default), so a package with scripts needs a shell in that root;
//!   `--force-script-chrootless` is deliberately not used, as the scripts would
//!   then act on the real system.
//!
//! `held` sets dpkg's selection with `dpkg --set-selections`; a held package
//! is left alone by apt, so `latest` cannot upgrade it until it is released
//! (by `dpkg --set-selections`, outside this type). Multi-arch
//! qualified names (`libc6:i386`) are not supported: the first stanza of the
//! name is the package.

use std::cmp::Ordering;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::model::{Change, Failure, Kind, Property, State};
use crate::system::{Cmd, System};
use crate::types::{missing, ResourceType};

/// dpkg's status database, as written on the node.
pub const STATUS: &str = "/var/lib/dpkg/status";

/// dpkg's database directory, as written on the node.
pub const ADMINDIR: &str = "/var/lib/dpkg";

/// The local repository used when the root is not `/`: `.deb` files named
/// `NAME_*.deb`.
pub const LOCAL_DEBS: &str = "/var/cache/mco/debs";

/// The words `ensure` accepts besides a version.
const KEYWORDS: &[&str] = &["present", "installed", "absent", "purged", "latest", "held"];

const PROPS: &[Property] = &[Property::new("ensure", Kind::Text)];

/// The `package` type.
pub struct Package;

/// One stanza of the status file: its fields in order.
type Stanza = Vec<(String, String)>;

/// Splits an RFC822-style control file into stanzas; continuation lines are
/// joined to their field with a newline.
fn stanzas(text: &str) -> Vec<Stanza> {
    let mut out = Vec::new();
    let mut cur: Stanza = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = cur.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn field<'a>(s: &'a Stanza, key: &str) -> Option<&'a str> {
    s.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// Whether dpkg's state word means the package is installed.
fn is_installed(status: &str) -> bool {
    matches!(
        status,
        "installed" | "triggers-pending" | "triggers-awaited"
    )
}

/// The state of one stanza.
fn state(s: &Stanza) -> State {
    let name = field(s, "Package").unwrap_or_default();
    let words: Vec<&str> = field(s, "Status")
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let selection = words.first().copied().unwrap_or("unknown");
    let status = words.get(2).copied().unwrap_or("unknown");
    let version = field(s, "Version").unwrap_or_default();
    let mut st = State::new();
    st.insert("name".into(), json!(name));
    st.insert(
        "ensure".into(),
        json!(if is_installed(status) {
            version
        } else {
            "absent"
        }),
    );
    st.insert("status".into(), json!(status));
    st.insert("selection".into(), json!(selection));
    if let Some(a) = field(s, "Architecture") {
        st.insert("architecture".into(), json!(a));
    }
    st
}

/// The stanza for `name`: the first installed one, else the first.
fn lookup(sys: &System, name: &str) -> Result<Option<Stanza>, Failure> {
    let text = sys.read(STATUS)?.unwrap_or_default();
    let all: Vec<Stanza> = stanzas(&text)
        .into_iter()
        .filter(|s| field(s, "Package") == Some(name))
        .collect();
    let installed = all.iter().position(|s| {
        let st = state(s);
        st["status"].as_str().is_some_and(is_installed)
    });
    Ok(match installed {
        Some(i) => all.into_iter().nth(i),
        None => all.into_iter().next(),
    })
}

/// Debian package names: lower case letters, digits, `+`, `-`, `.`,
/// starting with a letter or digit.
fn name_ok(s: &str) -> bool {
    s.len() >= 2
        && s.len() <= 128
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

/// A version as `ensure` takes it: `[A-Za-z0-9.+~:-]`, starting with a digit
/// (as Debian versions do) so that a mistyped keyword is not taken for one.
fn version_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~:-".contains(&b))
}

/// Orders two characters of a version part as dpkg does: `~` before
/// everything, then the end of the part, then letters, then the rest.
fn char_order(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's comparison of an upstream version or revision.
fn cmp_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // the non-digit prefix, character by character
        loop {
            let ca = a.get(i).copied().filter(|c| !c.is_ascii_digit());
            let cb = b.get(j).copied().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            let (oa, ob) = (char_order(ca), char_order(cb));
            if oa != ob {
                return oa.cmp(&ob);
            }
            i += 1;
            j += 1;
        }
        // then the number
        let sa = i;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        let sb = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let na = std::str::from_utf8(&a[sa..i])
            .unwrap_or("")
            .trim_start_matches('0');
        let nb = std::str::from_utf8(&b[sb..j])
            .unwrap_or("")
            .trim_start_matches('0');
        let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// Compares two Debian versions (`[epoch:]upstream[-revision]`) as dpkg does.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) => (e.parse().unwrap_or(0), r),
            None => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u, r),
            None => (epoch, rest, ""),
        }
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| cmp_part(ua, ub))
        .then_with(|| cmp_part(ra, rb))
}

/// The `--root`/`--admindir` arguments for dpkg when the root is not `/`.
fn dpkg(sys: &System) -> Cmd {
    let mut c = Cmd::new("dpkg").env("DEBIAN_FRONTEND", "noninteractive");
    if !sys.is_real_root() {
        let log = sys.path("/var/log");
        let log = if log.is_dir() {
            log.join("dpkg.log")
        } else {
            PathBuf::from("/dev/null")
        };
        c = c
            .arg(format!("--root={}", sys.root().display()))
            .arg(format!("--admindir={}", sys.path(ADMINDIR).display()))
            .arg(format!("--log={}", log.display()))
            .arg("--force-not-root");
    }
    c
}

/// Runs `cmd`, turning a failure into one naming the command.
fn run(sys: &System, cmd: Cmd) -> Result<(), Failure> {
    let o = sys.run(&cmd)?;
    if o.success() {
        Ok(())
    } else {
        Err(Failure::failed(format!(
            "{} failed ({}): {}",
            cmd.display(),
            o.code,
            o.why()
        )))
    }
}

/// The `.deb` files of the local repository for `name`: (version, file).
fn local_debs(sys: &System, name: &str) -> Result<Vec<(String, PathBuf)>, Failure> {
    let dir = sys.path(LOCAL_DEBS);
    // Listed without following links; only regular files are packages.
    let Some(entries) = sys.fs().list(LOCAL_DEBS)? else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}_");
    let mut out = Vec::new();
    for (file, kind) in entries {
        let file = file.to_string_lossy().into_owned();
        if kind != crate::beneath::Kind::File
            || !file.starts_with(&prefix)
            || !file.ends_with(".deb")
        {
            continue;
        }
        let path = dir.join(&file);
        let o = sys.run(
            &Cmd::new("dpkg-deb")
                .arg("-f")
                .arg(&path)
                .args(["Package", "Version"]),
        )?;
        if !o.success() {
            continue;
        }
        let fields = stanzas(&o.stdout).into_iter().next().unwrap_or_default();
        if field(&fields, "Package") == Some(name) {
            if let Some(v) = field(&fields, "Version") {
                out.push((v.to_string(), path));
            }
        }
    }
    out.sort_by(|a, b| compare_versions(&a.0, &b.0).then_with(|| a.1.cmp(&b.1)));
    Ok(out)
}

/// The version an install would pick: apt's candidate on the real system,
/// the newest local `.deb` elsewhere.
fn candidate(sys: &System, name: &str) -> Result<Option<String>, Failure> {
    if !sys.is_real_root() {
        return Ok(local_debs(sys, name)?.pop().map(|(v, _)| v));
    }
    let o = sys.run(&Cmd::new("apt-cache").args(["policy", name]))?;
    Ok(o.stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty() && v != "(none)"))
}

/// Whether `current` satisfies the wanted `ensure`.
fn satisfied(want: &str, current: &State) -> bool {
    let text = |k: &str| current.get(k).and_then(Value::as_str).unwrap_or("");
    let status = text("status");
    let installed = is_installed(status);
    let version = text("ensure");
    match want {
        "absent" => matches!(status, "" | "unknown" | "not-installed" | "config-files"),
        "purged" => matches!(status, "" | "unknown" | "not-installed"),
        "present" | "installed" => installed,
        "held" => installed && text("selection") == "hold",
        "latest" => {
            installed
                && current
                    .get("candidate")
                    .and_then(Value::as_str)
                    .is_none_or(|c| compare_versions(c, version) != Ordering::Greater)
        }
        v => installed && compare_versions(v, version) == Ordering::Equal,
    }
}

impl ResourceType for Package {
    fn name(&self) -> &'static str {
        "package"
    }

    fn properties(&self) -> &'static [Property] {
        PROPS
    }

    fn validate(&self, name: &str, desired: &State) -> Result<(), Failure> {
        if !name_ok(name) {
            return Err(Failure::invalid(
                "name",
                format!("{name:?} is not a Debian package name"),
            ));
        }
        if let Some(e) = desired.get("ensure").and_then(Value::as_str) {
            if !KEYWORDS.contains(&e) && !version_ok(e) {
                return Err(Failure::invalid(
                    "ensure",
                    format!(
                        "{e:?} is neither one of {} nor a version",
                        KEYWORDS.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn find(&self, sys: &System, name: &str) -> Result<State, Failure> {
        let mut st = match lookup(sys, name)? {
            Some(s) => state(&s),
            None => {
                let mut m = missing(name);
                m.insert("status".into(), json!("unknown"));
                m
            }
        };
        if name_ok(name) {
            if let Some(c) = candidate(sys, name)? {
                st.insert("candidate".into(), json!(c));
            }
        }
        Ok(st)
    }

    fn search(&self, sys: &System) -> Result<Vec<State>, Failure> {
        let text = sys.read(STATUS)?.unwrap_or_default();
        Ok(stanzas(&text)
            .iter()
            .filter(|s| field(s, "Package").is_some())
            .map(state)
            .collect())
    }

    fn changes(&self, _name: &str, desired: &State, current: &State) -> Vec<Change> {
        let want = desired
            .get("ensure")
            .and_then(Value::as_str)
            .unwrap_or("present");
        if satisfied(want, current) {
            Vec::new()
        } else {
            vec![Change::new(
                "ensure",
                current.get("ensure").cloned().unwrap_or(json!("absent")),
                json!(want),
            )]
        }
    }

    fn apply(
        &self,
        sys: &System,
        name: &str,
        desired: &State,
        current: &State,
        _changes: &[Change],
    ) -> Result<(), Failure> {
        let want = desired
            .get("ensure")
            .and_then(Value::as_str)
            .unwrap_or("present");
        match want {
            "absent" => return run(sys, dpkg(sys).args(["-r", name])),
            "purged" => return run(sys, dpkg(sys).args(["-P", name])),
            _ => {}
        }
        let installed = current
            .get("status")
            .and_then(Value::as_str)
            .is_some_and(is_installed);
        let version = match want {
            "present" | "installed" | "held" | "latest" => None,
            v => Some(v),
        };
        let install = match want {
            "present" | "installed" | "held" => !installed,
            _ => true,
        };
        if install {
            if sys.is_real_root() {
                let target = match version {
                    Some(v) => format!("{name}={v}"),
                    None => name.to_string(),
                };
                let mut c = Cmd::new("apt-get")
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .args([
                        "install",
                        "-y",
                        "-q",
                        "-o",
                        "Dpkg::Options::=--force-confold",
                    ]);
                if version.is_some() {
                    c = c.arg("--allow-downgrades");
                }
                run(sys, c.arg(target))?;
            } else {
                let debs = local_debs(sys, name)?;
                let pick = match version {
                    Some(v) => debs
                        .into_iter()
                        .rev()
                        .find(|(have, _)| compare_versions(have, v) == Ordering::Equal),
                    None => debs.into_iter().next_back(),
                };
                let Some((_, file)) = pick else {
                    return Err(Failure::failed(format!(
                        "no .deb for {name}{} in {} (the local repository used when the root is not /)",
                        version.map(|v| format!(" version {v}")).unwrap_or_default(),
                        sys.path(LOCAL_DEBS).display()
                    )));
                };
                run(sys, dpkg(sys).args(["--force-confold", "-i"]).arg(&file))?;
            }
        }
        if want == "held" {
            run(
                sys,
                dpkg(sys)
                    .arg("--set-selections")
                    .stdin(format!("{name} hold\n")),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::tests::Fixture;
    use std::path::Path;

    /// Two packages the tests never touch; dpkg writes stanzas in this field
    /// order, with a blank line after each, so they survive byte for byte.
    const BEFORE: &str = "Package: base-files\nStatus: install ok installed\nPriority: required\nSection: admin\nInstalled-Size: 391\nMaintainer: Santiago Vila <sanvila@debian.org>\nArchitecture: amd64\nVersion: 12.4+deb12u5\nDescription: Debian base system miscellaneous files\n This package contains the basic filesystem hierarchy.\n\nPackage: oldie\nStatus: deinstall ok config-files\nPriority: optional\nSection: misc\nInstalled-Size: 10\nMaintainer: X <x@example.org>\nArchitecture: all\nVersion: 0.9\nConffiles:\n /etc/oldie.conf 0123456789abcdef0123456789abcdef\nDescription: an old package\n\n";

    /// Builds `mco-demo` at `version` into the root's local repository.
    fn build_deb(root: &Path, version: &str) {
        let work = tempfile::tempdir().unwrap();
        let pkg = work.path().join("pkg");
        std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(pkg.join("usr/share/mco-demo")).unwrap();
        std::fs::write(
            pkg.join("DEBIAN/control"),
            format!("Package: mco-demo\nVersion: {version}\nArchitecture: all\nMaintainer: Test <t@example.org>\nDescription: a demo\n"),
        )
        .unwrap();
        std::fs::write(pkg.join("usr/share/mco-demo/hello"), format!("{version}\n")).unwrap();
        std::fs::create_dir_all(pkg.join("etc")).unwrap();
        std::fs::write(pkg.join("etc/mco-demo.conf"), "level=1\n").unwrap();
        std::fs::write(pkg.join("DEBIAN/conffiles"), "/etc/mco-demo.conf\n").unwrap();
        let repo = root.join("var/cache/mco/debs");
        std::fs::create_dir_all(&repo).unwrap();
        let out = std::process::Command::new("dpkg-deb")
            .arg("--root-owner-group")
            .arg("--build")
            .arg(&pkg)
            .arg(repo.join(format!("mco-demo_{version}_all.deb")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    /// A minimal dpkg database under the root.
    fn fixture() -> Fixture {
        let f = Fixture::new("package")
            .file(STATUS, BEFORE)
            .file("/var/lib/dpkg/available", "")
            .file("/var/lib/dpkg/info/base-files.list", "")
            .file("/var/lib/dpkg/updates/.keep", "");
        build_deb(f.root(), "1.0-1");
        build_deb(f.root(), "1.1-1");
        f
    }

    fn stanza_of(text: &str, name: &str) -> Option<String> {
        text.split("\n\n")
            .find(|s| s.starts_with(&format!("Package: {name}\n")))
            .map(str::to_string)
    }

    fn without(text: &str, name: &str) -> String {
        text.split_inclusive("\n\n")
            .filter(|s| !s.starts_with(&format!("Package: {name}\n")))
            .collect()
    }

    #[test]
    fn versions_compare_as_dpkg_does() {
        for (a, b, o) in [
            ("1.0", "1.0", Ordering::Equal),
            ("1.0-1", "1.0-2", Ordering::Less),
            ("1:0.1", "2.0", Ordering::Greater),
            ("1.0~rc1", "1.0", Ordering::Less),
            ("1.10", "1.9", Ordering::Greater),
            ("1.0a", "1.0", Ordering::Greater),
            ("1.0+b1", "1.0", Ordering::Greater),
            ("01.0", "1.0", Ordering::Equal),
        ] {
            assert_eq!(compare_versions(a, b), o, "{a} vs {b}");
        }
    }

    #[test]
    fn install_rerun_noop_version_remove_purge_find_search() {
        let f = fixture();
        let hello = f.root().join("usr/share/mco-demo/hello");

        // find before: absent, with the local candidate
        let found = f.find("mco-demo");
        assert_eq!(found["ensure"], json!("absent"));
        assert_eq!(found["resource"]["candidate"], json!("1.1-1"));

        // noop: reports, touches nothing
        let r = f.ensure("mco-demo", &[("ensure", "present"), ("noop", "true")]);
        assert_eq!(r["changed"], json!(false));
        assert_eq!(
            r["changes"],
            json!([{"property": "ensure", "old": "absent", "new": "present"}])
        );
        assert_eq!(f.read(STATUS), BEFORE);
        assert!(!hello.exists());

        // a specific version
        let r = f.ensure("mco-demo", &[("ensure", "1.0-1")]);
        assert_eq!(r["changed"], json!(true), "{r}");
        assert_eq!(r["ensure"], json!("1.0-1"));
        assert_eq!(std::fs::read_to_string(&hello).unwrap(), "1.0-1\n");
        let status = f.read(STATUS);
        assert_eq!(
            stanza_of(&status, "mco-demo").unwrap(),
            "Package: mco-demo\nStatus: install ok installed\nMaintainer: Test <t@example.org>\nArchitecture: all\nVersion: 1.0-1\nConffiles:\n /etc/mco-demo.conf 91d2ca84c525838951f8c9a7620aad47\nDescription: a demo"
        );
        assert_eq!(without(&status, "mco-demo"), BEFORE);

        // idempotent; present is satisfied by any version
        for want in ["1.0-1", "present", "installed"] {
            let r = f.ensure("mco-demo", &[("ensure", want)]);
            assert_eq!(r["changed"], json!(false), "{want}: {r}");
            assert_eq!(r["changes"], json!([]));
        }

        // latest: upgrades to the newest local .deb, then is satisfied
        let r = f.ensure("mco-demo", &[("ensure", "latest")]);
        assert_eq!(
            r["changes"],
            json!([{"property": "ensure", "old": "1.0-1", "new": "latest"}])
        );
        assert_eq!(r["ensure"], json!("1.1-1"));
        assert_eq!(std::fs::read_to_string(&hello).unwrap(), "1.1-1\n");
        assert_eq!(
            f.ensure("mco-demo", &[("ensure", "latest")])["changed"],
            json!(false)
        );

        // modify: back to an older version, then latest again
        let r = f.ensure("mco-demo", &[("ensure", "1.0-1")]);
        assert_eq!(
            r["changes"],
            json!([{"property": "ensure", "old": "1.1-1", "new": "1.0-1"}])
        );
        assert_eq!(r["ensure"], json!("1.0-1"));
        assert_eq!(std::fs::read_to_string(&hello).unwrap(), "1.0-1\n");
        assert_eq!(without(&f.read(STATUS), "mco-demo"), BEFORE);
        let r = f.ensure("mco-demo", &[("ensure", "latest")]);
        assert_eq!(r["ensure"], json!("1.1-1"));

        // held
        let r = f.ensure("mco-demo", &[("ensure", "held")]);
        assert_eq!(r["changed"], json!(true));
        assert_eq!(r["resource"]["selection"], json!("hold"));
        assert!(f
            .read(STATUS)
            .contains("Package: mco-demo\nStatus: hold ok installed\n"));
        assert_eq!(
            f.ensure("mco-demo", &[("ensure", "held")])["changed"],
            json!(false)
        );

        // find and search
        let found = f.find("mco-demo");
        assert_eq!(found["ensure"], json!("1.1-1"));
        assert_eq!(found["resource"]["status"], json!("installed"));
        assert_eq!(found["resource"]["architecture"], json!("all"));
        let found = f.find("oldie");
        assert_eq!(found["ensure"], json!("absent"));
        assert_eq!(found["resource"]["status"], json!("config-files"));
        assert_eq!(f.find("nope")["ensure"], json!("absent"));
        let listed: Vec<(String, String)> = f.search()["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_string(),
                    r["ensure"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("base-files".to_string(), "12.4+deb12u5".to_string()),
                ("mco-demo".to_string(), "1.1-1".to_string()),
                ("oldie".to_string(), "absent".to_string()),
            ]
        );

        // oldie's config files count as absent, but not as purged
        assert_eq!(
            f.ensure("oldie", &[("ensure", "absent")])["changed"],
            json!(false)
        );
        let r = f.ensure("oldie", &[("ensure", "purged"), ("noop", "true")]);
        assert_eq!(
            r["changes"],
            json!([{"property": "ensure", "old": "absent", "new": "purged"}])
        );

        // remove: files gone, the configuration file and the stanza kept
        let conf = f.root().join("etc/mco-demo.conf");
        let r = f.ensure("mco-demo", &[("ensure", "absent")]);
        assert_eq!(r["changed"], json!(true), "{r}");
        assert_eq!(r["ensure"], json!("absent"));
        assert_eq!(r["resource"]["status"], json!("config-files"));
        assert!(!hello.exists());
        assert!(conf.exists());
        let status = f.read(STATUS);
        let st = stanza_of(&status, "mco-demo").unwrap_or_default();
        assert!(st.contains("\nStatus: deinstall ok config-files\n"), "{st}");
        assert_eq!(without(&status, "mco-demo"), BEFORE);
        assert_eq!(
            f.ensure("mco-demo", &[("ensure", "absent")])["changed"],
            json!(false)
        );

        // purge: the configuration file and the stanza go
        let r = f.ensure("mco-demo", &[("ensure", "purged")]);
        assert_eq!(r["changed"], json!(true), "{r}");
        assert_eq!(r["resource"]["status"], json!("unknown"));
        assert!(!conf.exists());
        assert_eq!(f.read(STATUS), BEFORE);
        assert_eq!(
            f.ensure("mco-demo", &[("ensure", "purged")])["changed"],
            json!(false)
        );
    }

    #[test]
    fn bad_input_names_the_property() {
        let f = fixture();
        let e = f.ensure_err("mco-demo", &[("ensure", "installd")]);
        assert_eq!(e.status, mco_core::Status::InvalidData);
        assert!(e.message.starts_with("ensure:"), "{}", e.message);
        let e = f.ensure_err("mco-demo", &[("ensure", "1.0;rm -rf /")]);
        assert!(e.message.starts_with("ensure:"), "{}", e.message);
        let e = f.ensure_err("Bad Name", &[("ensure", "present")]);
        assert!(e.message.starts_with("name:"), "{}", e.message);
        let e = f.ensure_err("-rf", &[("ensure", "present")]);
        assert!(e.message.starts_with("name:"), "{}", e.message);
        let e = f.ensure_err("mco-demo", &[("enable", "true")]);
        assert!(e.message.starts_with("enable:"), "{}", e.message);
        // a version with no .deb: fails, nothing touched
        let e = f.ensure_err("mco-demo", &[("ensure", "9.9")]);
        assert_eq!(e.status, mco_core::Status::Aborted);
        assert!(e.message.contains("no .deb"), "{}", e.message);
        assert_eq!(f.read(STATUS), BEFORE);
    }
}

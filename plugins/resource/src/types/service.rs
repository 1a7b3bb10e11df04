//! `service`: whether a service runs (`ensure`: `running`/`stopped`) and
//! whether it starts at boot (`enable`).
//!
//! Two providers, chosen per node:
//! - **systemd** when the root is `/` and `/run/systemd/system` exists:
//!   `systemctl is-active`, `is-enabled`, `start`, `stop`, `enable`,
//!   `disable`. A name without a unit suffix means `NAME.service`; `search`
//!   lists every service unit file (templates excepted) by its full unit name,
//!   its state from one `systemctl list-units` call.
//! - **init** (SysV) otherwise: the script `/etc/init.d/NAME` under the root.
//!   `NAME status` exiting 0 means running, anything else (LSB: 3) stopped;
//!   `start`/`stop` go through the script, run on this host at its path under
//!   the root with the command timeout. Scripts must detach their daemons as
//!   real ones do (a daemon that keeps the script's standard output or error
//!   open holds the run until the timeout kills it). Boot links are managed
//!   natively, because `update-rc.d` cannot work under another root: the
//!   service is enabled when some `S??NAME` link exists in
//!   `/etc/rc{2,3,4,5}.d`. Enabling removes `K??NAME` links there and adds
//!   `S01NAME` where no start link exists, and adds `K01NAME` in
//!   `/etc/rc{0,1,6}.d` where the service has no link; disabling replaces the
//!   `S??NAME` links in `rc{2,3,4,5}.d` with `K01NAME` (as
//!   `update-rc.d disable` does). Each link points to `../init.d/NAME` and
//!   is created under a temporary name and renamed into place. Links of other
//!   services are never touched.
//!
//! A service that does not exist is `ensure: absent`; changing it fails.
//! States also show the `provider` used.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::beneath::Kind as FileKind;
use crate::model::{Change, Failure, Kind, Property, State};
use crate::system::{Cmd, Output, System};
use crate::types::{missing, ResourceType};

/// Where init scripts live, as written on the node.
pub const INIT_D: &str = "/etc/init.d";

/// Runlevels a service starts in when enabled.
const START_LEVELS: [u8; 4] = [2, 3, 4, 5];

/// Runlevels a service is stopped in when enabled.
const STOP_LEVELS: [u8; 3] = [0, 1, 6];

/// Files in `/etc/init.d` that are not services.
const NOT_SERVICES: &[&str] = &["README", "skeleton", "rc", "rcS", "rc.local"];

/// Unit suffixes that mean the name is already a unit name.
const UNIT_SUFFIXES: &[&str] = &[
    ".service", ".socket", ".timer", ".target", ".mount", ".path", ".slice",
];

const PROPS: &[Property] = &[
    Property::new("ensure", Kind::OneOf(&["running", "stopped"])),
    Property::new("enable", Kind::Boolean),
];

/// The `service` type.
pub struct Service;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    Systemd,
    Init,
}

impl Provider {
    fn of(sys: &System) -> Provider {
        if sys.is_real_root()
            && sys
                .fs()
                .lstat("/run/systemd/system")
                .ok()
                .flatten()
                .map(|m| m.kind)
                == Some(FileKind::Dir)
        {
            Provider::Systemd
        } else {
            Provider::Init
        }
    }

    fn name(self) -> &'static str {
        match self {
            Provider::Systemd => "systemd",
            Provider::Init => "init",
        }
    }
}

fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with(['.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._:+-\\".contains(&b))
}

fn unit(name: &str) -> String {
    if UNIT_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        name.to_string()
    } else {
        format!("{name}.service")
    }
}

fn state(name: &str, running: bool, enabled: bool, p: Provider) -> State {
    let mut s = State::new();
    s.insert("name".into(), json!(name));
    s.insert(
        "ensure".into(),
        json!(if running { "running" } else { "stopped" }),
    );
    s.insert("enable".into(), json!(enabled));
    s.insert("provider".into(), json!(p.name()));
    s
}

fn must(cmd: &Cmd, o: Output) -> Result<(), Failure> {
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

// ---- systemd ----

fn systemctl(sys: &System, args: &[&str]) -> Result<Output, Failure> {
    sys.run(&Cmd::new("systemctl").args(args))
}

fn systemd_find(sys: &System, name: &str) -> Result<State, Failure> {
    let u = unit(name);
    let load = systemctl(sys, &["show", "-p", "LoadState", "--value", &u])?;
    if load.stdout.trim() == "not-found" || load.stdout.trim().is_empty() {
        return Ok(missing(name));
    }
    let running = systemctl(sys, &["is-active", "--quiet", &u])?.success();
    let en = systemctl(sys, &["is-enabled", &u])?;
    let enabled = matches!(en.stdout.trim(), "enabled" | "enabled-runtime" | "alias");
    Ok(state(name, running, enabled, Provider::Systemd))
}

fn systemd_search(sys: &System) -> Result<Vec<State>, Failure> {
    let files = systemctl(
        sys,
        &[
            "list-unit-files",
            "--type=service",
            "--no-legend",
            "--no-pager",
            "--plain",
        ],
    )?;
    let units = systemctl(
        sys,
        &[
            "list-units",
            "--type=service",
            "--all",
            "--no-legend",
            "--no-pager",
            "--plain",
        ],
    )?;
    let active: Vec<&str> = units
        .stdout
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.get(2) == Some(&"active")).then(|| w[0])
        })
        .collect();
    Ok(files
        .stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let u = w.next()?;
            if u.contains("@.") {
                return None;
            }
            let enabled = matches!(w.next(), Some("enabled" | "enabled-runtime" | "alias"));
            Some(state(u, active.contains(&u), enabled, Provider::Systemd))
        })
        .collect())
}

// ---- init scripts ----

fn script(sys: &System, name: &str) -> PathBuf {
    sys.path(format!("{INIT_D}/{name}"))
}

/// A runlevel directory, as on the node.
fn rc_dir(level: u8) -> String {
    format!("/etc/rc{level}.d")
}

/// The `S??NAME` / `K??NAME` entries for `name` in one runlevel directory
/// (paths as on the node), listed without following links.
fn links(sys: &System, dir: &str, name: &str, kind: u8) -> Vec<String> {
    let Ok(Some(entries)) = sys.fs().list(dir) else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter(|(f, _)| {
            let b = f.as_encoded_bytes();
            b.len() == name.len() + 3
                && b[0] == kind
                && b[1].is_ascii_digit()
                && b[2].is_ascii_digit()
                && &b[3..] == name.as_bytes()
        })
        .map(|(f, _)| format!("{dir}/{}", f.to_string_lossy()))
        .collect()
}

fn init_running(sys: &System, name: &str) -> Result<bool, Failure> {
    Ok(sys
        .run(&Cmd::new(script(sys, name).to_string_lossy()).arg("status"))?
        .success())
}

fn init_enabled(sys: &System, name: &str) -> bool {
    START_LEVELS
        .iter()
        .any(|l| !links(sys, &rc_dir(*l), name, b'S').is_empty())
}

fn init_find(sys: &System, name: &str) -> Result<State, Failure> {
    let script_abs = format!("{INIT_D}/{name}");
    if sys.fs().lstat(&script_abs)?.map(|m| m.kind) != Some(FileKind::File) {
        return Ok(missing(name));
    }
    Ok(state(
        name,
        init_running(sys, name)?,
        init_enabled(sys, name),
        Provider::Init,
    ))
}

/// Creates `dir/file` → `../init.d/NAME` atomically (temporary link,
/// rename), making `dir` when missing; never through a link.
fn link(sys: &System, dir: &str, file: &str, name: &str) -> Result<(), Failure> {
    sys.fs().mkdir_all(dir, 0o755)?;
    sys.fs()
        .symlink(format!("{dir}/{file}"), &format!("../init.d/{name}"))
}

fn init_enable(sys: &System, name: &str, on: bool) -> Result<(), Failure> {
    for l in START_LEVELS {
        let dir = rc_dir(l);
        let (keep, drop) = if on { (b'S', b'K') } else { (b'K', b'S') };
        for p in links(sys, &dir, name, drop) {
            sys.fs().remove(&p, false)?;
        }
        if links(sys, &dir, name, keep).is_empty() {
            link(sys, &dir, &format!("{}01{name}", keep as char), name)?;
        }
    }
    if on {
        for l in STOP_LEVELS {
            let dir = rc_dir(l);
            if links(sys, &dir, name, b'K').is_empty() && links(sys, &dir, name, b'S').is_empty() {
                link(sys, &dir, &format!("K01{name}"), name)?;
            }
        }
    }
    Ok(())
}

fn init_search(sys: &System) -> Result<Vec<State>, Failure> {
    let Some(entries) = sys.fs().list(INIT_D)? else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = entries
        .into_iter()
        .filter(|(_, k)| *k == FileKind::File)
        .map(|(n, _)| n.to_string_lossy().into_owned())
        .filter(|n| {
            name_ok(n)
                && !NOT_SERVICES.contains(&n.as_str())
                && !n.contains(".dpkg-")
                && !n.ends_with('~')
        })
        .collect();
    names.sort();
    names.iter().map(|n| init_find(sys, n)).collect()
}

impl ResourceType for Service {
    fn name(&self) -> &'static str {
        "service"
    }

    fn properties(&self) -> &'static [Property] {
        PROPS
    }

    fn validate(&self, name: &str, _desired: &State) -> Result<(), Failure> {
        if !name_ok(name) {
            return Err(Failure::invalid(
                "name",
                format!("{name:?} is not a service name"),
            ));
        }
        Ok(())
    }

    fn find(&self, sys: &System, name: &str) -> Result<State, Failure> {
        if !name_ok(name) {
            return Ok(missing(name));
        }
        match Provider::of(sys) {
            Provider::Systemd => systemd_find(sys, name),
            Provider::Init => init_find(sys, name),
        }
    }

    fn search(&self, sys: &System) -> Result<Vec<State>, Failure> {
        match Provider::of(sys) {
            Provider::Systemd => systemd_search(sys),
            Provider::Init => init_search(sys),
        }
    }

    fn apply(
        &self,
        sys: &System,
        name: &str,
        _desired: &State,
        current: &State,
        changes: &[Change],
    ) -> Result<(), Failure> {
        let p = Provider::of(sys);
        if current.get("ensure").and_then(Value::as_str) == Some("absent") {
            return Err(Failure::failed(match p {
                Provider::Systemd => format!("service {name}: no unit {}", unit(name)),
                Provider::Init => format!(
                    "service {name}: no init script {}",
                    script(sys, name).display()
                ),
            }));
        }
        for c in changes {
            match (c.property.as_str(), &c.new) {
                ("enable", Value::Bool(on)) => match p {
                    Provider::Systemd => {
                        let verb = if *on { "enable" } else { "disable" };
                        let cmd = Cmd::new("systemctl").arg(verb).arg(unit(name));
                        must(&cmd, sys.run(&cmd)?)?;
                    }
                    Provider::Init => init_enable(sys, name, *on)?,
                },
                ("ensure", Value::String(want)) => {
                    let verb = if want == "running" { "start" } else { "stop" };
                    let cmd = match p {
                        Provider::Systemd => Cmd::new("systemctl").arg(verb).arg(unit(name)),
                        Provider::Init => Cmd::new(script(sys, name).to_string_lossy()).arg(verb),
                    };
                    must(&cmd, sys.run(&cmd)?)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::tests::Fixture;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// An LSB-style init script: `start` backgrounds a detached `sleep` and
    /// records its pid under the root, `status` checks it with `kill -0`.
    fn demo_script(root: &Path) -> String {
        format!(
            r#"#!/bin/sh
PIDFILE={root}/run/demo.pid
alive() {{ [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }}
case "$1" in
  start) alive && exit 0
         sleep 1000 </dev/null >/dev/null 2>&1 &
         echo $! > "$PIDFILE"; exit 0 ;;
  stop) if [ -f "$PIDFILE" ]; then kill "$(cat "$PIDFILE")" 2>/dev/null; rm -f "$PIDFILE"; fi
        exit 0 ;;
  status) alive && exit 0; exit 3 ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
"#,
            root = root.display()
        )
    }

    /// Kills the demo daemon however the test ends.
    struct Reaper(PathBuf);

    impl Drop for Reaper {
        fn drop(&mut self) {
            if let Ok(t) = std::fs::read_to_string(&self.0) {
                if let Some(pid) = t
                    .trim()
                    .parse::<i32>()
                    .ok()
                    .and_then(rustix::process::Pid::from_raw)
                {
                    // The pid our own test script started.
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
    }

    fn executable(f: &Fixture, abs: &str) {
        let p = f.root().join(abs.trim_start_matches('/'));
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn fixture() -> (Fixture, Reaper) {
        let f = Fixture::new("service")
            .file("/etc/init.d/README", "not a service\n")
            .file("/etc/init.d/skeleton", "#!/bin/sh\nexit 0\n")
            .file("/etc/init.d/rcS", "#!/bin/sh\nexit 0\n")
            .file(
                "/etc/init.d/other",
                "#!/bin/sh\n[ \"$1\" = status ] && exit 3\nexit 0\n",
            )
            .file("/run/.keep", "");
        let script = demo_script(f.root());
        let f = f.file("/etc/init.d/demo", &script);
        for s in ["skeleton", "rcS", "other", "demo"] {
            executable(&f, &format!("/etc/init.d/{s}"));
        }
        // another service's link, which must stay
        let rc2 = f.root().join("etc/rc2.d");
        std::fs::create_dir_all(&rc2).unwrap();
        std::os::unix::fs::symlink("../init.d/other", rc2.join("S02other")).unwrap();
        let reaper = Reaper(f.root().join("run/demo.pid"));
        (f, reaper)
    }

    /// Every rc link: `rcN.d/NAME -> TARGET`.
    fn rc_links(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for l in 0..=6 {
            let dir = root.join(format!("etc/rc{l}.d"));
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut v: Vec<String> = entries
                .flatten()
                .map(|e| {
                    let t = std::fs::read_link(e.path()).unwrap();
                    format!(
                        "rc{l}.d/{} -> {}",
                        e.file_name().to_string_lossy(),
                        t.display()
                    )
                })
                .collect();
            v.sort();
            out.extend(v);
        }
        out
    }

    #[test]
    fn start_rerun_noop_stop_enable_disable_find_search() {
        let (f, _reaper) = fixture();
        let pidfile = f.root().join("run/demo.pid");

        let found = f.find("demo");
        assert_eq!(
            found["resource"],
            json!({"name": "demo", "ensure": "stopped", "enable": false, "provider": "init"})
        );
        assert_eq!(f.find("nope")["ensure"], json!("absent"));

        // noop: reports, starts nothing
        let r = f.ensure("demo", &[("ensure", "running"), ("noop", "true")]);
        assert_eq!(r["changed"], json!(false));
        assert_eq!(
            r["changes"],
            json!([{"property": "ensure", "old": "stopped", "new": "running"}])
        );
        assert!(!pidfile.exists());

        // start
        let r = f.ensure("demo", &[("ensure", "running")]);
        assert_eq!(r["changed"], json!(true), "{r}");
        assert_eq!(r["ensure"], json!("running"));
        assert!(pidfile.exists());

        // idempotent
        let r = f.ensure("demo", &[("ensure", "running")]);
        assert_eq!(r["changed"], json!(false));
        assert_eq!(r["changes"], json!([]));

        // enable: the exact links, the other service's kept
        let r = f.ensure("demo", &[("ensure", "running"), ("enable", "true")]);
        assert_eq!(
            r["changes"],
            json!([{"property": "enable", "old": false, "new": true}])
        );
        assert_eq!(
            rc_links(f.root()),
            [
                "rc0.d/K01demo -> ../init.d/demo",
                "rc1.d/K01demo -> ../init.d/demo",
                "rc2.d/S01demo -> ../init.d/demo",
                "rc2.d/S02other -> ../init.d/other",
                "rc3.d/S01demo -> ../init.d/demo",
                "rc4.d/S01demo -> ../init.d/demo",
                "rc5.d/S01demo -> ../init.d/demo",
                "rc6.d/K01demo -> ../init.d/demo",
            ]
        );
        assert_eq!(
            f.ensure("demo", &[("enable", "yes")])["changed"],
            json!(false)
        );

        // find and search
        assert_eq!(
            f.find("demo")["resource"],
            json!({"name": "demo", "ensure": "running", "enable": true, "provider": "init"})
        );
        assert_eq!(
            f.search()["resources"],
            json!([
                {"name": "demo", "ensure": "running", "enable": true, "provider": "init"},
                {"name": "other", "ensure": "stopped", "enable": true, "provider": "init"},
            ])
        );

        // stop and disable
        let r = f.ensure("demo", &[("ensure", "stopped"), ("enable", "false")]);
        assert_eq!(
            r["changes"],
            json!([
                {"property": "ensure", "old": "running", "new": "stopped"},
                {"property": "enable", "old": true, "new": false},
            ])
        );
        assert_eq!(r["ensure"], json!("stopped"));
        assert!(!pidfile.exists());
        assert_eq!(
            rc_links(f.root()),
            [
                "rc0.d/K01demo -> ../init.d/demo",
                "rc1.d/K01demo -> ../init.d/demo",
                "rc2.d/K01demo -> ../init.d/demo",
                "rc2.d/S02other -> ../init.d/other",
                "rc3.d/K01demo -> ../init.d/demo",
                "rc4.d/K01demo -> ../init.d/demo",
                "rc5.d/K01demo -> ../init.d/demo",
                "rc6.d/K01demo -> ../init.d/demo",
            ]
        );
        let r = f.ensure("demo", &[("ensure", "stopped"), ("enable", "false")]);
        assert_eq!(r["changed"], json!(false));
        // no temporaries left behind
        for l in 0..=6 {
            let dir = f.root().join(format!("etc/rc{l}.d"));
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                assert!(!e.file_name().to_string_lossy().starts_with('.'));
            }
        }
    }

    #[test]
    fn bad_input_and_missing_services() {
        let (f, _reaper) = fixture();
        let e = f.ensure_err("demo", &[("ensure", "started")]);
        assert_eq!(e.status, mco_core::Status::InvalidData);
        assert!(e.message.starts_with("ensure:"), "{}", e.message);
        let e = f.ensure_err("demo", &[("enable", "maybe")]);
        assert!(e.message.starts_with("enable:"), "{}", e.message);
        let e = f.ensure_err("../../bin/sh", &[("ensure", "running")]);
        assert!(e.message.starts_with("name:"), "{}", e.message);
        let e = f.ensure_err("nope", &[("ensure", "running")]);
        assert_eq!(e.status, mco_core::Status::Aborted);
        assert!(e.message.contains("no init script"), "{}", e.message);
        assert!(!f.root().join("run/demo.pid").exists());
        assert!(!f.root().join("etc/rc3.d").exists());
    }
}

//! NRPE command definitions: parsing `command[NAME]=COMMAND LINE` lines and
//! keeping them fresh.
//!
//! nrpe.cfg files hold other directives too (`server_port=`, `allowed_hosts=`,
//! …); only `command[…]` lines and NRPE's `include=FILE` and
//! `include_dir=DIR` (every `*.cfg` below DIR, in name order) matter here,
//! the rest is skipped, as are comments and blank lines. Includes are read
//! where they stand, relative paths against the including file's
//! directory, at most [`MAX_INCLUDE_DEPTH`] deep, each file once. A later
//! definition of a name wins, across files as within one. [`Definitions`]
//! re-reads everything whenever any file or directory it read changes
//! (modification time or size), so an operator's edit takes effect on the
//! next request without restarting the responder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::NrpeConfig;

/// The largest definitions file read; a bigger one is reported and skipped.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// How deep includes may nest.
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// Command name → command line.
pub type Commands = BTreeMap<String, String>;

/// Whether `name` is a valid command name: letters, digits, `_` and `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parses one line; `Some((name, command line))` for a `command[NAME]=…` line.
pub fn parse_line(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    let rest = line.strip_prefix("command[")?;
    let (name, rest) = rest.split_once(']')?;
    let cmd = rest.trim_start().strip_prefix('=')?.trim();
    (valid_name(name) && !cmd.is_empty()).then_some((name, cmd))
}

/// Adds the definitions in `text` to `into`, later ones replacing earlier.
pub fn parse_into(text: &str, into: &mut Commands) {
    for line in text.lines() {
        if let Some((name, cmd)) = parse_line(line) {
            into.insert(name.to_string(), cmd.to_string());
        }
    }
}

/// What identifies one version of the file set: each file with its
/// modification time and size.
type Signature = Vec<(PathBuf, Option<SystemTime>, u64)>;

/// The loaded definitions and the problems met reading them.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The definitions.
    pub commands: Arc<Commands>,
    /// Files that could not be read, with why.
    pub problems: Vec<String>,
}

/// The definitions of one config, re-read when their files change.
#[derive(Debug)]
pub struct Definitions {
    cfg: NrpeConfig,
    cache: Mutex<Option<(Signature, Loaded)>>,
}

impl Definitions {
    /// Definitions from the files `cfg` names; nothing is read until first use.
    pub fn new(cfg: NrpeConfig) -> Definitions {
        Definitions {
            cfg,
            cache: Mutex::new(None),
        }
    }

    /// The current definitions, re-reading the files if any changed. Blocking:
    /// call it from a blocking thread.
    pub fn load(&self) -> Loaded {
        let mut cache = match self.cache.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((old, loaded)) = cache.as_ref() {
            if loaded.problems.is_empty() && old.iter().all(|(p, m, l)| stat(p) == (*m, *l)) {
                return loaded.clone();
            }
        }
        let mut walk = Walk::default();
        if let Some(dir) = &self.cfg.conf_dir {
            walk.dir(dir, 0, false);
        }
        for f in &self.cfg.conf_files {
            walk.file(f, 0);
        }
        let loaded = Loaded {
            commands: Arc::new(walk.commands),
            problems: walk.problems,
        };
        *cache = Some((walk.seen, loaded.clone()));
        loaded
    }
}

/// A file's or directory's modification time and size, `(None, 0)` if gone.
fn stat(p: &Path) -> (Option<SystemTime>, u64) {
    match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    }
}

/// One reading of the definitions, following includes.
#[derive(Default)]
struct Walk {
    commands: Commands,
    problems: Vec<String>,
    seen: Signature,
}

impl Walk {
    fn note(&mut self, p: &Path) -> bool {
        if self.seen.iter().any(|(q, _, _)| q == p) {
            return false;
        }
        let (m, l) = stat(p);
        self.seen.push((p.to_path_buf(), m, l));
        true
    }

    fn file(&mut self, file: &Path, depth: usize) {
        if !self.note(file) {
            return;
        }
        let text = match read(file) {
            Ok(t) => t,
            Err(e) => {
                self.problems.push(format!("{}: {e}", file.display()));
                return;
            }
        };
        let base = file.parent().unwrap_or(Path::new("."));
        for line in text.lines() {
            if let Some((name, cmd)) = parse_line(line) {
                self.commands.insert(name.to_string(), cmd.to_string());
                continue;
            }
            let Some((key, value)) = line.trim().split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            if !(key == "include" || key == "include_dir") || value.is_empty() {
                continue;
            }
            if depth >= MAX_INCLUDE_DEPTH {
                self.problems.push(format!(
                    "{}: {key}={value}: includes nest deeper than {MAX_INCLUDE_DEPTH}",
                    file.display()
                ));
                continue;
            }
            let target = base.join(value);
            if key == "include" {
                self.file(&target, depth + 1);
            } else {
                self.dir(&target, depth + 1, true);
            }
        }
    }

    /// Every `*.cfg` file in `dir` in name order, and with `recurse` those
    /// of its subdirectories too, as NRPE's `include_dir` does.
    fn dir(&mut self, dir: &Path, depth: usize, recurse: bool) {
        if !self.note(dir) {
            return;
        }
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(e) => e.filter_map(Result::ok).map(|e| e.path()).collect(),
            Err(e) => {
                self.problems.push(format!("{}: {e}", dir.display()));
                return;
            }
        };
        entries.sort();
        for p in entries {
            if p.is_file() && p.extension().is_some_and(|x| x == "cfg") {
                self.file(&p, depth);
            } else if recurse && p.is_dir() && depth < MAX_INCLUDE_DEPTH {
                self.dir(&p, depth + 1, true);
            }
        }
    }
}

fn read(file: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(file)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_FILE_BYTES} bytes, skipped"
        )));
    }
    let bytes = std::fs::read(file)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines() {
        assert_eq!(
            parse_line("command[check_load]=/usr/lib/nagios/plugins/check_load -w 5 -c 10"),
            Some((
                "check_load",
                "/usr/lib/nagios/plugins/check_load -w 5 -c 10"
            ))
        );
        assert_eq!(
            parse_line("  command[a-b_1] =  x y  "),
            Some(("a-b_1", "x y"))
        );
        for skipped in [
            "# command[x]=y",
            "",
            "   ",
            "server_port=5666",
            "command[]=x",
            "command[a b]=x",
            "command[x]=",
            "command[x]",
            "command[x;rm]=y",
            "include_dir=/etc/nagios/nrpe.d",
        ] {
            assert_eq!(parse_line(skipped), None, "{skipped:?}");
        }
    }

    #[test]
    fn later_definitions_win() {
        let mut c = Commands::new();
        parse_into(
            "command[a]=one\n#command[a]=hidden\ncommand[b]=two\ncommand[a]=three\n",
            &mut c,
        );
        assert_eq!(c["a"], "three");
        assert_eq!(c["b"], "two");
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn files_are_reread_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.cfg"), "command[x]=from-b\n").unwrap();
        std::fs::write(
            dir.path().join("a.cfg"),
            "command[x]=from-a\ncommand[y]=y\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "command[z]=z\n").unwrap();
        let extra = dir.path().join("extra.conf");
        std::fs::write(&extra, "command[y]=from-extra\n").unwrap();
        let defs = Definitions::new(NrpeConfig {
            conf_dir: Some(dir.path().to_path_buf()),
            conf_files: vec![extra.clone()],
            timeout: Duration::from_secs(1),
            args: Default::default(),
        });
        let l = defs.load();
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(l.commands["x"], "from-b", "files in name order, later wins");
        assert_eq!(l.commands["y"], "from-extra");
        assert!(!l.commands.contains_key("z"));
        // A change in size is seen whatever the clock's resolution.
        std::fs::write(&extra, "command[y]=changed-and-longer\n").unwrap();
        assert_eq!(defs.load().commands["y"], "changed-and-longer");
        std::fs::write(dir.path().join("c.cfg"), "command[w]=new\n").unwrap();
        assert_eq!(defs.load().commands["w"], "new");
        std::fs::remove_file(&extra).unwrap();
        let l = defs.load();
        assert_eq!(l.commands["y"], "y");
        assert_eq!(l.problems.len(), 1, "{:?}", l.problems);
    }

    #[test]
    fn includes_are_followed_where_they_stand_and_watched() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("conf.d/sub")).unwrap();
        std::fs::write(
            root.join("nrpe.cfg"),
            "server_port=5666\ncommand[a]=main\ninclude=local.cfg\ncommand[b]=main-after\ninclude_dir=conf.d\n# a loop is read once\ninclude=nrpe.cfg\n",
        )
        .unwrap();
        std::fs::write(
            root.join("local.cfg"),
            "command[a]=local\ncommand[b]=local\n",
        )
        .unwrap();
        std::fs::write(root.join("conf.d/1.cfg"), "command[c]=dir\n").unwrap();
        std::fs::write(root.join("conf.d/sub/2.cfg"), "command[c]=subdir\n").unwrap();
        std::fs::write(root.join("conf.d/skip.txt"), "command[d]=no\n").unwrap();
        let defs = Definitions::new(NrpeConfig {
            conf_dir: None,
            conf_files: vec![root.join("nrpe.cfg")],
            timeout: Duration::from_secs(1),
            args: Default::default(),
        });
        let l = defs.load();
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let got: Vec<(&str, &str)> = l
            .commands
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // a: the include after it wins; b: the line after the include wins; c: the subdirectory
        // comes after 1.cfg; skip.txt is not a .cfg file.
        assert_eq!(got, [("a", "local"), ("b", "main-after"), ("c", "subdir")]);

        // A new file in an included directory is seen on the next load.
        std::fs::write(root.join("conf.d/sub/3.cfg"), "command[e]=new\n").unwrap();
        assert_eq!(
            defs.load().commands.get("e").map(String::as_str),
            Some("new")
        );
        // A missing include is a problem, not a failure.
        std::fs::write(root.join("local.cfg"), "include=gone.cfg\n").unwrap();
        let l = defs.load();
        assert!(
            l.problems.iter().any(|p| p.contains("gone.cfg")),
            "{:?}",
            l.problems
        );
        assert_eq!(l.commands.get("a").map(String::as_str), Some("main"));
    }

    #[test]
    fn a_missing_dir_is_a_problem_not_a_failure() {
        let defs = Definitions::new(NrpeConfig {
            conf_dir: Some(PathBuf::from("/nonexistent/nrpe.d")),
            conf_files: vec![],
            timeout: Duration::from_secs(1),
            args: Default::default(),
        });
        let l = defs.load();
        assert!(l.commands.is_empty());
        assert!(l.problems[0].contains("/nonexistent/nrpe.d"));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in ".{0,200}") {
            let mut c = Commands::new();
            parse_into(&text, &mut c);
            for name in c.keys() {
                proptest::prop_assert!(valid_name(name));
            }
        }
    }
}

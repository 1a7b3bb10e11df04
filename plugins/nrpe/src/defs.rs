//! NRPE command definitions: parsing `command[NAME]=COMMAND LINE` lines and
//! keeping them fresh.
//!
//! nrpe.cfg files hold other directives too (`server_port=`, `allowed_hosts=`,
//! …); only `command[…]` lines matter here, the rest is skipped, as are
//! comments and blank lines. A later definition of a name wins, across files
//! as within one. [`Definitions`] re-reads the files whenever the set of
//! files or any file's modification time or size changes, so an operator's
//! edit takes effect on the next request without restarting the responder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::NrpeConfig;

/// The largest definitions file read; a bigger one is reported and skipped.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

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

    /// The files in force: `conf_dir`'s `*.cfg` in name order, then `conf_files`.
    fn files(&self, problems: &mut Vec<String>) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Some(dir) = &self.cfg.conf_dir {
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "cfg") && p.is_file())
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => problems.push(format!("{}: {e}", dir.display())),
            }
        }
        files.extend(self.cfg.conf_files.iter().cloned());
        files
    }

    /// The current definitions, re-reading the files if any changed. Blocking:
    /// call it from a blocking thread.
    pub fn load(&self) -> Loaded {
        let mut problems = Vec::new();
        let files = self.files(&mut problems);
        let sig: Signature = files
            .iter()
            .map(|f| match std::fs::metadata(f) {
                Ok(m) => (f.clone(), m.modified().ok(), m.len()),
                Err(_) => (f.clone(), None, 0),
            })
            .collect();
        let mut cache = match self.cache.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((old, loaded)) = cache.as_ref() {
            if *old == sig && problems.is_empty() {
                return loaded.clone();
            }
        }
        let mut commands = Commands::new();
        for file in &files {
            match read(file) {
                Ok(text) => parse_into(&text, &mut commands),
                Err(e) => problems.push(format!("{}: {e}", file.display())),
            }
        }
        let loaded = Loaded {
            commands: Arc::new(commands),
            problems,
        };
        *cache = Some((sig, loaded.clone()));
        loaded
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
    fn a_missing_dir_is_a_problem_not_a_failure() {
        let defs = Definitions::new(NrpeConfig {
            conf_dir: Some(PathBuf::from("/nonexistent/nrpe.d")),
            conf_files: vec![],
            timeout: Duration::from_secs(1),
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

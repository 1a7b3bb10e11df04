//! The node's `[plugin.resource]` settings: which types and names an
//! operator lets the fleet manage, forced dry runs, and the system root.
//!
//! ```toml
//! [plugin.resource]
//! allow_types = ["user", "group", "host"]   # default: none
//! noop = false                              # true: report, never change
//! root = "/"                                # the system root providers work on
//! search_limit = 1000                       # most resources `search` returns
//! command_timeout = 60                      # seconds, per command a provider runs
//!
//! [plugin.resource.user]
//! allow_names = ["deploy", "app-*"]         # default: every name
//! deny_names = ["root"]                     # wins over allow_names
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use mco_core::config::{ConfigErrors, Reader};
use toml::Table;

/// Which names of one type may be managed.
#[derive(Debug, Clone, Default)]
pub struct NameRules {
    allow: Option<GlobSet>,
    deny: Option<GlobSet>,
    allow_src: Vec<String>,
    deny_src: Vec<String>,
}

impl NameRules {
    /// Why `name` may not be managed, or `None` if it may.
    pub fn refuse(&self, name: &str) -> Option<String> {
        if let Some(d) = &self.deny {
            if d.is_match(name) {
                return Some(format!("matches deny_names ({})", self.deny_src.join(", ")));
            }
        }
        if let Some(a) = &self.allow {
            if !a.is_match(name) {
                return Some(format!(
                    "is not in allow_names ({})",
                    self.allow_src.join(", ")
                ));
            }
        }
        None
    }
}

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Types that may be managed (finding and searching included).
    pub allow_types: Vec<String>,
    /// Forced dry run: every `do` reports what it would change and changes nothing.
    pub noop: bool,
    /// The system root.
    pub root: PathBuf,
    /// Most resources a `search` returns.
    pub search_limit: usize,
    /// Bound on each command a provider runs.
    pub command_timeout: Duration,
    /// Per-type name rules.
    pub names: BTreeMap<String, NameRules>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            allow_types: Vec::new(),
            noop: false,
            root: PathBuf::from("/"),
            search_limit: 1000,
            command_timeout: Duration::from_secs(60),
            names: BTreeMap::new(),
        }
    }
}

/// The settings `[plugin.resource]` knows besides a table per type.
const KEYS: &[&str] = &[
    "allow_types",
    "noop",
    "root",
    "search_limit",
    "command_timeout",
];

/// A set of `list`'s globs, `None` for an empty list; a bad glob is reported under `key`.
fn globs(r: &mut Reader, list: &[String], key: &str) -> Option<GlobSet> {
    if list.is_empty() {
        return None;
    }
    let mut b = GlobSetBuilder::new();
    let mut ok = true;
    for g in list {
        match Glob::new(g) {
            Ok(glob) => {
                b.add(glob);
            }
            Err(e) => {
                r.error(key, format!("{g:?}: {e}"));
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    match b.build() {
        Ok(set) => Some(set),
        Err(e) => {
            r.error(key, e.to_string());
            None
        }
    }
}

/// A positive whole number, or `None` (reported) when it is zero.
fn positive(r: &mut Reader, t: &Table, key: &str, what: &str) -> Option<u64> {
    let n = r.unsigned(t, "", key)?;
    if n == 0 {
        r.error(key, format!("must be a positive {what}"));
        return None;
    }
    Some(n)
}

impl Settings {
    /// Reads `[plugin.resource]` of the responder config `file`. Every bad
    /// or unknown key is reported, each by its full name
    /// (`plugin.resource.user.allow_names`).
    pub fn from_table(
        t: &Table,
        known_types: &[&str],
        file: &Path,
    ) -> Result<Settings, ConfigErrors> {
        let mut r = Reader::for_table(file, "plugin.resource");
        let known: Vec<&str> = KEYS.iter().chain(known_types).copied().collect();
        r.unknown(t, "", &known);
        let d = Settings::default();
        let allow_types = r.strings(t, "", "allow_types").unwrap_or_default();
        for ty in &allow_types {
            if !known_types.contains(&ty.as_str()) {
                r.error(
                    "allow_types",
                    format!("unknown type {ty:?} (known: {})", known_types.join(", ")),
                );
            }
        }
        let noop = r.boolean(t, "", "noop").unwrap_or(d.noop);
        let root = match r.string(t, "", "root") {
            Some(root) if !root.starts_with('/') => {
                r.error("root", format!("{root:?} must be an absolute path"));
                d.root
            }
            Some(root) => PathBuf::from(root),
            None => d.root,
        };
        let search_limit = positive(&mut r, t, "search_limit", "whole number")
            .map_or(d.search_limit, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let command_timeout = positive(&mut r, t, "command_timeout", "number of seconds")
            .map_or(d.command_timeout, Duration::from_secs);
        let mut names = BTreeMap::new();
        for ty in known_types {
            let Some(sub) = r.table(t, "", ty) else {
                continue;
            };
            r.unknown(sub, ty, &["allow_names", "deny_names"]);
            let allow_src = r.strings(sub, ty, "allow_names").unwrap_or_default();
            let deny_src = r.strings(sub, ty, "deny_names").unwrap_or_default();
            let rules = NameRules {
                allow: globs(&mut r, &allow_src, &format!("{ty}.allow_names")),
                deny: globs(&mut r, &deny_src, &format!("{ty}.deny_names")),
                allow_src,
                deny_src,
            };
            names.insert(ty.to_string(), rules);
        }
        r.finish()?;
        Ok(Settings {
            allow_types,
            noop,
            root,
            search_limit,
            command_timeout,
            names,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPES: &[&str] = &["user", "host"];

    fn parse(s: &str) -> Result<Settings, ConfigErrors> {
        Settings::from_table(
            &s.parse::<Table>().unwrap(),
            TYPES,
            Path::new("/etc/mco/responder.toml"),
        )
    }

    fn err(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    #[test]
    fn defaults_manage_nothing() {
        let s = parse("").unwrap();
        assert!(s.allow_types.is_empty());
        assert!(!s.noop);
        assert_eq!(s.root, PathBuf::from("/"));
    }

    #[test]
    fn names_allow_and_deny() {
        let s = parse(
            "allow_types = [\"user\"]\n[user]\nallow_names = [\"app-*\", \"deploy\"]\ndeny_names = [\"app-root\"]\n",
        )
        .unwrap();
        let r = &s.names["user"];
        assert_eq!(r.refuse("deploy"), None);
        assert_eq!(r.refuse("app-web"), None);
        assert!(r.refuse("app-root").unwrap().contains("deny_names"));
        assert!(r.refuse("bob").unwrap().contains("allow_names"));
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err("allow_types = [\"nope\"]").contains("allow_types"));
        assert!(err("root = \"rel\"").contains("root"));
        assert!(err("noop = 3").contains("noop"));
        assert!(err("[user]\nallow = []").contains("user.allow"));
        assert!(err("colour = 1").contains("colour"));
        assert!(err("search_limit = 0").contains("plugin.resource.search_limit"));
        assert!(err("[host]\ndeny_names = [\"[\"]").contains("plugin.resource.host.deny_names"));
    }

    #[test]
    fn two_bad_keys_and_an_unknown_one_are_reported_together() {
        let errs = parse(
            "noop = \"yes\"\nroot = \"relative\"\ncolour = 1\n[user]\nallow_names = [\"deploy\"]\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "plugin.resource.colour",
                "plugin.resource.noop",
                "plugin.resource.root"
            ]
        );
        assert!(errs.0[0].message.starts_with("unknown key"), "{errs}");
        assert!(errs.0[2].message.contains("absolute"), "{errs}");
        assert!(errs.0.iter().all(|e| e.file == "/etc/mco/responder.toml"));
    }
}

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
use std::path::PathBuf;
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use toml::{Table, Value};

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

fn strings(v: &Value, key: &str) -> Result<Vec<String>, String> {
    let arr = v
        .as_array()
        .ok_or_else(|| format!("{key}: expected a list of strings"))?;
    arr.iter()
        .map(|i| {
            i.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{key}: expected a list of strings"))
        })
        .collect()
}

fn globs(list: &[String], key: &str) -> Result<Option<GlobSet>, String> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for g in list {
        b.add(Glob::new(g).map_err(|e| format!("{key}: {g:?}: {e}"))?);
    }
    b.build().map(Some).map_err(|e| format!("{key}: {e}"))
}

impl Settings {
    /// Reads `[plugin.resource]`; errors name the key.
    pub fn from_table(t: &Table, known_types: &[&str]) -> Result<Settings, String> {
        let mut s = Settings::default();
        for (k, v) in t {
            match k.as_str() {
                "allow_types" => {
                    s.allow_types = strings(v, k)?;
                    for ty in &s.allow_types {
                        if !known_types.contains(&ty.as_str()) {
                            return Err(format!(
                                "allow_types: unknown type {ty:?} (known: {})",
                                known_types.join(", ")
                            ));
                        }
                    }
                }
                "noop" => s.noop = v.as_bool().ok_or("noop: expected true or false")?,
                "root" => {
                    let r = v.as_str().ok_or("root: expected a path")?;
                    if !r.starts_with('/') {
                        return Err(format!("root: {r:?} must be an absolute path"));
                    }
                    s.root = PathBuf::from(r);
                }
                "search_limit" => {
                    s.search_limit = v
                        .as_integer()
                        .filter(|n| *n > 0)
                        .ok_or("search_limit: expected a positive whole number")?
                        as usize
                }
                "command_timeout" => {
                    let n = v
                        .as_integer()
                        .filter(|n| *n > 0)
                        .ok_or("command_timeout: expected a positive number of seconds")?;
                    s.command_timeout = Duration::from_secs(n as u64);
                }
                ty if known_types.contains(&ty) => {
                    let sub = v
                        .as_table()
                        .ok_or_else(|| format!("{ty}: expected a table"))?;
                    let mut rules = NameRules::default();
                    for (k2, v2) in sub {
                        let key = format!("{ty}.{k2}");
                        match k2.as_str() {
                            "allow_names" => rules.allow_src = strings(v2, &key)?,
                            "deny_names" => rules.deny_src = strings(v2, &key)?,
                            _ => {
                                return Err(format!(
                                    "{key}: unknown setting (expected allow_names, deny_names)"
                                ))
                            }
                        }
                    }
                    rules.allow = globs(&rules.allow_src, &format!("{ty}.allow_names"))?;
                    rules.deny = globs(&rules.deny_src, &format!("{ty}.deny_names"))?;
                    s.names.insert(ty.to_string(), rules);
                }
                other => {
                    return Err(format!(
                        "{other}: unknown setting (expected allow_types, noop, root, search_limit, command_timeout, or a type's table)"
                    ))
                }
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPES: &[&str] = &["user", "host"];

    fn parse(s: &str) -> Result<Settings, String> {
        Settings::from_table(&s.parse::<Table>().unwrap(), TYPES)
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
        assert!(parse("allow_types = [\"nope\"]")
            .unwrap_err()
            .contains("allow_types"));
        assert!(parse("root = \"rel\"").unwrap_err().contains("root"));
        assert!(parse("noop = 3").unwrap_err().contains("noop"));
        assert!(parse("[user]\nallow = []")
            .unwrap_err()
            .contains("user.allow"));
        assert!(parse("colour = 1").unwrap_err().contains("colour"));
    }
}

//! The reader every config file and plugin table goes through: it collects
//! every bad or unknown key, with its full dotted name, before giving up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use super::{expand_home, parse_duration, ConfigError, ConfigErrors};

/// Reads typed values out of a TOML document, collecting every error.
///
/// A reader made by [`parse`](Self::parse) reads a whole file; one made by
/// [`for_table`](Self::for_table) reads a table already parsed out of one
/// (a plugin's `[plugin.NAME]`), naming every key it reports under that
/// table's dotted name, so `timeout` is reported as `plugin.nrpe.timeout`.
pub struct Reader {
    file: String,
    root: String,
    errors: Vec<ConfigError>,
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

impl Reader {
    /// Parses `text`; a TOML syntax error is reported like any other.
    pub fn parse(file: &Path, text: &str) -> (Reader, Table) {
        let mut r = Reader {
            file: file.display().to_string(),
            root: String::new(),
            errors: Vec::new(),
        };
        let table = match text.parse::<Table>() {
            Ok(t) => t,
            Err(e) => {
                r.errors.push(ConfigError {
                    file: r.file.clone(),
                    key: String::new(),
                    message: format!("not valid TOML: {}", e.to_string().trim()),
                });
                Table::new()
            }
        };
        (r, table)
    }

    /// Starts reading a table already parsed out of `file`, whose dotted
    /// name is `root` (e.g. `plugin.resource`): every key this reader
    /// reports, including those given to [`error`](Self::error), is named
    /// `root.key`. The keys passed to its methods are relative to the table.
    pub fn for_table(file: &Path, root: &str) -> Reader {
        Reader {
            file: file.display().to_string(),
            root: root.to_string(),
            errors: Vec::new(),
        }
    }

    /// Records an error for `key` (under this reader's table, if it reads one).
    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            key: join(&self.root, key),
            message: message.into(),
        });
    }

    /// Reports every key of `t` not in `known`.
    pub fn unknown(&mut self, t: &Table, prefix: &str, known: &[&str]) {
        for k in t.keys() {
            if !known.contains(&k.as_str()) {
                self.error(
                    &join(prefix, k),
                    format!("unknown key (known here: {})", known.join(", ")),
                );
            }
        }
    }

    fn typed<T>(
        &mut self,
        t: &Table,
        prefix: &str,
        key: &str,
        want: &str,
        f: impl FnOnce(&Value) -> Option<T>,
    ) -> Option<T> {
        let v = t.get(key)?;
        let out = f(v);
        if out.is_none() {
            self.error(
                &join(prefix, key),
                format!("expected {want}, found {}", v.type_str()),
            );
        }
        out
    }

    /// A string.
    pub fn string(&mut self, t: &Table, prefix: &str, key: &str) -> Option<String> {
        self.typed(t, prefix, key, "a string", |v| {
            v.as_str().map(str::to_string)
        })
    }

    /// A path (a string, `~/` expanded).
    pub fn path(&mut self, t: &Table, prefix: &str, key: &str) -> Option<PathBuf> {
        self.string(t, prefix, key).map(|s| expand_home(&s))
    }

    /// A boolean.
    pub fn boolean(&mut self, t: &Table, prefix: &str, key: &str) -> Option<bool> {
        self.typed(t, prefix, key, "a boolean", Value::as_bool)
    }

    /// A non-negative integer.
    pub fn unsigned(&mut self, t: &Table, prefix: &str, key: &str) -> Option<u64> {
        self.typed(t, prefix, key, "a non-negative integer", |v| {
            v.as_integer().and_then(|i| u64::try_from(i).ok())
        })
    }

    /// An array of strings.
    pub fn strings(&mut self, t: &Table, prefix: &str, key: &str) -> Option<Vec<String>> {
        self.typed(t, prefix, key, "an array of strings", |v| {
            v.as_array()?
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect()
        })
    }

    /// An array of paths.
    pub fn paths(&mut self, t: &Table, prefix: &str, key: &str) -> Option<Vec<PathBuf>> {
        self.strings(t, prefix, key)
            .map(|v| v.iter().map(|s| expand_home(s)).collect())
    }

    /// A table of names to paths (`{ role = "/etc/role" }`), `~/` expanded,
    /// sorted by name. `what` says what the table holds, for the error when
    /// it is not a table; each value that is not a string is reported under
    /// its own dotted key.
    pub fn path_table(
        &mut self,
        t: &Table,
        prefix: &str,
        key: &str,
        what: &str,
    ) -> Option<BTreeMap<String, PathBuf>> {
        let full = join(prefix, key);
        let inner = match t.get(key)? {
            Value::Table(inner) => inner,
            other => {
                self.error(
                    &full,
                    format!("expected {what}, found {}", other.type_str()),
                );
                return None;
            }
        };
        let mut out = BTreeMap::new();
        for (name, v) in inner {
            match v.as_str() {
                Some(s) => {
                    out.insert(name.clone(), expand_home(s));
                }
                None => self.error(
                    &join(&full, name),
                    format!("expected a path (a string), found {}", v.type_str()),
                ),
            }
        }
        Some(out)
    }

    /// A duration string (`2s`) or a number of seconds.
    pub fn duration(&mut self, t: &Table, prefix: &str, key: &str) -> Option<Duration> {
        match t.get(key)? {
            Value::Integer(i) if *i >= 0 => Some(Duration::from_secs(*i as u64)),
            Value::Float(f) if *f >= 0.0 && f.is_finite() => Some(Duration::from_secs_f64(*f)),
            Value::String(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(m) => {
                    self.error(&join(prefix, key), m);
                    None
                }
            },
            other => {
                self.error(
                    &join(prefix, key),
                    format!(
                        "expected a duration like \"2s\", found {}",
                        other.type_str()
                    ),
                );
                None
            }
        }
    }

    /// A sub-table.
    pub fn table<'t>(&mut self, t: &'t Table, prefix: &str, key: &str) -> Option<&'t Table> {
        match t.get(key)? {
            Value::Table(inner) => Some(inner),
            other => {
                self.error(
                    &join(prefix, key),
                    format!("expected a table, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// Ends reading: every error found, or none.
    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

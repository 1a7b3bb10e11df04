//! The agent's `[plugin.nrpe]` settings.
//!
//! ```toml
//! [plugin.nrpe]
//! conf_dir = "/etc/nagios/nrpe.d"      # every *.cfg in it, in name order
//! conf_files = ["/etc/nagios/nrpe.cfg"] # read after conf_dir's files
//! timeout = "10s"                       # per command; seconds or a duration
//! allow_arguments = false               # requests may carry $ARGn$ arguments
//! allow_dash_arguments = false          # an argument may start with '-'
//! ```
//!
//! Arguments are off by default, as NRPE's `dont_blame_nrpe`: whoever may
//! call `runcommand` then chooses only which defined check runs.
//!
//! A relative path is taken relative to the directory of the responder's
//! config file, so a config and its check definitions can move together.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mco_core::config::{ConfigErrors, Reader};
use toml::Value;

use crate::cmdline::ArgPolicy;

/// Where definitions come from when nothing is configured.
pub const DEFAULT_CONF_DIR: &str = "/etc/nagios/nrpe.d";

/// How long one command may run when `timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The keys `[plugin.nrpe]` knows.
const KEYS: &[&str] = &[
    "conf_dir",
    "conf_files",
    "timeout",
    "allow_arguments",
    "allow_dash_arguments",
];

/// The nrpe agent's settings, paths already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NrpeConfig {
    /// A directory whose `*.cfg` files hold definitions.
    pub conf_dir: Option<PathBuf>,
    /// Files holding definitions, read after `conf_dir`'s.
    pub conf_files: Vec<PathBuf>,
    /// How long one command may run.
    pub timeout: Duration,
    /// What requests may pass as `$ARGn$` arguments.
    pub args: ArgPolicy,
}

impl Default for NrpeConfig {
    fn default() -> Self {
        NrpeConfig {
            conf_dir: Some(PathBuf::from(DEFAULT_CONF_DIR)),
            conf_files: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            args: ArgPolicy::default(),
        }
    }
}

/// A path setting: a non-empty string, joined to `base` when relative.
fn path(r: &mut Reader, key: &str, v: &Value, base: &Path) -> Option<PathBuf> {
    match v.as_str() {
        Some("") => {
            r.error(key, "must not be empty");
            None
        }
        Some(s) => Some(base.join(s)),
        None => {
            r.error(key, format!("expected a string, found {}", v.type_str()));
            None
        }
    }
}

impl NrpeConfig {
    /// Reads the `[plugin.nrpe]` table of the responder config `file`;
    /// relative paths are joined to the file's directory. Every bad or
    /// unknown key is reported, each by its full name (`plugin.nrpe.timeout`).
    pub fn from_table(table: &toml::Table, file: &Path) -> Result<NrpeConfig, ConfigErrors> {
        let base = file.parent().unwrap_or(Path::new("."));
        let mut r = Reader::for_table(file, "plugin.nrpe");
        r.unknown(table, "", KEYS);
        let conf_dir = table
            .get("conf_dir")
            .and_then(|v| path(&mut r, "conf_dir", v, base));
        let mut conf_files = Vec::new();
        match table.get("conf_files") {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    conf_files.extend(path(&mut r, &format!("conf_files[{i}]"), item, base));
                }
            }
            Some(other) => r.error(
                "conf_files",
                format!("expected an array of strings, found {}", other.type_str()),
            ),
        }
        let timeout = r.duration(table, "", "timeout").unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            r.error("timeout", "must be more than zero");
        }
        let args = ArgPolicy {
            allow: r.boolean(table, "", "allow_arguments").unwrap_or(false),
            allow_dash: r
                .boolean(table, "", "allow_dash_arguments")
                .unwrap_or(false),
        };
        r.finish()?;
        let conf_dir = match conf_dir {
            None if conf_files.is_empty() && !table.contains_key("conf_files") => {
                Some(PathBuf::from(DEFAULT_CONF_DIR))
            }
            d => d,
        };
        Ok(NrpeConfig {
            conf_dir,
            conf_files,
            timeout,
            args,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NrpeConfig, ConfigErrors> {
        let table: toml::Table = text.parse().expect("test TOML parses");
        NrpeConfig::from_table(&table, Path::new("/etc/mco/responder.toml"))
    }

    fn keys(errs: &ConfigErrors) -> Vec<&str> {
        errs.0.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn defaults_and_relative_paths() {
        assert_eq!(parse("").unwrap(), NrpeConfig::default());
        let c = parse(
            "conf_dir = \"nrpe.d\"\nconf_files = [\"/x/a.cfg\", \"b.cfg\"]\ntimeout = \"2s\"",
        )
        .unwrap();
        assert_eq!(c.conf_dir, Some(PathBuf::from("/etc/mco/nrpe.d")));
        assert_eq!(
            c.conf_files,
            vec![PathBuf::from("/x/a.cfg"), PathBuf::from("/etc/mco/b.cfg")]
        );
        assert_eq!(c.timeout, Duration::from_secs(2));
        let c = parse("conf_files = [\"a.cfg\"]\ntimeout = 7").unwrap();
        assert_eq!(
            c.conf_dir, None,
            "a file list alone replaces the default dir"
        );
        assert_eq!(c.timeout, Duration::from_secs(7));
        assert_eq!(c.args, ArgPolicy::default(), "arguments are off by default");
        let c = parse("allow_arguments = true").unwrap();
        assert!(c.args.allow && !c.args.allow_dash);
        let c = parse("allow_arguments = true\nallow_dash_arguments = true").unwrap();
        assert!(c.args.allow && c.args.allow_dash);
    }

    #[test]
    fn every_bad_key_is_named() {
        let errs =
            parse("conf_dir = 3\nconf_files = \"a\"\ntimeout = \"soon\"\ncolour = 1").unwrap_err();
        assert_eq!(
            keys(&errs),
            [
                "plugin.nrpe.colour",
                "plugin.nrpe.conf_dir",
                "plugin.nrpe.conf_files",
                "plugin.nrpe.timeout"
            ]
        );
        assert!(errs.0[1].message.contains("integer"), "{errs}");
        let errs = parse("timeout = 0").unwrap_err();
        assert_eq!(errs.0[0].key, "plugin.nrpe.timeout");
        let errs = parse("conf_files = [\"\", 2]").unwrap_err();
        assert_eq!(errs.0.len(), 2);
        assert_eq!(errs.0[1].key, "plugin.nrpe.conf_files[1]");
        let errs = parse("allow_arguments = \"yes\"\nallow_dash_arguments = 1").unwrap_err();
        assert_eq!(errs.0.len(), 2);
        assert!(errs.0[0].message.contains("a boolean"), "{errs}");
    }

    #[test]
    fn two_bad_keys_and_an_unknown_one_are_reported_together() {
        let errs = parse("timeout = \"soon\"\nallow_arguments = 3\nconf_dri = \"x\"").unwrap_err();
        assert_eq!(
            keys(&errs),
            [
                "plugin.nrpe.conf_dri",
                "plugin.nrpe.timeout",
                "plugin.nrpe.allow_arguments"
            ]
        );
        assert!(errs.0[0].message.starts_with("unknown key"), "{errs}");
        assert!(errs.0.iter().all(|e| e.file == "/etc/mco/responder.toml"));
        assert_eq!(errs.to_string().lines().count(), 3, "{errs}");
    }
}

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

use mco_core::config::parse_duration;

use crate::cmdline::ArgPolicy;

/// Where definitions come from when nothing is configured.
pub const DEFAULT_CONF_DIR: &str = "/etc/nagios/nrpe.d";

/// How long one command may run when `timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A `[plugin.nrpe]` table that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The key at fault.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

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

impl NrpeConfig {
    /// Reads the `[plugin.nrpe]` table; relative paths are joined to `base`
    /// (the config file's directory). Every bad key is reported, by name.
    pub fn from_table(table: &toml::Table, base: &Path) -> Result<NrpeConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut cfg = NrpeConfig {
            conf_dir: None,
            conf_files: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            args: ArgPolicy::default(),
        };
        let flag = |key: &str, v: &toml::Value, errors: &mut Vec<ConfigError>| {
            v.as_bool().unwrap_or_else(|| {
                errors.push(ConfigError::new(
                    key,
                    format!("expected true or false, found {}", v.type_str()),
                ));
                false
            })
        };
        let path = |key: &str, v: &toml::Value, errors: &mut Vec<ConfigError>| match v.as_str() {
            Some("") => {
                errors.push(ConfigError::new(key, "must not be empty"));
                None
            }
            Some(s) => Some(base.join(s)),
            None => {
                errors.push(ConfigError::new(
                    key,
                    format!("expected a path string, found {}", v.type_str()),
                ));
                None
            }
        };
        for (key, value) in table {
            match key.as_str() {
                "conf_dir" => cfg.conf_dir = path("conf_dir", value, &mut errors),
                "conf_files" => match value.as_array() {
                    Some(items) => {
                        for (i, item) in items.iter().enumerate() {
                            if let Some(p) = path(&format!("conf_files[{i}]"), item, &mut errors) {
                                cfg.conf_files.push(p);
                            }
                        }
                    }
                    None => errors.push(ConfigError::new(
                        "conf_files",
                        format!("expected a list of paths, found {}", value.type_str()),
                    )),
                },
                "timeout" => match timeout(value) {
                    Ok(t) => cfg.timeout = t,
                    Err(m) => errors.push(ConfigError::new("timeout", m)),
                },
                "allow_arguments" => cfg.args.allow = flag(key.as_str(), value, &mut errors),
                "allow_dash_arguments" => cfg.args.allow_dash = flag(key.as_str(), value, &mut errors),
                other => errors.push(ConfigError::new(
                    other,
                    "unknown key (known: conf_dir, conf_files, timeout, allow_arguments, allow_dash_arguments)",
                )),
            }
        }
        if cfg.conf_dir.is_none() && cfg.conf_files.is_empty() && !table.contains_key("conf_files")
        {
            cfg.conf_dir = Some(PathBuf::from(DEFAULT_CONF_DIR));
        }
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }
}

fn timeout(v: &toml::Value) -> Result<Duration, String> {
    let d = match v {
        toml::Value::Integer(n) if *n > 0 => Duration::from_secs(*n as u64),
        toml::Value::String(s) => parse_duration(s)?,
        toml::Value::Integer(_) => return Err("must be at least 1 second".into()),
        other => {
            return Err(format!(
                "expected seconds or a duration like \"10s\", found {}",
                other.type_str()
            ))
        }
    };
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NrpeConfig, Vec<ConfigError>> {
        let table: toml::Table = text.parse().expect("test TOML parses");
        NrpeConfig::from_table(&table, Path::new("/etc/mco"))
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
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["colour", "conf_dir", "conf_files", "timeout"]);
        assert!(errs[1].message.contains("integer"), "{}", errs[1]);
        let errs = parse("timeout = 0").unwrap_err();
        assert_eq!(errs[0].key, "timeout");
        let errs = parse("conf_files = [\"\", 2]").unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[1].key, "conf_files[1]");
        let errs = parse("allow_arguments = \"yes\"\nallow_dash_arguments = 1").unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(errs[0].message.contains("true or false"), "{}", errs[0]);
    }
}

//! Fact and class gathering for the responder.
//!
//! A node's facts come from several kinds of source, merged in a fixed order
//! so that an operator can always predict which value wins:
//!
//! 1. built-in system facts (`system = true`);
//! 2. each YAML/JSON fact file (`files`);
//! 3. each `key=value` file (`keyvalue_files`, e.g. ec2-boot-init's
//!    `/etc/facts.txt`);
//! 4. each one-value file (`value_files`, e.g. `role` from `/etc/role`);
//! 5. each cloud user-data document's `facts:` mapping (`userdata_files`);
//! 6. each fact command (`commands`), last.
//!
//! Later sources deep-merge over earlier ones, so a file can override
//! `os.family` without losing `os.release`. Within one `key=value` file, a
//! key given twice takes its last value. Sources 3 to 5 are for a node's
//! first boot, read by [`read_keyvalue_file`], [`read_value_file`] and
//! [`read_userdata_file`].
//!
//! Gathering never fails as a whole. A responder with one broken fact file
//! should still answer with everything else it knows, so a source that cannot
//! be read becomes a warning naming it and the reason, and contributes nothing.
//! The exception is a `key=value` file, which is read line by line: each bad
//! line is a warning naming `FILE:LINE`, and the file's good lines still count.

mod boot;
mod command;
mod files;
mod system;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use mco_core::config::FactsConfig;
use mco_core::facts::{merge, FactMap};

pub use boot::{
    parse_keyvalue, parse_userdata, parse_value, read_keyvalue_file, read_userdata_file,
    read_value_file, KeyValues, LineError, UserdataError, MAX_LINE_WARNINGS,
};
pub use command::run_fact_command;
pub use files::{read_classes, read_fact_file};
pub use system::{default_identity, system_facts};

/// Fact files and classes files larger than this are refused, and so is fact
/// command output: facts travel in every registration message, so anything
/// this big is a mistake rather than data.
pub const MAX_SOURCE_BYTES: u64 = 16 * 1024 * 1024;

/// How long a fact command may run before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a piece of facts came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file: a fact file, classes file, `key=value` file, one-value file
    /// or user-data file.
    File(PathBuf),
    /// A fact command, as written in the config.
    Command(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Command(cmd) => write!(f, "fact command `{cmd}`"),
        }
    }
}

/// Why one fact source could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FactsError {
    /// A file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file, or a command's output, is larger than [`MAX_SOURCE_BYTES`].
    #[error("{origin} is larger than the {} MiB limit", limit / (1024 * 1024))]
    TooLarge {
        /// The file or command.
        origin: Origin,
        /// The limit in bytes.
        limit: u64,
    },
    /// The content is not valid JSON or YAML.
    #[error("cannot parse {origin}: {message}")]
    Parse {
        /// The file or command.
        origin: Origin,
        /// What the parser said, with line and column where it gave them.
        message: String,
    },
    /// One line of a file is wrong (a `key=value` file's bad line, a value
    /// file's second line, the line where a user-data document stops being
    /// valid YAML).
    #[error("{origin}:{line}: {message}")]
    Line {
        /// The file.
        origin: Origin,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A `key=value` file has more bad lines than [`MAX_LINE_WARNINGS`]:
    /// how many were not reported one by one.
    #[error("{origin}: {count} more bad lines not listed")]
    MoreBadLines {
        /// The file.
        origin: Origin,
        /// Bad lines beyond those reported.
        count: usize,
    },
    /// A one-value file holds nothing but whitespace, so its fact is left out.
    #[error("{origin} is empty: no `{fact}` fact")]
    EmptyValue {
        /// The file.
        origin: Origin,
        /// The fact it was to give.
        fact: String,
    },
    /// A fact name given for a source is not one
    /// [`check_fact_name`](mco_core::facts::check_fact_name) accepts.
    #[error("{origin}: bad fact name {name:?}: {reason}")]
    BadName {
        /// The source the name was given for.
        origin: Origin,
        /// The name.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// The content parsed, but its top level is not a mapping of fact names to values.
    #[error("{origin}: the top level must be a mapping of fact names to values, found {found}")]
    NotAMapping {
        /// The file or command.
        origin: Origin,
        /// What was found instead, e.g. `a list`.
        found: &'static str,
    },
    /// A fact command could not be started.
    #[error("cannot run fact command `{command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A fact command exited unsuccessfully.
    #[error("fact command `{command}` failed ({status}){}", stderr_suffix(stderr))]
    CommandFailed {
        /// The command.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// The first non-blank line it wrote to stderr, possibly empty.
        stderr: String,
    },
    /// A fact command did not finish in time and was killed, with its children.
    #[error("fact command `{command}` did not finish within {timeout:?} and was killed")]
    CommandTimeout {
        /// The command.
        command: String,
        /// The time it was given.
        timeout: Duration,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// The result of one gathering pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gathered {
    /// All facts, merged in order: system, `files`, `keyvalue_files`,
    /// `value_files`, `userdata_files`, `commands`.
    pub facts: FactMap,
    /// Classes from the classes file, in file order, without duplicates.
    pub classes: Vec<String>,
    /// One line per source that could not be used, naming it and why.
    pub warnings: Vec<String>,
}

/// Gathers everything the config names. Never fails as a whole: a source that cannot be read
/// becomes a warning naming the file/command and why, and contributes nothing.
///
/// System facts, every file and the classes file are read on a blocking thread.
/// Commands then run one after another rather than all at once: gathering is a
/// periodic background job, and keeping its load on the node low matters more
/// than finishing a few seconds sooner.
pub async fn gather(cfg: &FactsConfig) -> Gathered {
    let system = cfg.system;
    let files = cfg.files.clone();
    let keyvalue_files = cfg.keyvalue_files.clone();
    let value_files = cfg.value_files.clone();
    let userdata_files = cfg.userdata_files.clone();
    let classes_files: Vec<PathBuf> = cfg
        .classes_file
        .iter()
        .chain(&cfg.classes_files)
        .cloned()
        .collect();
    let local = tokio::task::spawn_blocking(move || {
        let mut out = Gathered::default();
        if system {
            out.facts = system_facts();
        }
        for path in &files {
            match read_fact_file(path) {
                Ok(facts) => merge(&mut out.facts, facts),
                Err(e) => out.warnings.push(e.to_string()),
            }
        }
        for path in &keyvalue_files {
            let (facts, errors) = read_keyvalue_file(path);
            merge(&mut out.facts, facts);
            out.warnings.extend(errors.iter().map(ToString::to_string));
        }
        for (name, path) in &value_files {
            match read_value_file(name, path) {
                Ok(value) => merge(
                    &mut out.facts,
                    FactMap::from_iter([(name.clone(), serde_json::Value::String(value))]),
                ),
                Err(e) => out.warnings.push(e.to_string()),
            }
        }
        for path in &userdata_files {
            match read_userdata_file(path) {
                Ok(facts) => merge(&mut out.facts, facts),
                Err(e) => out.warnings.push(e.to_string()),
            }
        }
        let mut seen = std::collections::HashSet::new();
        for path in &classes_files {
            match read_classes(path) {
                Ok(classes) => {
                    for c in classes {
                        if seen.insert(c.clone()) {
                            out.classes.push(c);
                        }
                    }
                }
                Err(e) => out.warnings.push(e.to_string()),
            }
        }
        out
    })
    .await;
    let mut out = match local {
        Ok(out) => out,
        Err(e) => Gathered {
            warnings: vec![format!(
                "reading system facts, fact files and classes failed: {e}"
            )],
            ..Gathered::default()
        },
    };
    for cmd in &cfg.commands {
        match run_fact_command(cmd).await {
            Ok(facts) => merge(&mut out.facts, facts),
            Err(e) => out.warnings.push(e.to_string()),
        }
    }
    out
}

/// Describes a JSON value's kind for [`FactsError::NotAMapping`].
fn kind_of(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests;

//! First-boot fact sources: `key=value` files, one-value files and cloud user
//! data.
//!
//! They are how a freshly launched instance says what it is before any
//! configuration management has run: ec2-boot-init's `/etc/facts.txt`
//! (`key=value` lines written from the user data), a `/etc/role` holding one
//! word, or the user data itself with a `facts:` mapping.
//!
//! Each format has a pure parser ([`parse_keyvalue`], [`parse_value`],
//! [`parse_userdata`]; public so that the fuzz targets can drive them) behind
//! a reader that reads the file with the same [`MAX_SOURCE_BYTES`] bound as
//! fact files and names the file (and the line, where there is one) in every
//! error. None of them panics on any input.
//!
//! [`MAX_SOURCE_BYTES`]: super::MAX_SOURCE_BYTES

use std::fmt;
use std::path::Path;

use mco_core::facts::{check_fact_name, FactMap};
use serde_json::Value;

use super::files::{read_limited, yaml_to_json};
use super::{kind_of, FactsError, Origin};

/// At most this many bad lines of one `key=value` file are reported one by
/// one; the rest are only counted, so a file of garbage cannot flood the log
/// (or memory) on every refresh.
pub const MAX_LINE_WARNINGS: usize = 10;

/// The longest piece of a bad line quoted in an error, in characters.
const QUOTE_MAX: usize = 60;

/// Cloud-init user-data formats that are not YAML, by how their first line
/// starts (compared without regard to ASCII case): scripts, include lists,
/// boothooks, upstart jobs, part handlers, MIME multipart documents and
/// Windows (EC2Launch) scripts.
const NOT_YAML: &[&str] = &[
    "#!",
    "#include",
    "#cloud-boothook",
    "#upstart-job",
    "#part-handler",
    "content-type:",
    "mime-version:",
    "<powershell>",
    "<script>",
    "<persist>",
];

/// One bad line of a line-oriented source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The line's number, from 1.
    pub line: usize,
    /// What is wrong with it, e.g. `expected key=value, found "foo"`.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What [`parse_keyvalue`] made of a `key=value` text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyValues {
    /// The facts of every good line, each a string; for a key given twice,
    /// the last line wins.
    pub facts: FactMap,
    /// The first [`MAX_LINE_WARNINGS`] bad lines, in order.
    pub errors: Vec<LineError>,
    /// How many bad lines there are in all (at least `errors.len()`).
    pub bad_lines: usize,
}

/// Parses `key=value` lines (ec2-boot-init's `/etc/facts.txt`).
///
/// Blank lines and lines starting with `#` are skipped. A line is split at
/// its first `=`; the key and the value are trimmed of whitespace, the key
/// must pass [`check_fact_name`] and the value is kept as a string exactly
/// as written (`8` stays `"8"`, quotes stay quotes, a `#` after the `=` is
/// part of the value; an empty value is an empty string). A line without `=`, with a bad key or that is not UTF-8
/// is an error naming its number; every other line still counts.
pub fn parse_keyvalue(bytes: &[u8]) -> KeyValues {
    fn bad(out: &mut KeyValues, line: usize, message: String) {
        out.bad_lines += 1;
        if out.errors.len() < MAX_LINE_WARNINGS {
            out.errors.push(LineError { line, message });
        }
    }
    let mut out = KeyValues::default();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let Ok(text) = std::str::from_utf8(raw) else {
            bad(&mut out, line, "not valid UTF-8".to_owned());
            continue;
        };
        let text = if line == 1 { strip_bom(text) } else { text }.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let Some((key, value)) = text.split_once('=') else {
            bad(
                &mut out,
                line,
                format!("expected key=value, found {}", quote(text)),
            );
            continue;
        };
        let key = key.trim();
        if let Err(why) = check_fact_name(key) {
            bad(
                &mut out,
                line,
                format!("bad fact name {}: {why}", quote(key)),
            );
            continue;
        }
        out.facts
            .insert(key.to_owned(), Value::String(value.trim().to_owned()));
    }
    out
}

/// Parses a one-value file (such as `/etc/role`): its content, trimmed of
/// whitespace, or `None` if there is nothing but whitespace.
///
/// Strict: a second non-blank line is an error naming that line, and the
/// file gives no value at all, rather than quietly taking the first line.
pub fn parse_value(bytes: &[u8]) -> Result<Option<String>, LineError> {
    let text = std::str::from_utf8(bytes).map_err(|e| LineError {
        line: line_of(bytes, e.valid_up_to()),
        message: "not valid UTF-8".to_owned(),
    })?;
    let mut lines = strip_bom(text)
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let Some((_, value)) = lines.next() else {
        return Ok(None);
    };
    if let Some((line, extra)) = lines.next() {
        return Err(LineError {
            line,
            message: format!(
                "expected a single value on one line, found another line {}; \
                 the whole file is refused, not just its first line",
                quote(extra)
            ),
        });
    }
    Ok(Some(value.to_owned()))
}

/// Why a user-data document gave no facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserdataError {
    /// The line, where the YAML parser gave one.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for UserdataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Extracts the facts of a cloud user-data document: its top-level `facts:`
/// mapping, or `:facts:` (the Ruby-symbol spelling that ec2-boot-init and
/// other Puppet-era tools write), with YAML types kept and nested mappings
/// allowed, as in a YAML fact file.
///
/// - A first line `#cloud-config` is a YAML comment, so cloud-config is read
///   as it is.
/// - User data in another cloud-init format, recognised by its first line
///   (a `#!` script, `#include`, `#cloud-boothook`, `#upstart-job`,
///   `#part-handler`, a MIME `Content-Type:`/`MIME-Version:` header,
///   `<powershell>`, `<script>`, `<persist>`), or that is not UTF-8 (such as
///   gzip-compressed user data), holds no facts: it is skipped without an
///   error, since many instances have such user data.
/// - A document that is not a mapping, or has no `facts` key, or whose
///   `facts:` is empty (null), gives no facts and no error.
/// - Anything else read as YAML that is not valid YAML is an error with its
///   line; so is a `facts:` that is not a mapping, both `facts:` and
///   `:facts:` at once, and facts nested deeper than a reply can carry.
pub fn parse_userdata(bytes: &[u8]) -> Result<FactMap, UserdataError> {
    use serde_norway::Value as Y;
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(FactMap::new());
    };
    let text = strip_bom(text);
    let first = text.lines().next().unwrap_or("").to_ascii_lowercase();
    if NOT_YAML.iter().any(|p| first.starts_with(p)) {
        return Ok(FactMap::new());
    }
    let doc: Y = serde_norway::from_str(text).map_err(|e| UserdataError {
        line: e.location().map(|l| l.line()),
        message: format!("invalid YAML: {e}"),
    })?;
    let Y::Mapping(top) = untag(doc) else {
        return Ok(FactMap::new());
    };
    let mut found: Option<(&'static str, Y)> = None;
    for (key, value) in top {
        let name = match untag(key) {
            Y::String(s) if s == "facts" => "facts:",
            Y::String(s) if s == ":facts" => ":facts:",
            _ => continue,
        };
        if found.is_some() {
            return Err(UserdataError {
                line: None,
                message: "has both `facts:` and `:facts:`; keep one".to_owned(),
            });
        }
        found = Some((name, value));
    }
    let Some((name, mut value)) = found else {
        return Ok(FactMap::new());
    };
    value.apply_merge().map_err(|e| UserdataError {
        line: None,
        message: format!("invalid YAML merge key under `{name}`: {e}"),
    })?;
    let facts = yaml_to_json(value);
    if let Value::Object(_) = &facts {
        mco_core::limits::check_facts_depth(&facts).map_err(|e| UserdataError {
            line: None,
            message: format!("`{name}`: {e}"),
        })?;
    }
    match facts {
        Value::Null => Ok(FactMap::new()),
        Value::Object(facts) => Ok(facts),
        other => Err(UserdataError {
            line: None,
            message: format!(
                "`{name}` must be a mapping of fact names to values, found {}",
                kind_of(&other)
            ),
        }),
    }
}

/// Reads a `key=value` file with [`parse_keyvalue`]: its facts, and one
/// error per bad line naming `FILE:LINE` (at most [`MAX_LINE_WARNINGS`],
/// then one saying how many more). A bad line does not spoil the rest of the
/// file. A file that cannot be read gives no facts and that one error.
pub fn read_keyvalue_file(path: &Path) -> (FactMap, Vec<FactsError>) {
    let bytes = match read_limited(path) {
        Ok(bytes) => bytes,
        Err(e) => return (FactMap::new(), vec![e]),
    };
    let parsed = parse_keyvalue(&bytes);
    let origin = Origin::File(path.to_path_buf());
    let mut errors: Vec<FactsError> = parsed
        .errors
        .into_iter()
        .map(|e| FactsError::Line {
            origin: origin.clone(),
            line: e.line,
            message: e.message,
        })
        .collect();
    let more = parsed.bad_lines.saturating_sub(errors.len());
    if more > 0 {
        errors.push(FactsError::MoreBadLines {
            origin,
            count: more,
        });
    }
    (parsed.facts, errors)
}

/// Reads a one-value file with [`parse_value`]: the string value of the
/// fact `name`. An empty file, a second line, or a bad `name` is an error
/// naming the file, and the fact is left out.
pub fn read_value_file(name: &str, path: &Path) -> Result<String, FactsError> {
    let origin = || Origin::File(path.to_path_buf());
    check_fact_name(name).map_err(|reason| FactsError::BadName {
        origin: origin(),
        name: name.to_owned(),
        reason,
    })?;
    let bytes = read_limited(path)?;
    match parse_value(&bytes) {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(FactsError::EmptyValue {
            origin: origin(),
            fact: name.to_owned(),
        }),
        Err(e) => Err(FactsError::Line {
            origin: origin(),
            line: e.line,
            message: e.message,
        }),
    }
}

/// Reads a cloud user-data file with [`parse_userdata`]; errors name the
/// file, and the line where the YAML parser gave one.
pub fn read_userdata_file(path: &Path) -> Result<FactMap, FactsError> {
    let bytes = read_limited(path)?;
    let origin = Origin::File(path.to_path_buf());
    parse_userdata(&bytes).map_err(|e| match e.line {
        Some(line) => FactsError::Line {
            origin,
            line,
            message: e.message,
        },
        None => FactsError::Parse {
            origin,
            message: e.message,
        },
    })
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// The line (from 1) holding byte `offset` of `bytes`.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    let before = bytes.get(..offset).unwrap_or(bytes);
    before.iter().filter(|&&b| b == b'\n').count() + 1
}

/// `text` quoted and escaped for an error message, cut at [`QUOTE_MAX`]
/// characters.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

fn untag(value: serde_norway::Value) -> serde_norway::Value {
    match value {
        serde_norway::Value::Tagged(tagged) => untag(tagged.value),
        other => other,
    }
}

#[cfg(test)]
mod tests;

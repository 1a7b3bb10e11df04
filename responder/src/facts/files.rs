//! Fact files (YAML or JSON) and Puppet classes files.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use mco_core::facts::FactMap;
use serde_json::Value;

use super::{kind_of, FactsError, Origin, MAX_SOURCE_BYTES};

/// Reads one YAML (.yaml/.yml) or JSON (.json) fact file; top level must be a mapping. Other extensions: try JSON then YAML.
///
/// A file that is empty, or holds only YAML comments, yields no facts rather
/// than an error, so an operator can blank a file out without breaking it.
/// YAML keys that are not strings (`1: x`, `true: y`) become strings, and
/// YAML merge keys (`<<: *anchor`) are applied.
pub fn read_fact_file(path: &Path) -> Result<FactMap, FactsError> {
    let bytes = read_limited(path)?;
    let origin = || Origin::File(path.to_path_buf());
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(FactMap::new());
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let value = match ext.as_deref() {
        Some("json") => parse_json(&bytes).map_err(|message| FactsError::Parse {
            origin: origin(),
            message,
        })?,
        Some("yaml" | "yml") => parse_yaml(&bytes).map_err(|message| FactsError::Parse {
            origin: origin(),
            message,
        })?,
        _ => match parse_json(&bytes) {
            Ok(v) => v,
            Err(json) => parse_yaml(&bytes).map_err(|yaml| FactsError::Parse {
                origin: origin(),
                message: format!("neither JSON ({json}) nor YAML ({yaml})"),
            })?,
        },
    };
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(FactMap::new()),
        other => Err(FactsError::NotAMapping {
            origin: origin(),
            found: kind_of(&other),
        }),
    }
}

/// Reads a Puppet classes.txt: one class per line, trimmed, blank lines and `#` comments skipped, duplicates removed keeping first order.
///
/// Bytes that are not UTF-8 are replaced rather than rejected, so one odd
/// line cannot hide every other class.
pub fn read_classes(path: &Path) -> Result<Vec<String>, FactsError> {
    let bytes = read_limited(path)?;
    Ok(parse_classes(&String::from_utf8_lossy(&bytes)))
}

fn parse_classes(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter(|line| seen.insert(*line))
        .map(str::to_owned)
        .collect()
}

/// Reads a whole file, refusing anything over [`MAX_SOURCE_BYTES`]. The size
/// is checked again while reading, since files under /proc report 0 and a
/// file may grow between the two.
pub(super) fn read_limited(path: &Path) -> Result<Vec<u8>, FactsError> {
    let io_err = |source| FactsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let too_large = || FactsError::TooLarge {
        origin: Origin::File(path.to_path_buf()),
        limit: MAX_SOURCE_BYTES,
    };
    let file = File::open(path).map_err(io_err)?;
    if file.metadata().map_err(io_err)?.len() > MAX_SOURCE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_SOURCE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_SOURCE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

fn parse_json(bytes: &[u8]) -> Result<Value, String> {
    let v = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    mco_core::limits::check_facts_depth(&v)?;
    Ok(v)
}

fn parse_yaml(bytes: &[u8]) -> Result<Value, String> {
    let mut value: serde_norway::Value =
        serde_norway::from_slice(bytes).map_err(|e| format!("invalid YAML: {e}"))?;
    value
        .apply_merge()
        .map_err(|e| format!("invalid YAML merge key: {e}"))?;
    let v = yaml_to_json(value);
    mco_core::limits::check_facts_depth(&v)?;
    Ok(v)
}

/// Converts a YAML value to JSON. Tags are dropped (their value is kept), and
/// floats JSON cannot hold (`.nan`, `.inf`) become their YAML spelling.
pub(super) fn yaml_to_json(value: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(|| Value::String(n.to_string()), Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (yaml_key(k), yaml_to_json(v)))
                .collect(),
        ),
        Y::Tagged(tagged) => yaml_to_json(tagged.value),
    }
}

/// A YAML mapping key as a JSON object key: scalars as written, anything
/// else as compact JSON.
fn yaml_key(key: serde_norway::Value) -> String {
    use serde_norway::Value as Y;
    match key {
        Y::String(s) => s,
        Y::Null => "null".to_owned(),
        Y::Bool(b) => b.to_string(),
        Y::Number(n) => n.to_string(),
        Y::Tagged(tagged) => yaml_key(tagged.value),
        other => yaml_to_json(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_scalars_and_keys_convert() {
        let v = parse_yaml(
            b"1: one\ntrue: yes\n~: nothing\nbig: 18446744073709551615\nneg: -3\nf: 1.5\nnan: .nan\n\
              tagged: !custom {a: 1}\n? [x, y]\n: list-key\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({
                "1": "one", "true": "yes", "null": "nothing",
                "big": 18446744073709551615u64, "neg": -3, "f": 1.5, "nan": ".nan",
                "tagged": {"a": 1}, "[\"x\",\"y\"]": "list-key"
            })
        );
    }

    #[test]
    fn yaml_merge_keys_apply() {
        let v = parse_yaml(b"base: &b {dc: par1, rack: 4}\nnode:\n  <<: *b\n  rack: 7\n").unwrap();
        assert_eq!(v["node"], json!({"dc": "par1", "rack": 7}));
    }

    #[test]
    fn classes_trim_skip_and_dedupe() {
        let got = parse_classes("  b \n\n# c\n a\r\nb\n\t\n#a\nsettings\na\n");
        assert_eq!(got, ["b", "a", "settings"]);
    }
}

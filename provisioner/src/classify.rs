//! What a node is: the classification an expected-node registry entry may
//! carry (classes, parameters, an environment, as a Puppet external node
//! classifier answers), and the registry's entry formats.
//!
//! A registry file holds one entry per line: an identity or pattern,
//! optionally followed by the classification as a JSON object; `#` starts
//! a comment outside the JSON.
//!
//! ```text
//! web-0001 {"classes": ["role::web"], "environment": "production", "parameters": {"tier": "front"}}
//! db-*     {"classes": ["role::db"]}
//! cache-01
//! ```
//!
//! A registry bucket's value is either such a JSON object, or any other
//! text (the node is expected, unclassified), or `0`, `false` or `no` (it
//! is not).

use serde::Serialize;
use serde_json::{Map, Value};

pub use mco_core::classification::{
    valid_class, valid_parameter, Classification, MAX_CLASSES, MAX_CLASSIFICATION,
};

/// The answer a Puppet master's `external_nodes` command prints for `c`:
/// YAML in its JSON form (a document YAML 1.1 and 1.2 read alike), so no
/// class or value such as `no`, `on` or `12:30` is taken for a boolean or a
/// number by Puppet's YAML reader.
pub fn enc_yaml(c: &Classification) -> String {
    #[derive(Serialize)]
    struct Enc<'a> {
        classes: &'a [String],
        parameters: &'a Map<String, Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        environment: Option<&'a String>,
    }
    let enc = Enc {
        classes: &c.classes,
        parameters: &c.parameters,
        environment: c.environment.as_ref(),
    };
    let body = serde_json::to_string_pretty(&enc).unwrap_or_else(|_| "{}".into());
    format!("---\n{}\n", yaml_printable(&body))
}

/// `json` with every character YAML does not allow raw (DEL, the C1
/// controls, U+FFFE and U+FFFF; JSON already escapes C0) written as a JSON
/// escape: such characters occur only inside JSON strings, where `\uXXXX`
/// means the same character to a JSON or YAML reader.
fn yaml_printable(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c) || c == '\u{fffe}' || c == '\u{ffff}'
        {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// One line of a registry file: the pattern and its classification, if any.
pub fn file_entry(line: &str) -> Result<Option<(String, Option<Classification>)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (pattern, rest) = match line.find(char::is_whitespace) {
        Some(i) => (&line[..i], line[i..].trim()),
        None => (line, ""),
    };
    let rest = if rest.starts_with('#') { "" } else { rest };
    if rest.is_empty() {
        return Ok(Some((pattern.to_string(), None)));
    }
    // A comment may follow the JSON object.
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
    let value = match stream.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(format!("after {pattern:?}: {e}")),
        None => return Ok(Some((pattern.to_string(), None))),
    };
    let after = rest[stream.byte_offset()..].trim();
    if !(after.is_empty() || after.starts_with('#')) {
        return Err(format!("after {pattern:?}'s classification: {after:?}"));
    }
    let c = Classification::from_json(&value.to_string()).map_err(|e| format!("{pattern}: {e}"))?;
    Ok(Some((pattern.to_string(), Some(c))))
}

/// What a registry bucket's value says.
#[derive(Debug, Clone, PartialEq)]
pub enum BucketValue {
    /// `0`, `false` or `no`: not expected.
    No,
    /// Expected, perhaps with a classification.
    Yes(Option<Classification>),
}

/// Reads a registry bucket's value.
pub fn bucket_value(bytes: &[u8]) -> Result<BucketValue, String> {
    let text = String::from_utf8_lossy(bytes);
    let t = text.trim();
    if t.starts_with('{') {
        return Classification::from_json(t).map(|c| BucketValue::Yes(Some(c)));
    }
    Ok(
        if matches!(t.to_ascii_lowercase().as_str(), "0" | "false" | "no") {
            BucketValue::No
        } else {
            BucketValue::Yes(None)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn file_entries_with_and_without_a_classification() {
        assert_eq!(file_entry("  # note").unwrap(), None);
        assert_eq!(file_entry("").unwrap(), None);
        assert_eq!(
            file_entry("web-* # the web tier").unwrap(),
            Some(("web-*".into(), None))
        );
        let (p, c) = file_entry(
            r#"web-0001 {"classes": ["role::web"], "environment": "production", "parameters": {"tier": "front"}} # row 3"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p, "web-0001");
        let c = c.unwrap();
        assert_eq!(c.classes, vec!["role::web"]);
        assert_eq!(c.environment.as_deref(), Some("production"));
        assert_eq!(c.parameters["tier"], json!("front"));
    }

    #[test]
    fn bad_file_entries_say_what_is_wrong() {
        for (line, want) in [
            (r#"web-1 {"classes": ["Bad"]}"#, "not a Puppet class name"),
            (r#"web-1 {"classes": "role::web"}"#, "not a classification"),
            (r#"web-1 {"class": []}"#, "unknown field"),
            (r#"web-1 {"classes": []"#, "after \"web-1\""),
            (r#"web-1 {"classes": []} extra"#, "extra"),
            (
                r#"web-1 {"parameters": {"a.b": 1}}"#,
                "cannot name a parameter",
            ),
            (
                r#"web-1 {"environment": "../x"}"#,
                "not a Puppet environment",
            ),
        ] {
            let err = file_entry(line).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn bucket_values() {
        assert_eq!(bucket_value(b" no ").unwrap(), BucketValue::No);
        assert_eq!(bucket_value(b"FALSE").unwrap(), BucketValue::No);
        assert_eq!(bucket_value(b"0").unwrap(), BucketValue::No);
        assert_eq!(
            bucket_value(b"booted by the autoscaler").unwrap(),
            BucketValue::Yes(None)
        );
        let BucketValue::Yes(Some(c)) = bucket_value(br#"{"classes":["a::b"]}"#).unwrap() else {
            panic!("a classification");
        };
        assert_eq!(c.classes, vec!["a::b"]);
        assert!(bucket_value(br#"{"classes":[1]}"#).is_err());
        let huge = format!(r#"{{"classes":["{}"]}}"#, "a".repeat(MAX_CLASSIFICATION));
        assert!(bucket_value(huge.as_bytes())
            .unwrap_err()
            .contains("at most"));
    }

    #[test]
    fn the_enc_answer_is_yaml_puppet_reads() {
        let c = Classification {
            classes: vec!["role::web".into()],
            parameters: json!({"tier": "front", "weight": 3})
                .as_object()
                .unwrap()
                .clone(),
            environment: Some("production".into()),
        };
        let yaml = enc_yaml(&c);
        let back: Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(
            back,
            json!({"classes": ["role::web"], "parameters": {"tier": "front", "weight": 3}, "environment": "production"})
        );
        // Characters YAML does not allow raw come back escaped, as they were.
        let odd = Classification {
            parameters: json!({"tier": "fr\u{7f}ont\u{85}\u{ffff}"})
                .as_object()
                .unwrap()
                .clone(),
            ..Classification::default()
        };
        let back: Value = serde_norway::from_str(&enc_yaml(&odd)).unwrap();
        assert_eq!(back["parameters"]["tier"], "fr\u{7f}ont\u{85}\u{ffff}");
        // Unclassified: empty lists, no environment.
        let back: Value = serde_norway::from_str(&enc_yaml(&Classification::default())).unwrap();
        assert_eq!(back, json!({"classes": [], "parameters": {}}));
    }
}

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

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The largest classification accepted, as JSON: it travels to the node in
/// one request.
pub const MAX_CLASSIFICATION: usize = 16 * 1024;

/// Classes at most in one classification.
pub const MAX_CLASSES: usize = 256;

/// A node's classification.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Classification {
    /// Puppet classes (`role::web`, `hadoop::worker`).
    #[serde(default)]
    pub classes: Vec<String>,
    /// Top-scope parameters; on the node they become facts.
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// The Puppet environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

/// Whether `c` is a Puppet class name: segments of lowercase letters,
/// digits and `_`, starting with a letter, joined by `::`.
pub fn valid_class(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 255
        && c.split("::").all(|seg| {
            seg.chars().next().is_some_and(|f| f.is_ascii_lowercase())
                && seg
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
        })
}

/// Whether `k` may name a parameter (and so a fact): a letter, then letters,
/// digits and `_`, at most 64 characters.
pub fn valid_parameter(k: &str) -> bool {
    k.len() <= 64
        && k.chars().next().is_some_and(|f| f.is_ascii_alphabetic())
        && k.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

impl Classification {
    /// Parses and checks a classification given as JSON.
    pub fn from_json(text: &str) -> Result<Classification, String> {
        if text.len() > MAX_CLASSIFICATION {
            return Err(format!(
                "a classification is at most {MAX_CLASSIFICATION} bytes, this one is {}",
                text.len()
            ));
        }
        let c: Classification =
            serde_json::from_str(text).map_err(|e| format!("not a classification: {e}"))?;
        c.check()?;
        Ok(c)
    }

    /// Checks class names, parameter names and the environment.
    pub fn check(&self) -> Result<(), String> {
        if self.classes.len() > MAX_CLASSES {
            return Err(format!("more than {MAX_CLASSES} classes"));
        }
        if let Some(bad) = self.classes.iter().find(|c| !valid_class(c)) {
            return Err(format!("{bad:?} is not a Puppet class name"));
        }
        if let Some(bad) = self.parameters.keys().find(|k| !valid_parameter(k)) {
            return Err(format!(
                "{bad:?} cannot name a parameter (a letter, then letters, digits and _)"
            ));
        }
        if let Some(env) = &self.environment {
            if !valid_parameter(env) {
                return Err(format!("{env:?} is not a Puppet environment name"));
            }
        }
        Ok(())
    }

    /// As JSON, as `configure` takes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// The YAML a Puppet master's `external_nodes` command prints.
    pub fn enc_yaml(&self) -> String {
        #[derive(Serialize)]
        struct Enc<'a> {
            classes: &'a [String],
            parameters: &'a Map<String, Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            environment: Option<&'a String>,
        }
        let enc = Enc {
            classes: &self.classes,
            parameters: &self.parameters,
            environment: self.environment.as_ref(),
        };
        let body = serde_norway::to_string(&enc).unwrap_or_default();
        format!("---\n{body}")
    }
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
    fn class_and_parameter_names() {
        for good in ["role::web", "hadoop::worker", "a", "ntp_client2"] {
            assert!(valid_class(good), "{good}");
        }
        for bad in [
            "", "Role", "role::", "::role", "role:web", "2x", "a b", "a::B",
        ] {
            assert!(!valid_class(bad), "{bad}");
        }
        assert!(valid_parameter("tier"));
        assert!(!valid_parameter("_x"));
        assert!(!valid_parameter("a.b"));
        assert!(!valid_parameter(&"a".repeat(65)));
    }

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
        let yaml = c.enc_yaml();
        let back: Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(
            back,
            json!({"classes": ["role::web"], "parameters": {"tier": "front", "weight": 3}, "environment": "production"})
        );
        // Unclassified: empty lists, no environment.
        let back: Value = serde_norway::from_str(&Classification::default().enc_yaml()).unwrap();
        assert_eq!(back, json!({"classes": [], "parameters": {}}));
    }
}

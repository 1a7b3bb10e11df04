//! A node's classification: the classes, parameters and environment a
//! Puppet external node classifier answers with. The provisioner takes it
//! from its expected-node registry and gives it to the node at `configure`,
//! which keeps it where the responder reads classes and facts.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The largest classification accepted, as JSON: it travels to the node in
/// one request.
pub const MAX_CLASSIFICATION: usize = 16 * 1024;

/// How deep a parameter's value may nest (the node keeps it as a fact).
pub const MAX_DEPTH: usize = 16;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

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
        if self.parameters.values().any(|v| depth(v) > MAX_DEPTH) {
            return Err(format!(
                "a parameter is nested deeper than {MAX_DEPTH} levels"
            ));
        }
        let size = self.to_json().len();
        if size > MAX_CLASSIFICATION {
            return Err(format!(
                "a classification is at most {MAX_CLASSIFICATION} bytes as JSON, this one is {size}"
            ));
        }
        Ok(())
    }

    /// As JSON, as `configure` takes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn bad_classifications_are_refused() {
        for (text, want) in [
            (r#"{"classes": ["Bad"]}"#, "not a Puppet class name"),
            (r#"{"classes": "role::web"}"#, "not a classification"),
            (r#"{"class": []}"#, "unknown field"),
            (r#"{"parameters": {"a.b": 1}}"#, "cannot name a parameter"),
            (r#"{"environment": "../x"}"#, "not a Puppet environment"),
        ] {
            let err = Classification::from_json(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        let many = serde_json::json!({"classes": vec!["a"; MAX_CLASSES + 1]}).to_string();
        assert!(Classification::from_json(&many)
            .unwrap_err()
            .contains("more than"));
        let deep = format!(
            r#"{{"parameters": {{"p": {}1{}}}}}"#,
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert!(Classification::from_json(&deep)
            .unwrap_err()
            .contains("deeper"));
        let huge = format!(r#"{{"classes":["{}"]}}"#, "a".repeat(MAX_CLASSIFICATION));
        assert!(Classification::from_json(&huge)
            .unwrap_err()
            .contains("at most"));
    }
}

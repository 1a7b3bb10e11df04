//! The DDL: the JSON description of an agent (ARCHITECTURE.md §6).
//!
//! Shaped after Choria's agent DDL schema so that an operator's existing DDLs
//! load as they are. The loader is lenient where that is harmless (unknown keys
//! are ignored, `Hash`/`Array` spellings, a missing `optional`) and strict where
//! it matters (names, input types, validators and regexes must make sense),
//! and every error names the file and the field.

mod validate;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use validate::{coerce_argument, shellsafe, InputError, Validator};

/// A whole agent DDL.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ddl {
    /// Choria's schema URL, if given.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Who and what.
    pub metadata: Metadata,
    /// The actions, in the order the DDL lists them.
    pub actions: Vec<Action>,
}

/// Agent metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    /// Agent name (`[a-z0-9_]+`).
    pub name: String,
    /// One-line description.
    pub description: String,
    /// Maintainer.
    #[serde(default)]
    pub author: String,
    /// License.
    #[serde(default)]
    pub license: String,
    /// Agent version.
    #[serde(default)]
    pub version: String,
    /// More information.
    #[serde(default)]
    pub url: String,
    /// Per-action timeout, seconds.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Provider (`external` for executable agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

fn default_timeout() -> u64 {
    10
}

/// When the client prints a node's result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DisplayRule {
    /// Only successful results.
    Ok,
    /// Only failures (MCollective's default).
    #[default]
    Failed,
    /// Every result.
    Always,
}

/// One action.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Action {
    /// Action name.
    pub action: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// When to print results.
    #[serde(default)]
    pub display: DisplayRule,
    /// Inputs by name.
    #[serde(default)]
    pub input: BTreeMap<String, Input>,
    /// Outputs by name.
    #[serde(default)]
    pub output: BTreeMap<String, Output>,
    /// Aggregate summaries the client computes over all replies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregate: Vec<Aggregate>,
}

/// An input's data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputType {
    /// Text.
    #[serde(rename = "string")]
    String,
    /// Whole number.
    #[serde(rename = "integer")]
    Integer,
    /// Floating point.
    #[serde(rename = "float")]
    Float,
    /// Any number.
    #[serde(rename = "number")]
    Number,
    /// true/false.
    #[serde(rename = "boolean")]
    Boolean,
    /// One of the values in `list`.
    #[serde(rename = "list")]
    List,
    /// A JSON object.
    #[serde(rename = "hash", alias = "Hash")]
    Hash,
    /// A JSON array.
    #[serde(rename = "array", alias = "Array")]
    Array,
}

impl InputType {
    /// The name as written in a DDL.
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Integer => "integer",
            InputType::Float => "float",
            InputType::Number => "number",
            InputType::Boolean => "boolean",
            InputType::List => "list",
            InputType::Hash => "hash",
            InputType::Array => "array",
        }
    }
}

/// One input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    /// Short prompt.
    #[serde(default)]
    pub prompt: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Data type.
    #[serde(rename = "type")]
    pub kind: InputType,
    /// A named validator (`shellsafe`, `ipv4address`, …) or a regex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
    /// Maximum length in characters for strings; 0 means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxlength: Option<u64>,
    /// Whether the input may be left out.
    #[serde(default)]
    pub optional: bool,
    /// Value used when the input is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Allowed values, for `list` inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<Vec<Value>>,
    /// A secret (mco extension): written as `[REDACTED]` in audit logs and
    /// never echoed in a validation error.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    /// How the audit log records a value that is not `sensitive` (mco
    /// extension): `"clear"` (the default) or `"digest"`, its SHA-256 and
    /// length, for contents worth identifying but not copying (a file's
    /// content). A digest of a short secret can be guessed: mark those
    /// `sensitive` instead.
    #[serde(default, skip_serializing_if = "AuditAs::is_clear")]
    pub audit: AuditAs,
}

/// How an input's value appears in the audit log (see [`Input::audit`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditAs {
    /// The value as sent.
    #[default]
    Clear,
    /// `sha256:HEX (N bytes)` of the value's JSON text (of the string itself for a string).
    Digest,
}

impl AuditAs {
    fn is_clear(&self) -> bool {
        *self == AuditAs::Clear
    }
}

/// One output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Output {
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Label used when printing.
    #[serde(default)]
    pub display_as: String,
    /// Data type (informational).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Value the reply carries when the agent does not set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

/// An aggregate summary: a function over one output field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Aggregate {
    /// `summary`, `average`, `sum`, `boolean_summary`, `nagios_states`, …
    pub function: String,
    /// First the output field, then an optional options object (`format`, labels).
    #[serde(default)]
    pub args: Vec<Value>,
}

impl Aggregate {
    /// The output field the aggregate reads.
    pub fn field(&self) -> Option<&str> {
        self.args.first().and_then(Value::as_str)
    }

    /// The options object, if any.
    pub fn options(&self) -> Option<&serde_json::Map<String, Value>> {
        self.args.get(1).and_then(Value::as_object)
    }
}

/// A DDL that did not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct DdlError {
    /// The file (or `<builtin>` name).
    pub file: String,
    /// The field path, e.g. `actions[0].input.name.type`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Ddl {
    /// Parses and checks a DDL from JSON text; `file` names it in errors.
    pub fn from_json(file: &str, text: &str) -> Result<Ddl, DdlError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let ddl: Ddl = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            DdlError {
                file: file.to_string(),
                field: if path == "." {
                    "(document)".into()
                } else {
                    path
                },
                message: e.into_inner().to_string(),
            }
        })?;
        ddl.check(file)?;
        Ok(ddl)
    }

    /// Reads and parses a DDL file.
    pub fn from_file(path: &Path) -> Result<Ddl, DdlError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| DdlError {
            file: name.clone(),
            field: "(file)".into(),
            message: e.to_string(),
        })?;
        Ddl::from_json(&name, &text)
    }

    /// Loads every `*.json` in `dir`, sorted by name.
    pub fn load_dir(dir: &Path) -> Result<Vec<Ddl>, DdlError> {
        let entries = std::fs::read_dir(dir).map_err(|e| DdlError {
            file: dir.display().to_string(),
            field: "(directory)".into(),
            message: e.to_string(),
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths.iter().map(|p| Ddl::from_file(p)).collect()
    }

    /// An action by name.
    pub fn action(&self, name: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.action == name)
    }

    fn check(&self, file: &str) -> Result<(), DdlError> {
        let err = |field: String, message: String| DdlError {
            file: file.to_string(),
            field,
            message,
        };
        if !is_short_name(&self.metadata.name) {
            return Err(err(
                "metadata.name".into(),
                format!(
                    "{:?} is not a valid agent name ([a-z0-9_]+)",
                    self.metadata.name
                ),
            ));
        }
        if self.actions.is_empty() {
            return Err(err(
                "actions".into(),
                "an agent needs at least one action".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self.actions.iter().enumerate() {
            if !is_short_name(&a.action) {
                return Err(err(
                    format!("actions[{i}].action"),
                    format!("{:?} is not a valid action name ([a-z0-9_]+)", a.action),
                ));
            }
            if !seen.insert(a.action.as_str()) {
                return Err(err(
                    format!("actions[{i}].action"),
                    format!("action {:?} is defined twice", a.action),
                ));
            }
            for (name, input) in &a.input {
                let field = format!("actions[{i}].input.{name}");
                if !is_short_name(name) {
                    return Err(err(field, "input names are [a-z0-9_]+".into()));
                }
                if let Some(v) = &input.validation {
                    Validator::parse(v).map_err(|m| err(format!("{field}.validation"), m))?;
                }
                if input.kind == InputType::List && input.list.as_ref().is_none_or(|l| l.is_empty())
                {
                    return Err(err(
                        format!("{field}.list"),
                        "a list input needs a non-empty list of allowed values".into(),
                    ));
                }
                if let Some(d) = &input.default {
                    if !d.is_null() {
                        validate::check_value(name, input, d)
                            .map_err(|e| err(format!("{field}.default"), e.message))?;
                    }
                }
            }
            for (j, agg) in a.aggregate.iter().enumerate() {
                let field = format!("actions[{i}].aggregate[{j}]");
                let Some(out) = agg.field() else {
                    return Err(err(
                        format!("{field}.args"),
                        "the first argument must name an output".into(),
                    ));
                };
                if !a.output.contains_key(out) {
                    return Err(err(
                        format!("{field}.args"),
                        format!("output {out:?} is not defined for this action"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Action {
    /// The reply data pre-filled with the outputs' defaults, for a reply to start from.
    pub fn output_defaults(&self) -> serde_json::Map<String, Value> {
        self.output
            .iter()
            .filter_map(|(k, o)| o.default.clone().map(|d| (k.clone(), d)))
            .collect()
    }
}

fn is_short_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
      "$schema": "https://choria.io/schemas/mcorpc/ddl/v1/agent.json",
      "metadata": {"name": "demo", "description": "d", "author": "a", "license": "Apache-2.0",
                   "version": "1.0.0", "url": "https://example.net", "timeout": 5},
      "actions": [{"action": "go", "description": "x", "display": "always",
        "input": {"msg": {"prompt": "M", "description": "m", "type": "string",
                          "validation": "^[a-z]+$", "maxlength": 10, "optional": false},
                  "opts": {"prompt": "O", "description": "o", "type": "Hash", "optional": true}},
        "output": {"out": {"description": "o", "display_as": "Out", "default": 0}},
        "aggregate": [{"function": "summary", "args": ["out", {"format": "%s"}]}]}]
    }"#;

    #[test]
    fn loads_choria_shaped_ddl() {
        let d = Ddl::from_json("demo.json", GOOD).unwrap();
        assert_eq!(d.metadata.timeout, 5);
        let a = d.action("go").unwrap();
        assert_eq!(a.display, DisplayRule::Always);
        assert_eq!(a.input["opts"].kind, InputType::Hash);
        assert_eq!(a.aggregate[0].field(), Some("out"));
        assert_eq!(a.output_defaults()["out"], 0);
    }

    #[test]
    fn errors_name_file_and_field() {
        let bad = GOOD.replace("\"type\": \"string\"", "\"type\": \"strng\"");
        let e = Ddl::from_json("demo.json", &bad).unwrap_err();
        assert_eq!(e.file, "demo.json");
        assert!(e.field.starts_with("actions[0].input.msg"), "{e}");

        let bad = GOOD.replace("^[a-z]+$", "^[a-z+$");
        let e = Ddl::from_json("demo.json", &bad).unwrap_err();
        assert_eq!(e.field, "actions[0].input.msg.validation", "{e}");

        let bad = GOOD.replace("\"name\": \"demo\"", "\"name\": \"Demo!\"");
        let e = Ddl::from_json("demo.json", &bad).unwrap_err();
        assert_eq!(e.field, "metadata.name");

        let bad = GOOD.replace("[\"out\",", "[\"nope\",");
        let e = Ddl::from_json("demo.json", &bad).unwrap_err();
        assert_eq!(e.field, "actions[0].aggregate[0].args");

        let e = Ddl::from_json("x.json", "{").unwrap_err();
        assert_eq!(e.file, "x.json");
    }
}

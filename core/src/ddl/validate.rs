//! Input validation against a DDL, shared by the client (before sending) and
//! the responder (before dispatching).

use std::net::{Ipv4Addr, Ipv6Addr};

use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::{Action, Input, InputType};
use crate::wire::Status;

/// A named or regex validator.
#[derive(Debug, Clone)]
pub enum Validator {
    /// No shell metacharacters.
    ShellSafe,
    /// An IPv4 address.
    Ipv4,
    /// An IPv6 address.
    Ipv6,
    /// Either IP version.
    Ip,
    /// A regular expression (written `/re/` or bare).
    Regex(Pattern),
}

/// A validation regex: its syntax is checked when the DDL is loaded, and it
/// is compiled on its first use. A client loads every DDL it knows at each
/// start and uses at most one action's patterns; compiling them all up front
/// cost milliseconds of every call.
#[derive(Debug, Clone)]
pub struct Pattern {
    src: String,
    re: OnceLock<Result<Regex, String>>,
}

impl Pattern {
    fn parse(src: &str) -> Result<Pattern, String> {
        regex_syntax::Parser::new()
            .parse(src)
            .map_err(|e| e.to_string())?;
        Ok(Pattern {
            src: src.to_string(),
            re: OnceLock::new(),
        })
    }

    fn is_match(&self, text: &str) -> Result<bool, String> {
        self.re
            .get_or_init(|| Regex::new(&self.src).map_err(|e| e.to_string()))
            .as_ref()
            .map(|re| re.is_match(text))
            .map_err(|e| format!("invalid validation regex /{}/: {e}", self.src))
    }
}

impl Validator {
    /// Parses a DDL `validation` value.
    pub fn parse(s: &str) -> Result<Validator, String> {
        Ok(match s {
            "shellsafe" => Validator::ShellSafe,
            "ipv4address" => Validator::Ipv4,
            "ipv6address" => Validator::Ipv6,
            "ipaddress" => Validator::Ip,
            _ => {
                let src = if s.len() >= 2 && s.starts_with('/') && s.ends_with('/') {
                    &s[1..s.len() - 1]
                } else {
                    s
                };
                Validator::Regex(
                    Pattern::parse(src)
                        .map_err(|e| format!("invalid validation regex {s:?}: {e}"))?,
                )
            }
        })
    }

    /// Checks `text`; the error says why it failed.
    pub fn check(&self, text: &str) -> Result<(), String> {
        match self {
            Validator::ShellSafe => shellsafe(text),
            Validator::Ipv4 => text
                .parse::<Ipv4Addr>()
                .map(|_| ())
                .map_err(|_| format!("{text:?} is not an IPv4 address")),
            Validator::Ipv6 => text
                .parse::<Ipv6Addr>()
                .map(|_| ())
                .map_err(|_| format!("{text:?} is not an IPv6 address")),
            Validator::Ip => text
                .parse::<std::net::IpAddr>()
                .map(|_| ())
                .map_err(|_| format!("{text:?} is not an IP address")),
            Validator::Regex(re) => {
                if re.is_match(text)? {
                    Ok(())
                } else {
                    Err(format!("{text:?} does not match /{}/", re.src))
                }
            }
        }
    }
}

/// The shellsafe check: no backtick, `$`, `;`, `|`, `&&`, `>`, `<`, newline or NUL.
pub fn shellsafe(text: &str) -> Result<(), String> {
    for bad in ["`", "$", ";", "|", "&&", ">", "<", "\n", "\r", "\0"] {
        if text.contains(bad) {
            return Err(format!("{text:?} is not shellsafe: it contains {bad:?}"));
        }
    }
    Ok(())
}

/// An input that failed validation: the status to reply with and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    /// `MissingData` (3), `InvalidData` (4).
    pub status: Status,
    /// The input at fault, if one.
    pub input: Option<String>,
    /// What is wrong, naming the input.
    pub message: String,
}

impl InputError {
    fn invalid(input: &str, message: String) -> InputError {
        InputError {
            status: Status::InvalidData,
            input: Some(input.to_string()),
            message,
        }
    }
}

/// Checks one value against its input definition.
pub(crate) fn check_value(name: &str, input: &Input, v: &Value) -> Result<(), InputError> {
    let type_ok = match input.kind {
        InputType::String => v.is_string(),
        InputType::Integer => v.is_i64() || v.is_u64(),
        InputType::Float | InputType::Number => v.is_number(),
        InputType::Boolean => v.is_boolean(),
        InputType::List => v.is_string() || v.is_number() || v.is_boolean(),
        InputType::Hash => v.is_object(),
        InputType::Array => v.is_array(),
    };
    if !type_ok {
        return Err(InputError::invalid(
            name,
            format!(
                "input '{name}' must be of type {}, got {}",
                input.kind.as_str(),
                json_type(v)
            ),
        ));
    }
    if input.kind == InputType::List {
        let allowed = input.list.as_deref().unwrap_or_default();
        if !allowed.iter().any(|a| a == v) {
            let names: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            let got = if input.sensitive {
                String::new()
            } else {
                format!(", got {v}")
            };
            return Err(InputError::invalid(
                name,
                format!("input '{name}' must be one of {}{got}", names.join(", ")),
            ));
        }
    }
    if let Value::String(s) = v {
        if let Some(max) = input.maxlength.filter(|m| *m > 0) {
            let len = s.chars().count() as u64;
            if len > max {
                return Err(InputError::invalid(
                    name,
                    format!("input '{name}' is {len} characters long, over its maxlength of {max}"),
                ));
            }
        }
        if let Some(rule) = &input.validation {
            let validator = Validator::parse(rule).map_err(|m| InputError::invalid(name, m))?;
            validator.check(s).map_err(|m| {
                // A sensitive value is never echoed, not even to say why it
                // was refused: errors reach replies, logs and terminals.
                let m = if input.sensitive {
                    format!("the value does not pass its validation ({rule}); not shown, the input is sensitive")
                } else {
                    m
                };
                InputError::invalid(name, format!("input '{name}': {m}"))
            })?;
        }
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "hash",
    }
}

impl Action {
    /// Validates `data` for this action: fills defaults, rejects unknown
    /// inputs, missing required ones (3) and wrong or invalid values (4).
    pub fn validate(&self, data: &mut Map<String, Value>) -> Result<(), InputError> {
        if let Some(unknown) = data.keys().find(|k| !self.input.contains_key(*k)) {
            return Err(InputError::invalid(
                unknown,
                format!(
                    "unknown input '{unknown}' for action '{}'{}",
                    self.action,
                    self.known_inputs()
                ),
            ));
        }
        for (name, input) in &self.input {
            match data.get(name) {
                Some(v) => check_value(name, input, v)?,
                None => match &input.default {
                    Some(d) if !d.is_null() => {
                        data.insert(name.clone(), d.clone());
                    }
                    _ if input.optional => {}
                    _ => {
                        return Err(InputError {
                            status: Status::MissingData,
                            input: Some(name.clone()),
                            message: format!("missing required input '{name}'"),
                        })
                    }
                },
            }
        }
        Ok(())
    }

    fn known_inputs(&self) -> String {
        if self.input.is_empty() {
            " (it takes none)".into()
        } else {
            let names: Vec<&str> = self.input.keys().map(String::as_str).collect();
            format!(" (known: {})", names.join(", "))
        }
    }
}

/// Whether a DDL list value reads as `text` (`5` matches "5").
fn same_text(a: &Value, text: &str) -> bool {
    match a {
        Value::String(s) => s == text,
        other => other.to_string().as_str() == text,
    }
}

/// Turns a command-line `value` into the JSON value the DDL's type asks for.
pub fn coerce_argument(name: &str, input: &Input, value: &str) -> Result<Value, InputError> {
    let bad = |what: &str| {
        let got = if input.sensitive {
            String::new()
        } else {
            format!(", got {value:?}")
        };
        InputError::invalid(name, format!("input '{name}' must be {what}{got}"))
    };
    Ok(match input.kind {
        InputType::String => Value::String(value.to_string()),
        InputType::List => {
            let allowed = input.list.as_deref().unwrap_or_default();
            allowed
                .iter()
                .find(|a| same_text(a, value))
                .cloned()
                .unwrap_or_else(|| Value::String(value.to_string()))
        }
        InputType::Integer => value
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| bad("an integer"))?,
        InputType::Float | InputType::Number => {
            if let Ok(i) = value.trim().parse::<i64>() {
                if input.kind == InputType::Number {
                    return Ok(Value::from(i));
                }
            }
            let f = value.trim().parse::<f64>().map_err(|_| bad("a number"))?;
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| bad("a finite number"))?
        }
        InputType::Boolean => match value.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" => Value::Bool(true),
            "false" | "f" | "no" | "n" | "0" => Value::Bool(false),
            _ => return Err(bad("a boolean (true/false/yes/no/1/0)")),
        },
        InputType::Hash => match serde_json::from_str::<Value>(value) {
            Ok(v @ Value::Object(_)) => v,
            _ => return Err(bad("a JSON object")),
        },
        InputType::Array => match serde_json::from_str::<Value>(value) {
            Ok(v @ Value::Array(_)) => v,
            _ => Value::Array(
                value
                    .split(',')
                    .map(|s| Value::String(s.trim().to_string()))
                    .collect(),
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::Ddl;
    use super::*;
    use serde_json::json;

    fn action() -> Action {
        let ddl = Ddl::from_json(
            "t.json",
            r#"{"metadata": {"name": "t", "description": "t", "timeout": 2},
                "actions": [{"action": "a", "input": {
                  "name": {"type": "string", "validation": "shellsafe", "maxlength": 5, "optional": false},
                  "count": {"type": "integer", "optional": true, "default": 3},
                  "ip": {"type": "string", "validation": "ipv4address", "optional": true, "maxlength": 0},
                  "mode": {"type": "list", "list": ["fast", "slow"], "optional": true},
                  "ratio": {"type": "float", "optional": true},
                  "force": {"type": "boolean", "optional": true},
                  "opts": {"type": "hash", "optional": true}
                }}]}"#,
        )
        .unwrap();
        ddl.actions[0].clone()
    }

    fn check(v: Value) -> Result<Map<String, Value>, InputError> {
        let mut m = v.as_object().unwrap().clone();
        action().validate(&mut m).map(|_| m)
    }

    #[test]
    fn sensitive_values_are_never_echoed_in_errors() {
        let ddl = Ddl::from_json(
            "s.json",
            r#"{"metadata": {"name": "s", "description": "s", "timeout": 2},
                "actions": [{"action": "a", "input": {
                  "pw": {"type": "string", "validation": "^[a-z]+$", "optional": true, "sensitive": true},
                  "n": {"type": "integer", "optional": true, "sensitive": true},
                  "l": {"type": "list", "list": ["x"], "optional": true, "sensitive": true}
                }}]}"#,
        )
        .unwrap();
        let action = ddl.action("a").unwrap();
        for (k, v) in [
            ("pw", json!("Hunter2$ecret")),
            ("l", json!("Hunter2$ecret")),
        ] {
            let mut data = Map::new();
            data.insert(k.into(), v);
            let e = action.validate(&mut data).unwrap_err();
            assert!(!e.message.contains("Hunter2"), "{k}: {e}");
            assert!(e.message.contains(k), "{k}: {e}");
        }
        let e = coerce_argument("n", &action.input["n"], "Hunter2$ecret").unwrap_err();
        assert!(!e.message.contains("Hunter2"), "{e}");
    }

    #[test]
    fn statuses_for_missing_wrong_and_invalid() {
        assert_eq!(check(json!({})).unwrap_err().status, Status::MissingData);
        let e = check(json!({"name": 5})).unwrap_err();
        assert_eq!(
            (e.status, e.input.as_deref()),
            (Status::InvalidData, Some("name"))
        );
        let e = check(json!({"name": "a;b"})).unwrap_err();
        assert!(e.message.contains("shellsafe"), "{e}");
        let e = check(json!({"name": "abcdef"})).unwrap_err();
        assert!(e.message.contains("maxlength"), "{e}");
        assert!(check(json!({"name": "a", "ip": "1.2.3"})).is_err());
        assert!(check(json!({"name": "a", "mode": "medium"})).is_err());
        assert!(check(json!({"name": "a", "other": 1})).is_err());
        let ok = check(json!({"name": "abc", "ip": "10.0.0.1", "mode": "fast"})).unwrap();
        assert_eq!(ok["count"], 3, "default filled");
    }

    #[test]
    fn coercion_by_type() {
        let a = action();
        assert_eq!(
            coerce_argument("count", &a.input["count"], "42").unwrap(),
            json!(42)
        );
        assert!(coerce_argument("count", &a.input["count"], "4x").is_err());
        assert_eq!(
            coerce_argument("ratio", &a.input["ratio"], "0.5").unwrap(),
            json!(0.5)
        );
        assert_eq!(
            coerce_argument("force", &a.input["force"], "yes").unwrap(),
            json!(true)
        );
        assert!(coerce_argument("force", &a.input["force"], "maybe").is_err());
        assert_eq!(
            coerce_argument("opts", &a.input["opts"], "{\"a\":1}").unwrap(),
            json!({"a": 1})
        );
        assert!(coerce_argument("opts", &a.input["opts"], "[1]").is_err());
    }

    #[test]
    fn shellsafe_rejects_metacharacters() {
        for bad in [
            "a`b", "$x", "a;b", "a|b", "a&&b", "a>b", "a<b", "a\nb", "a\0b",
        ] {
            assert!(shellsafe(bad).is_err(), "{bad:?}");
        }
        assert!(shellsafe("plain -x --y=1 /tmp/file").is_ok());
    }

    #[test]
    fn regexes_are_checked_when_loaded_and_compiled_when_used() {
        let e = Validator::parse("/^[a-z+$/").unwrap_err();
        assert!(e.contains("invalid validation regex"), "{e}");
        let v = Validator::parse("/^[a-z]+$/").unwrap();
        let Validator::Regex(p) = &v else {
            panic!("{v:?}")
        };
        assert!(p.re.get().is_none(), "not compiled before its first use");
        assert!(v.check("deploy").is_ok());
        assert_eq!(
            v.check("Deploy").unwrap_err(),
            "\"Deploy\" does not match /^[a-z]+$/"
        );
        assert!(p.re.get().is_some());
    }
}

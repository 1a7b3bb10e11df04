//! The vocabulary every resource type shares: properties, their kinds,
//! desired and current state, changes and failures.

use mco_core::agent::split_list;
use serde_json::{json, Map, Value};

/// A resource's state as `find` reports it, and desired values as `do`
/// received them after normalisation: property name → value. `ensure` is
/// always present in a state (`absent` when the resource does not exist).
pub type State = Map<String, Value>;

/// What a redacted value is shown as.
pub const REDACTED: &str = "[redacted]";

/// How a property's value is written and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// A whole number (given as text on the command line).
    Integer,
    /// `true`/`false` (also `yes`/`no`).
    Boolean,
    /// A comma-separated list; compared as a set.
    List,
    /// A comma-separated list whose order matters.
    OrderedList,
    /// A file mode in octal (`0644`, `755`); normalised to four digits.
    Mode,
    /// One of the given words.
    OneOf(&'static [&'static str]),
}

/// One property a type accepts.
#[derive(Debug, Clone, Copy)]
pub struct Property {
    /// Its name, as the input is called.
    pub name: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// Never echoed back: changes and state show [`REDACTED`].
    pub sensitive: bool,
    /// A parameter rather than state: it steers how a change is made
    /// (`managehome`, `backup`) and is never compared or reported.
    pub parameter: bool,
}

impl Property {
    /// A state property of `kind`.
    pub const fn new(name: &'static str, kind: Kind) -> Property {
        Property {
            name,
            kind,
            sensitive: false,
            parameter: false,
        }
    }

    /// Marks it sensitive.
    pub const fn sensitive(mut self) -> Property {
        self.sensitive = true;
        self
    }

    /// Marks it a parameter.
    pub const fn parameter(mut self) -> Property {
        self.parameter = true;
        self
    }
}

/// One difference between the desired and the current state.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The property.
    pub property: String,
    /// Its value before (`null` if it had none).
    pub old: Value,
    /// Its value after.
    pub new: Value,
}

impl Change {
    /// A change of `property` from `old` to `new`.
    pub fn new(property: &str, old: Value, new: Value) -> Change {
        Change {
            property: property.to_string(),
            old,
            new,
        }
    }

    /// As the reply shows it.
    pub fn to_json(&self) -> Value {
        json!({"property": self.property, "old": self.old, "new": self.new})
    }
}

/// Why a request was refused or failed. The agent maps each to a reply status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Bad input (status 4): names the property.
    #[error("{property}: {message}")]
    Invalid {
        /// The property at fault.
        property: String,
        /// What is wrong with it.
        message: String,
    },
    /// A required input is missing (status 3).
    #[error("{property}: {message}")]
    Missing {
        /// The missing property.
        property: String,
        /// Why it is needed.
        message: String,
    },
    /// Refused by the node's settings (status 1), nothing touched.
    #[error("{0}")]
    Denied(String),
    /// The change was tried and failed (status 1).
    #[error("{0}")]
    Failed(String),
}

impl Failure {
    /// Status 4 for `property`.
    pub fn invalid(property: &str, message: impl Into<String>) -> Failure {
        Failure::Invalid {
            property: property.to_string(),
            message: message.into(),
        }
    }

    /// Status 3 for `property`.
    pub fn missing(property: &str, message: impl Into<String>) -> Failure {
        Failure::Missing {
            property: property.to_string(),
            message: message.into(),
        }
    }

    /// Status 1: the work failed.
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure::Failed(message.into())
    }

    /// Status 1 for an I/O error on `what`.
    pub fn io(what: &std::path::Path, err: std::io::Error) -> Failure {
        Failure::Failed(format!("{}: {err}", what.display()))
    }
}

/// The message for a refused item of a list input that may carry secrets
/// (`environment`, `options`): it names the item by its position (the first
/// is item 1), never by its text, since a malformed item may be a value
/// pasted in the wrong place and even a variable's name can say too much.
/// Failures reach the reply, the audit log's `statusmsg` and the logs.
pub fn bad_item(index: usize, why: &str) -> String {
    format!("item {} {why}", index + 1)
}

/// Parses a boolean as operators write it.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Normalises a mode: octal digits only, at most 4, written with 4 digits.
pub fn parse_mode(s: &str) -> Option<String> {
    let t = s.trim();
    if t.is_empty() || t.len() > 4 || !t.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let n = u32::from_str_radix(t, 8).ok()?;
    Some(format!("{n:04o}"))
}

/// Turns one raw input (text, or an already typed JSON value) into the
/// property's normal form, or says what is wrong with it.
pub fn normalise(prop: &Property, raw: &Value) -> Result<Value, Failure> {
    let text = match raw {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Null => return Err(Failure::invalid(prop.name, "must have a value")),
        Value::Object(_) => return Err(Failure::invalid(prop.name, "must not be an object")),
    };
    if prop.sensitive && !matches!(prop.kind, Kind::Text | Kind::List | Kind::OrderedList) {
        // Never echo a secret in the error of a kind that quotes its input.
        return normalise(
            &Property {
                sensitive: false,
                ..*prop
            },
            raw,
        )
        .map_err(|_| Failure::invalid(prop.name, "is not a valid value"));
    }
    match prop.kind {
        Kind::Text => Ok(Value::String(text)),
        Kind::Integer => text
            .trim()
            .parse::<i64>()
            .map(|n| json!(n))
            .map_err(|_| Failure::invalid(prop.name, format!("{text:?} is not a whole number"))),
        Kind::Boolean => parse_bool(&text)
            .map(Value::Bool)
            .ok_or_else(|| Failure::invalid(prop.name, format!("{text:?} is not true or false"))),
        Kind::List | Kind::OrderedList => Ok(json!(split_list(&text))),
        Kind::Mode => parse_mode(&text).map(Value::String).ok_or_else(|| {
            Failure::invalid(prop.name, format!("{text:?} is not an octal file mode"))
        }),
        Kind::OneOf(words) => {
            let t = text.trim();
            if words.contains(&t) {
                Ok(Value::String(t.to_string()))
            } else {
                Err(Failure::invalid(
                    prop.name,
                    format!("{t:?} is not one of {}", words.join(", ")),
                ))
            }
        }
    }
}

/// Whether a current value satisfies a desired one under `kind`: lists as
/// sets (or in order), numbers whether given as text or number.
pub fn same(kind: Kind, want: &Value, have: &Value) -> bool {
    match kind {
        Kind::List => {
            let mut a = strings(want);
            let mut b = strings(have);
            a.sort();
            a.dedup();
            b.sort();
            b.dedup();
            a == b
        }
        Kind::OrderedList => strings(want) == strings(have),
        Kind::Integer => want.as_i64().is_some() && want.as_i64() == have.as_i64(),
        _ => want == have,
    }
}

/// A list value's items as text.
pub fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Value::Null => Vec::new(),
        Value::String(s) => split_list(s),
        other => vec![other.to_string()],
    }
}

/// A state with just `ensure`.
pub fn absent() -> State {
    let mut s = State::new();
    s.insert("ensure".into(), json!("absent"));
    s
}

/// `state["ensure"]` as text (`absent` when missing).
pub fn ensure_of(state: &State) -> &str {
    state
        .get("ensure")
        .and_then(Value::as_str)
        .unwrap_or("absent")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_normalise_to_four_octal_digits() {
        assert_eq!(parse_mode("644").as_deref(), Some("0644"));
        assert_eq!(parse_mode("0755").as_deref(), Some("0755"));
        assert_eq!(parse_mode("4755").as_deref(), Some("4755"));
        assert_eq!(parse_mode("0888"), None);
        assert_eq!(parse_mode("u+x"), None);
        assert_eq!(parse_mode("07777"), None);
    }

    #[test]
    fn normalise_names_the_property() {
        let p = Property::new("uid", Kind::Integer);
        assert_eq!(normalise(&p, &json!("1001")).unwrap(), json!(1001));
        let e = normalise(&p, &json!("abc")).unwrap_err();
        assert_eq!(e.to_string(), "uid: \"abc\" is not a whole number");
        let p = Property::new("ensure", Kind::OneOf(&["present", "absent"]));
        assert!(normalise(&p, &json!("gone")).is_err());
        let p = Property::new("groups", Kind::List);
        assert_eq!(
            normalise(&p, &json!("a, b,,c")).unwrap(),
            json!(["a", "b", "c"])
        );
    }

    #[test]
    fn lists_compare_as_sets_unless_ordered() {
        assert!(same(Kind::List, &json!(["b", "a"]), &json!(["a", "b"])));
        assert!(!same(
            Kind::OrderedList,
            &json!(["b", "a"]),
            &json!(["a", "b"])
        ));
        assert!(same(Kind::Integer, &json!(5), &json!(5)));
        assert!(!same(Kind::Integer, &json!(5), &json!(6)));
    }
}

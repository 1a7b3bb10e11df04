//! The facts model: a JSON object per node, nested, addressed with dotted paths.

use serde_json::{Map, Value};

/// A node's facts.
pub type FactMap = Map<String, Value>;

/// The longest name [`check_fact_name`] accepts, in bytes.
pub const MAX_FACT_NAME_LEN: usize = 128;

/// Checks a fact name that an operator writes outside a YAML or JSON
/// document (a `key=value` line, a `[facts] value_files` key): it must be
/// non-empty, at most [`MAX_FACT_NAME_LEN`] bytes, and made only of ASCII
/// letters, digits, `_`, `-` and `.`, so that every such fact can be named
/// in a filter. A dotted name is one literal name, which [`lookup`] finds
/// as written; it is not split into nested facts.
///
/// The error says what is wrong, without repeating the name.
pub fn check_fact_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a fact name cannot be empty".to_owned());
    }
    if name.len() > MAX_FACT_NAME_LEN {
        return Err(format!(
            "a fact name is at most {MAX_FACT_NAME_LEN} bytes, this one has {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "a fact name holds only letters, digits, '_', '-' and '.', not {c:?}"
        ));
    }
    Ok(())
}

/// Looks up `path` in `facts`: first as a literal key (facts may contain dots
/// in their names), then by walking nested objects one dotted segment at a time.
pub fn lookup<'a>(facts: &'a FactMap, path: &str) -> Option<&'a Value> {
    if let Some(v) = facts.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = facts.get(parts.next()?)?;
    for part in parts {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Merges `src` into `dst`: objects merge key by key, anything else replaces.
pub fn merge(dst: &mut FactMap, src: FactMap) {
    for (k, v) in src {
        match (dst.get_mut(&k), v) {
            (Some(Value::Object(d)), Value::Object(s)) => merge(d, s),
            (_, v) => {
                dst.insert(k, v);
            }
        }
    }
}

/// Every leaf fact as `(dotted.path, value)`, sorted by path.
pub fn flatten(facts: &FactMap) -> Vec<(String, &Value)> {
    // `None` at the top: a nested fact under an empty key is `.name`, not
    // `name` (which would be another fact).
    fn walk<'a>(prefix: Option<&str>, m: &'a FactMap, out: &mut Vec<(String, &'a Value)>) {
        for (k, v) in m {
            let path = match prefix {
                None => k.clone(),
                Some(p) => format!("{p}.{k}"),
            };
            match v {
                Value::Object(inner) if !inner.is_empty() => walk(Some(&path), inner, out),
                _ => out.push((path, v)),
            }
        }
    }
    let mut out = Vec::new();
    walk(None, facts, &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_fact_under_an_empty_key_is_not_flattened_as_another() {
        let f: FactMap =
            serde_json::from_str(r#"{"": {"family": 12}, "family": "Debian"}"#).unwrap();
        let flat = flatten(&f);
        assert_eq!(
            flat.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            vec![".family", "family"]
        );
        assert_eq!(lookup(&f, "family"), Some(&serde_json::json!("Debian")));
    }

    use super::*;
    use serde_json::json;

    fn facts() -> FactMap {
        json!({"os": {"family": "Debian", "release": {"major": 12}}, "a.b": 1, "ips": ["x", "y"]})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn fact_names() {
        let longest = "n".repeat(MAX_FACT_NAME_LEN);
        for good in ["role", "ec2.instance-type", "A_1", "x", &longest] {
            assert_eq!(check_fact_name(good), Ok(()), "{good}");
        }
        let too_long = "n".repeat(MAX_FACT_NAME_LEN + 1);
        for (bad, why) in [
            ("", "cannot be empty"),
            ("a b", "not ' '"),
            ("r\u{f4}le", "not '\u{f4}'"),
            ("a=b", "not '='"),
            ("tab\t", r"not '\t'"),
            (&too_long, "at most 128 bytes, this one has 129"),
        ] {
            let e = check_fact_name(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn dotted_lookup() {
        let f = facts();
        assert_eq!(lookup(&f, "os.family"), Some(&json!("Debian")));
        assert_eq!(lookup(&f, "os.release.major"), Some(&json!(12)));
        assert_eq!(lookup(&f, "a.b"), Some(&json!(1)));
        assert_eq!(lookup(&f, "ips.1"), Some(&json!("y")));
        assert_eq!(lookup(&f, "os.nope"), None);
    }

    #[test]
    fn merge_is_deep() {
        let mut f = facts();
        merge(
            &mut f,
            json!({"os": {"name": "debian"}, "x": 1})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(lookup(&f, "os.family"), Some(&json!("Debian")));
        assert_eq!(lookup(&f, "os.name"), Some(&json!("debian")));
        let flat: Vec<String> = flatten(&f).into_iter().map(|(k, _)| k).collect();
        assert!(flat.contains(&"os.release.major".to_string()));
    }
}

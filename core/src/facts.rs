//! The facts model: a JSON object per node, nested, addressed with dotted paths.

use serde_json::{Map, Value};

/// A node's facts.
pub type FactMap = Map<String, Value>;

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
    fn walk<'a>(prefix: &str, m: &'a FactMap, out: &mut Vec<(String, &'a Value)>) {
        for (k, v) in m {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Object(inner) if !inner.is_empty() => walk(&path, inner, out),
                _ => out.push((path, v)),
            }
        }
    }
    let mut out = Vec::new();
    walk("", facts, &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> FactMap {
        json!({"os": {"family": "Debian", "release": {"major": 12}}, "a.b": 1, "ips": ["x", "y"]})
            .as_object()
            .unwrap()
            .clone()
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

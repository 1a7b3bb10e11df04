//! `mco resource` output: per-node change tables, Puppet-style resource
//! listings, and the fleet summary (`changed: 37, unchanged: 5`).

use std::io::{self, Write};

use serde_json::Value;

use super::{pad, NodeReply};
use mco_core::Status;

/// How the fleet came out of a `do`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Nodes where something changed.
    pub changed: usize,
    /// Nodes where something would change (noop).
    pub would_change: usize,
    /// Nodes already in the desired state.
    pub unchanged: usize,
    /// Nodes that refused or failed.
    pub failed: usize,
}

impl Tally {
    /// Counts replies to `do`.
    pub fn of(replies: &[NodeReply]) -> Tally {
        let mut t = Tally::default();
        for r in replies {
            let changes = r
                .data
                .get("changes")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if r.status != Status::Ok {
                t.failed += 1;
            } else if r.data.get("changed").and_then(Value::as_bool) == Some(true) {
                t.changed += 1;
            } else if changes > 0 {
                t.would_change += 1;
            } else {
                t.unchanged += 1;
            }
        }
        t
    }

    /// `changed: 37, unchanged: 5` (with `would change` and `failed` when any).
    pub fn line(&self) -> String {
        let mut parts = vec![format!("changed: {}", self.changed)];
        if self.would_change > 0 {
            parts.push(format!("would change (noop): {}", self.would_change));
        }
        parts.push(format!("unchanged: {}", self.unchanged));
        if self.failed > 0 {
            parts.push(format!("failed: {}", self.failed));
        }
        parts.join(", ")
    }
}

/// A value as a short cell: strings bare, `null` as `-`, lists comma separated.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "''".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn sorted(replies: &[NodeReply]) -> Vec<&NodeReply> {
    let mut v: Vec<&NodeReply> = replies.iter().collect();
    v.sort_by(|a, b| a.sender.cmp(&b.sender));
    v
}

/// The per-node result of `do`: for each node that changed (or would, or
/// failed) its change table; unchanged nodes only when `verbose`.
pub fn write_changes(w: &mut dyn Write, replies: &[NodeReply], verbose: bool) -> io::Result<()> {
    for r in sorted(replies) {
        if r.status != Status::Ok {
            writeln!(w, "{}: failed: {}", r.sender, r.message)?;
            continue;
        }
        let changes = r
            .data
            .get("changes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let noop = r.data.get("noop").and_then(Value::as_bool) == Some(true);
        if changes.is_empty() {
            if verbose {
                writeln!(w, "{}: unchanged", r.sender)?;
            }
            continue;
        }
        writeln!(
            w,
            "{}: {}",
            r.sender,
            if noop {
                "would change (noop)"
            } else {
                "changed"
            }
        )?;
        let rows: Vec<[String; 3]> = changes
            .iter()
            .map(|c| [cell(&c["property"]), cell(&c["old"]), cell(&c["new"])])
            .collect();
        let w0 = rows
            .iter()
            .map(|r| r[0].chars().count())
            .max()
            .unwrap_or(0)
            .max(8);
        let w1 = rows
            .iter()
            .map(|r| r[1].chars().count())
            .max()
            .unwrap_or(0)
            .max(3);
        writeln!(w, "    {} {} new", pad("property", w0), pad("old", w1))?;
        for row in rows {
            writeln!(
                w,
                "    {} {} {}",
                pad(&row[0], w0),
                pad(&row[1], w1),
                row[2]
            )?;
        }
    }
    Ok(())
}

/// One resource in Puppet's notation:
/// `user { 'deploy':` / `  ensure => 'present',` / `}`.
pub fn puppet(w: &mut dyn Write, ty: &str, state: &Value, indent: &str) -> io::Result<()> {
    let name = state.get("name").map(cell).unwrap_or_default();
    writeln!(w, "{indent}{ty} {{ '{name}':")?;
    if let Some(obj) = state.as_object() {
        let mut keys: Vec<&String> = obj.keys().filter(|k| *k != "name").collect();
        keys.sort_by_key(|k| (*k != "ensure", (*k).clone()));
        let width = keys.iter().map(|k| k.chars().count()).max().unwrap_or(0);
        for k in keys {
            let v = match &obj[k] {
                Value::String(s) => format!("'{}'", s.replace('\'', "\\'")),
                Value::Array(items) => format!(
                    "[{}]",
                    items
                        .iter()
                        .map(|i| format!("'{}'", cell(i)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                other => cell(other),
            };
            writeln!(w, "{indent}  {} => {v},", pad(k, width))?;
        }
    }
    writeln!(w, "{indent}}}")
}

/// The per-node result of `find`, then counts by `ensure`.
pub fn write_found(w: &mut dyn Write, ty: &str, replies: &[NodeReply]) -> io::Result<()> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for r in sorted(replies) {
        if r.status != Status::Ok {
            writeln!(w, "{}: failed: {}", r.sender, r.message)?;
            *counts.entry("failed".into()).or_default() += 1;
            continue;
        }
        writeln!(w, "{}:", r.sender)?;
        let state = r.data.get("resource").cloned().unwrap_or(Value::Null);
        puppet(w, ty, &state, "  ")?;
        let ensure = r.data.get("ensure").map(cell).unwrap_or_else(|| "-".into());
        *counts.entry(ensure).or_default() += 1;
    }
    let line: Vec<String> = counts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    writeln!(w)?;
    writeln!(w, "Summary: {}", line.join(", "))
}

/// The per-node result of `search`: names (or, when `verbose`, whole
/// resources), then the total.
pub fn write_search(
    w: &mut dyn Write,
    ty: &str,
    replies: &[NodeReply],
    verbose: bool,
) -> io::Result<()> {
    let mut total = 0u64;
    for r in sorted(replies) {
        if r.status != Status::Ok {
            writeln!(w, "{}: failed: {}", r.sender, r.message)?;
            continue;
        }
        let items = r
            .data
            .get("resources")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let count = r.data.get("count").and_then(Value::as_u64).unwrap_or(0);
        total += count;
        let cut = if r.data.get("truncated").and_then(Value::as_bool) == Some(true) {
            format!(" (first {} shown)", items.len())
        } else {
            String::new()
        };
        writeln!(w, "{}: {count} {ty}{cut}", r.sender)?;
        for item in &items {
            if verbose {
                puppet(w, ty, item, "  ")?;
            } else {
                let name = item.get("name").map(cell).unwrap_or_default();
                let ensure = item.get("ensure").map(cell).unwrap_or_default();
                writeln!(w, "  {} {ensure}", pad(&name, 32))?;
            }
        }
    }
    writeln!(w)?;
    writeln!(
        w,
        "Summary: {total} {ty} resources on {} nodes",
        replies.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::testutil::{ok, render, reply};
    use serde_json::json;

    fn replies() -> Vec<NodeReply> {
        vec![
            ok(
                "web-2",
                json!({"changed": true, "noop": false, "ensure": "present",
                       "changes": [{"property": "ensure", "old": "absent", "new": "present"},
                                   {"property": "shell", "old": null, "new": "/bin/bash"}]}),
            ),
            ok(
                "web-1",
                json!({"changed": false, "noop": false, "changes": []}),
            ),
            reply(
                "db-1",
                Status::Aborted,
                "type user is not managed on this node",
                json!({}),
                5,
            ),
        ]
    }

    #[test]
    fn tally_counts_each_outcome() {
        let t = Tally::of(&replies());
        assert_eq!(t.line(), "changed: 1, unchanged: 1, failed: 1");
        let noop = vec![ok(
            "a",
            json!({"changed": false, "noop": true,
                   "changes": [{"property": "uid", "old": 1, "new": 2}]}),
        )];
        assert_eq!(
            Tally::of(&noop).line(),
            "changed: 0, would change (noop): 1, unchanged: 0"
        );
    }

    #[test]
    fn change_tables_list_changed_and_failed_nodes() {
        let text = render(|w| write_changes(w, &replies(), false));
        assert_eq!(
            text,
            "db-1: failed: type user is not managed on this node\n\
             web-2: changed\n    \
             property old    new\n    \
             ensure   absent present\n    \
             shell    -      /bin/bash\n"
        );
        let text = render(|w| write_changes(w, &replies(), true));
        assert!(text.contains("web-1: unchanged\n"), "{text}");
    }

    #[test]
    fn resources_print_in_puppet_notation() {
        let r = vec![ok(
            "n1",
            json!({"ensure": "present",
                   "resource": {"name": "deploy", "ensure": "present", "uid": 1001, "groups": ["adm", "web"]}}),
        )];
        let text = render(|w| write_found(w, "user", &r));
        assert_eq!(
            text,
            "n1:\n  user { 'deploy':\n    ensure => 'present',\n    groups => ['adm', 'web'],\n    uid    => 1001,\n  }\n\nSummary: present: 1\n"
        );
    }
}

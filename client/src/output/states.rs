//! Each node's final state after `--retry`: in `-j` output, a `state` and `tries` on every
//! reply and a row for every node that never replied or was not discovered; in text, the nodes
//! that answered only to a re-send and those that never did.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::{json, Value};

use super::{by_sender, canonical, NodeReply};
use crate::retry::FinalState;

/// Writes the replies and the silent nodes as one JSON array, sorted by node.
pub fn write_json_states(
    w: &mut dyn Write,
    agent: &str,
    action: &str,
    replies: &[NodeReply],
    states: &BTreeMap<String, FinalState>,
) -> io::Result<()> {
    let mut rows: BTreeMap<&str, Value> = BTreeMap::new();
    for r in by_sender(replies) {
        let mut row = json!({
            "sender": r.sender,
            "agent": agent,
            "action": action,
            "statuscode": r.status.code(),
            "statusmsg": r.message,
            "data": canonical(&Value::Object(r.data.clone())),
        });
        if let (Some(obj), Some(Value::Object(state))) = (
            row.as_object_mut(),
            states
                .get(&r.sender)
                .map(|s| serde_json::to_value(s).unwrap_or_default()),
        ) {
            obj.extend(state);
        }
        rows.insert(&r.sender, row);
    }
    for (node, state) in states {
        if rows.contains_key(node.as_str()) {
            continue;
        }
        let mut row = json!({ "sender": node, "agent": agent, "action": action });
        if let (Some(obj), Ok(Value::Object(s))) =
            (row.as_object_mut(), serde_json::to_value(state))
        {
            obj.extend(s);
        }
        rows.insert(node, row);
    }
    let rows: Vec<Value> = rows.into_values().collect();
    serde_json::to_writer_pretty(&mut *w, &rows).map_err(io::Error::from)?;
    writeln!(w)
}

/// Writes, after the summary, who answered only to a re-send and who never answered.
pub fn write_text_states(
    w: &mut dyn Write,
    tries: u32,
    states: &BTreeMap<String, FinalState>,
) -> io::Result<()> {
    let late: Vec<String> = states
        .iter()
        .filter_map(|(n, s)| match s {
            FinalState::Replied { tries } if *tries > 1 => Some(format!("{n} (try {tries})")),
            _ => None,
        })
        .collect();
    let silent: Vec<&str> = states
        .iter()
        .filter(|(_, s)| matches!(s, FinalState::NoReply { .. }))
        .map(|(n, _)| n.as_str())
        .collect();
    let missing: Vec<&str> = states
        .iter()
        .filter(|(_, s)| matches!(s, FinalState::NotDiscovered))
        .map(|(n, _)| n.as_str())
        .collect();
    writeln!(w, "\nRequests sent: {tries} (--retry)")?;
    if !late.is_empty() {
        writeln!(w, "Replied to a re-send: {}", late.join(", "))?;
    }
    if !silent.is_empty() {
        writeln!(w, "No reply after {tries} tries: {}", silent.join(", "))?;
    }
    if !missing.is_empty() {
        writeln!(w, "Not discovered: {}", missing.join(", "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::testutil::{ok, render};

    fn states() -> BTreeMap<String, FinalState> {
        BTreeMap::from([
            ("a".to_string(), FinalState::Replied { tries: 1 }),
            ("b".to_string(), FinalState::Replied { tries: 3 }),
            ("c".to_string(), FinalState::NoReply { tries: 3 }),
            ("d".to_string(), FinalState::NotDiscovered),
        ])
    }

    #[test]
    fn json_gives_every_node_its_state() {
        let replies = [
            ok("b", serde_json::json!({})),
            ok("a", serde_json::json!({})),
        ];
        let out = render(|w| write_json_states(w, "rpcutil", "ping", &replies, &states()));
        let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
        let got: Vec<(String, String)> = rows
            .iter()
            .map(|r| {
                (
                    r["sender"].as_str().unwrap().to_string(),
                    r["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a", "replied"),
                ("b", "replied"),
                ("c", "no_reply"),
                ("d", "not_discovered")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(rows[1]["tries"], 3);
        assert_eq!(rows[0]["statuscode"], 0);
        assert!(rows[2].get("statuscode").is_none());
    }

    #[test]
    fn text_names_the_late_the_silent_and_the_missing() {
        let out = render(|w| write_text_states(w, 3, &states()));
        assert!(out.contains("Replied to a re-send: b (try 3)"), "{out}");
        assert!(out.contains("No reply after 3 tries: c"), "{out}");
        assert!(out.contains("Not discovered: d"), "{out}");
    }
}

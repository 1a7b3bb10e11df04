//! The reports of `mco ping` and `mco facts FACT`.
//!
//! Ping lists nodes fastest first, each identity padded to 40 columns with
//! its round-trip time, then min/max/average statistics. The fact report
//! counts how many successful replies carry each value of one fact, values
//! in sorted order (numbers numerically), with the nodes under each value
//! when verbose.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use mco_core::wire::Status;
use serde_json::Value;

use super::{millis, pad, plain, value_order, width, NodeReply, IDENTITY_WIDTH};

/// Writes one `time=… ms` line per reply, fastest first (ties by sender),
/// then the ping statistics; `No responses received` when there are none.
pub fn write_ping(w: &mut dyn Write, replies: &[NodeReply]) -> io::Result<()> {
    if replies.is_empty() {
        return writeln!(w, "No responses received");
    }
    let mut sorted: Vec<&NodeReply> = replies.iter().collect();
    sorted.sort_by(|a, b| a.rtt.cmp(&b.rtt).then_with(|| a.sender.cmp(&b.sender)));
    for r in &sorted {
        writeln!(
            w,
            "{} time={} ms",
            pad(&r.sender, IDENTITY_WIDTH),
            millis(r.rtt)
        )?;
    }
    let min = sorted.first().map_or(Duration::ZERO, |r| r.rtt);
    let max = sorted.last().map_or(Duration::ZERO, |r| r.rtt);
    let total: Duration = sorted.iter().map(|r| r.rtt).sum();
    let avg = total / sorted.len() as u32;
    writeln!(w)?;
    writeln!(w, "---- ping statistics ----")?;
    writeln!(
        w,
        "{} replies max: {} min: {} avg: {}",
        sorted.len(),
        millis(max),
        millis(min),
        millis(avg)
    )
}

/// How the fact report shows a value: strings raw, others compact JSON, a
/// missing or null value as `(none)`.
fn fact_value(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "(none)".to_string(),
        Some(v) => plain(v),
    }
}

/// Writes `Report for fact: FACT` and one `VALUE found N times` line per
/// distinct `data["value"]` among successful replies, sorted by value; with
/// `verbose`, the nodes holding each value under it, then a blank line.
pub fn write_fact_report(
    w: &mut dyn Write,
    fact: &str,
    replies: &[NodeReply],
    verbose: bool,
) -> io::Result<()> {
    let mut by_value: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for r in replies.iter().filter(|r| r.status == Status::Ok) {
        by_value
            .entry(fact_value(r.data.get("value")))
            .or_default()
            .push(&r.sender);
    }
    let mut rows: Vec<(String, Vec<&str>)> = by_value.into_iter().collect();
    rows.sort_by(|a, b| value_order(&a.0, &b.0));
    let value_width = rows.iter().map(|(v, _)| width(v)).max().unwrap_or(0);

    writeln!(w, "Report for fact: {fact}")?;
    writeln!(w)?;
    for (value, mut nodes) in rows {
        nodes.sort_unstable();
        writeln!(
            w,
            "   {}   found {} times",
            pad(&value, value_width),
            nodes.len()
        )?;
        if verbose {
            for node in nodes {
                writeln!(w, "      {node}")?;
            }
            writeln!(w)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::testutil::{ok, render, reply};
    use serde_json::json;

    #[test]
    fn ping_sorted_by_time_then_sender_with_statistics() {
        let r = [
            reply("c", Status::Ok, "OK", json!({}), 30_000),
            reply("b", Status::Ok, "OK", json!({}), 10_000),
            reply("a", Status::Ok, "OK", json!({}), 30_000),
            reply("d", Status::Ok, "OK", json!({}), 12_345),
        ];
        let out = render(|w| write_ping(w, &r));
        let expected = format!(
            "{} time=10.00 ms\n{} time=12.35 ms\n{} time=30.00 ms\n{} time=30.00 ms\n\
             \n---- ping statistics ----\n4 replies max: 30.00 min: 10.00 avg: 20.59\n",
            pad("b", 40),
            pad("d", 40),
            pad("a", 40),
            pad("c", 40)
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn ping_without_replies() {
        assert_eq!(render(|w| write_ping(w, &[])), "No responses received\n");
    }

    fn facts() -> Vec<NodeReply> {
        vec![
            ok("n3", json!({"value": "debian"})),
            ok("n1", json!({"value": "debian"})),
            ok("n2", json!({"value": "rhel"})),
            ok("n4", json!({"value": 12})),
            ok("n5", json!({})),
            ok("n6", json!({"value": ["a", 1]})),
            ok("n7", json!({"value": null})),
            reply("n8", Status::Aborted, "x", json!({"value": "debian"}), 1),
        ]
    }

    #[test]
    fn fact_report_counts_values() {
        let out = render(|w| write_fact_report(w, "os", &facts(), false));
        assert_eq!(
            out,
            "Report for fact: os\n\n\
             \x20  12        found 1 times\n\
             \x20  (none)    found 2 times\n\
             \x20  [\"a\",1]   found 1 times\n\
             \x20  debian    found 2 times\n\
             \x20  rhel      found 1 times\n"
        );
    }

    #[test]
    fn fact_report_verbose_lists_nodes() {
        let r: Vec<NodeReply> = facts()
            .into_iter()
            .filter(|r| r.data.get("value").is_some_and(Value::is_string))
            .collect();
        let out = render(|w| write_fact_report(w, "os", &r, true));
        assert_eq!(
            out,
            "Report for fact: os\n\n\
             \x20  debian   found 2 times\n      n1\n      n3\n\n\
             \x20  rhel     found 1 times\n      n2\n\n"
        );
    }
}

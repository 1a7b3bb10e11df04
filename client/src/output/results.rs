//! Per-node results of an RPC and the closing lines of a run.
//!
//! A node block is its identity padded to 40 columns — followed by the status
//! label when the action failed — then, for successful replies, one line per
//! output with labels right-aligned to a common width so values line up in a
//! column across every node. Objects and arrays of more than one element are
//! printed as indented JSON under that column; everything else on one line.

use std::io::{self, Write};

use mco_core::ddl::{Action, DisplayRule};
use mco_core::wire::Status;
use serde_json::Value;

use super::{by_sender, canonical, millis, pad, pad_left, plain, width, DisplayMode, NodeReply};
use super::{RunSummary, IDENTITY_WIDTH};

/// Spaces before each output label.
const LABEL_INDENT: usize = 3;
/// Column width of identities in the no-response and unexpected lists.
const LIST_WIDTH: usize = 30;
/// Identities per line in those lists.
const LIST_COLUMNS: usize = 4;

/// Writes each node's result, sorted by sender, as `mode` selects.
///
/// With [`DisplayMode::Ddl`] the action's `display` rule decides (every result
/// when there is no DDL); `verbose` shows every result and adds the status
/// message and round-trip time to each header. Only successful replies show
/// their outputs: the action's outputs first, in the DDL's key order, labelled
/// by `display_as`, then any keys the DDL does not declare, labelled by name.
pub fn write_results(
    w: &mut dyn Write,
    action: Option<&Action>,
    replies: &[NodeReply],
    mode: DisplayMode,
    verbose: bool,
) -> io::Result<()> {
    let shown: Vec<&NodeReply> = by_sender(replies)
        .into_iter()
        .filter(|r| verbose || is_shown(action, mode, r.status))
        .collect();
    let label_width = label_width(action, &shown);
    for r in shown {
        write_header(w, r, verbose)?;
        if r.status == Status::Ok {
            for (label, value) in outputs(action, r) {
                write_output(w, &label, value, label_width)?;
            }
        }
        writeln!(w)?;
    }
    Ok(())
}

/// Whether a reply with `status` is printed under `mode`.
fn is_shown(action: Option<&Action>, mode: DisplayMode, status: Status) -> bool {
    let ok = status == Status::Ok;
    match mode {
        DisplayMode::All => true,
        DisplayMode::Ok => ok,
        DisplayMode::Failed => !ok,
        DisplayMode::Ddl => match action.map(|a| a.display) {
            None | Some(DisplayRule::Always) => true,
            Some(DisplayRule::Ok) => ok,
            Some(DisplayRule::Failed) => !ok,
        },
    }
}

fn write_header(w: &mut dyn Write, r: &NodeReply, verbose: bool) -> io::Result<()> {
    let failed = r.status != Status::Ok;
    let mut line = pad(&r.sender, IDENTITY_WIDTH);
    if verbose {
        line.push(' ');
        line.push_str(r.status.label());
        if !r.message.is_empty() {
            line.push_str(": ");
            line.push_str(&r.message);
        }
        line.push_str(&format!(" ({} ms)", millis(r.rtt)));
    } else if failed {
        line.push(' ');
        line.push_str(r.status.label());
    }
    writeln!(w, "{}", line.trim_end())?;
    if failed && !verbose && !r.message.is_empty() {
        writeln!(w, "{}{}", " ".repeat(LABEL_INDENT), r.message)?;
    }
    Ok(())
}

/// The label of output `key`: its `display_as`, or the key itself.
fn label_of(action: Option<&Action>, key: &str) -> String {
    action
        .and_then(|a| a.output.get(key))
        .map(|o| o.display_as.as_str())
        .filter(|l| !l.is_empty())
        .unwrap_or(key)
        .to_string()
}

/// The widest label among the action's outputs and any undeclared keys of
/// the successful replies being shown.
fn label_width(action: Option<&Action>, shown: &[&NodeReply]) -> usize {
    let declared = action
        .into_iter()
        .flat_map(|a| a.output.keys())
        .map(|k| width(&label_of(action, k)));
    let extra = shown
        .iter()
        .filter(|r| r.status == Status::Ok)
        .flat_map(|r| r.data.keys())
        .filter(|k| action.is_none_or(|a| !a.output.contains_key(k.as_str())))
        .map(|k| width(k));
    declared.chain(extra).max().unwrap_or(0)
}

/// The labelled values of one reply, declared outputs first.
fn outputs<'a>(action: Option<&Action>, r: &'a NodeReply) -> Vec<(String, &'a Value)> {
    let declared = |k: &str| action.is_some_and(|a| a.output.contains_key(k));
    let mut out: Vec<(String, &Value)> = Vec::new();
    if let Some(a) = action {
        for key in a.output.keys() {
            if let Some(v) = r.data.get(key) {
                out.push((label_of(action, key), v));
            }
        }
    }
    let mut extra: Vec<(&String, &Value)> = r.data.iter().filter(|(k, _)| !declared(k)).collect();
    extra.sort_by(|a, b| a.0.cmp(b.0));
    out.extend(extra.into_iter().map(|(k, v)| (k.clone(), v)));
    out
}

fn write_output(
    w: &mut dyn Write,
    label: &str,
    value: &Value,
    label_width: usize,
) -> io::Result<()> {
    let indent = " ".repeat(LABEL_INDENT + label_width + 2);
    let text = match value {
        Value::Array(a) if a.len() > 1 => pretty(value),
        Value::Object(o) if o.len() > 1 => pretty(value),
        other => plain(other),
    };
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or("");
    let head = format!(
        "{}{}: {first}",
        " ".repeat(LABEL_INDENT),
        pad_left(label, label_width)
    );
    writeln!(w, "{}", head.trim_end())?;
    for line in lines {
        writeln!(w, "{}", format!("{indent}{line}").trim_end())?;
    }
    Ok(())
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(&canonical(v)).unwrap_or_else(|_| plain(v))
}

/// Writes the closing lines of a run: `Finished processing N / M hosts in X ms`
/// after a blank line, then the nodes that did not reply and those that
/// replied unexpectedly, each list sorted and laid out in columns.
pub fn write_summary(w: &mut dyn Write, s: &RunSummary) -> io::Result<()> {
    writeln!(w)?;
    writeln!(
        w,
        "Finished processing {} / {} hosts in {} ms",
        s.responded,
        s.discovered,
        s.elapsed.as_millis()
    )?;
    write_node_list(w, "No response from:", &s.no_response)?;
    write_node_list(w, "Unexpected response from:", &s.unexpected)?;
    Ok(())
}

/// A titled list of identities, four per line in 30-column cells, or one per
/// line when any identity is wider than a cell. Nothing when `nodes` is empty.
fn write_node_list(w: &mut dyn Write, title: &str, nodes: &[String]) -> io::Result<()> {
    if nodes.is_empty() {
        return Ok(());
    }
    let mut sorted: Vec<&str> = nodes.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    writeln!(w)?;
    writeln!(w, "{title}")?;
    writeln!(w)?;
    let per_line = if sorted.iter().any(|n| width(n) > LIST_WIDTH) {
        1
    } else {
        LIST_COLUMNS
    };
    for row in sorted.chunks(per_line) {
        let cells: Vec<String> = row.iter().map(|n| pad(n, LIST_WIDTH)).collect();
        let line = format!("{}{}", " ".repeat(LABEL_INDENT), cells.join(" "));
        writeln!(w, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::testutil::{action, ok, render, reply};
    use serde_json::json;
    use std::time::Duration;

    const STATUS: &str = r#"{"action": "status", "display": "failed",
        "output": {"status": {"description": "s", "display_as": "Service Status"},
                   "pid": {"description": "p", "display_as": "PID"}}}"#;

    fn replies() -> Vec<NodeReply> {
        vec![
            ok("web2", json!({"status": "running", "pid": 12})),
            reply("db1", Status::Aborted, "service is masked", json!({}), 2000),
            ok("web1", json!({"status": "stopped", "pid": 7})),
        ]
    }

    fn results(a: Option<&Action>, r: &[NodeReply], mode: DisplayMode, verbose: bool) -> String {
        render(|w| write_results(w, a, r, mode, verbose))
    }

    #[test]
    fn ddl_failed_rule_shows_only_failures() {
        let a = action(STATUS);
        let out = results(Some(&a), &replies(), DisplayMode::Ddl, false);
        assert_eq!(
            out,
            format!(
                "{} Request Aborted\n   service is masked\n\n",
                pad("db1", 40)
            )
        );
    }

    #[test]
    fn display_all_overrides_and_aligns_labels() {
        let a = action(STATUS);
        let out = results(Some(&a), &replies(), DisplayMode::All, false);
        let expected = format!(
            "{} Request Aborted\n   service is masked\n\n\
             web1\n              PID: 7\n   Service Status: stopped\n\n\
             web2\n              PID: 12\n   Service Status: running\n\n",
            pad("db1", 40)
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn display_ok_and_ddl_ok_rule_hide_failures() {
        let a = action(STATUS);
        let forced = results(Some(&a), &replies(), DisplayMode::Ok, false);
        assert!(forced.starts_with("web1\n"), "{forced}");
        assert!(!forced.contains("db1"), "{forced}");

        let a = action(&STATUS.replace("\"failed\"", "\"ok\""));
        let rule = results(Some(&a), &replies(), DisplayMode::Ddl, false);
        assert_eq!(rule, forced);
        let failed = results(Some(&a), &replies(), DisplayMode::Failed, false);
        assert!(failed.starts_with(&pad("db1", 40)), "{failed}");
        assert!(!failed.contains("web"), "{failed}");
    }

    #[test]
    fn every_failure_label() {
        let cases = [
            (Status::Aborted, "Request Aborted"),
            (Status::UnknownAction, "Unknown Action"),
            (Status::MissingData, "Missing Request Data"),
            (Status::InvalidData, "Invalid Request Data"),
            (Status::UnknownError, "Unknown Request Status"),
        ];
        for (status, label) in cases {
            let r = [reply("n", status, "why", json!({}), 1)];
            let out = results(None, &r, DisplayMode::All, false);
            assert_eq!(out, format!("{}{label}\n   why\n\n", pad("n", 41)));
        }
    }

    #[test]
    fn verbose_shows_all_with_message_and_rtt() {
        let a = action(STATUS);
        let r = [
            reply("b", Status::Ok, "OK", json!({"pid": 1}), 12_346),
            reply("a", Status::InvalidData, "bad pid", json!({}), 1_500),
        ];
        let out = results(Some(&a), &r, DisplayMode::Failed, true);
        let expected = format!(
            "{} Invalid Request Data: bad pid (1.50 ms)\n\n\
             {} OK: OK (12.35 ms)\n              PID: 1\n\n",
            pad("a", 40),
            pad("b", 40)
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn undeclared_keys_use_their_name_and_widen_labels() {
        let a = action(STATUS);
        let r = [ok("n", json!({"pid": 3, "extra_information": "x"}))];
        let out = results(Some(&a), &r, DisplayMode::All, false);
        assert_eq!(
            out,
            "n\n                 PID: 3\n   extra_information: x\n\n"
        );
    }

    #[test]
    fn without_ddl_every_key_is_shown() {
        let r = [
            ok("n", json!({"b": true, "a": null, "long": "x"})),
            reply("f", Status::Aborted, "", json!({}), 1),
        ];
        let out = results(None, &r, DisplayMode::Ddl, false);
        assert_eq!(
            out,
            format!(
                "{} Request Aborted\n\nn\n      a: null\n      b: true\n   long: x\n\n",
                pad("f", 40)
            )
        );
    }

    #[test]
    fn structured_and_multiline_values() {
        let r = [ok(
            "n",
            json!({"one": [1], "list": ["a", "b"], "map": {"y": 2, "x": 1},
                   "text": "l1\nl2", "empty": ""}),
        )];
        let out = results(None, &r, DisplayMode::All, false);
        let expected = "n\n\
            \x20  empty:\n\
            \x20   list: [\n\
            \x20           \"a\",\n\
            \x20           \"b\"\n\
            \x20         ]\n\
            \x20    map: {\n\
            \x20           \"x\": 1,\n\
            \x20           \"y\": 2\n\
            \x20         }\n\
            \x20    one: [1]\n\
            \x20   text: l1\n\
            \x20         l2\n\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn replies_of_failed_nodes_hide_their_data() {
        let r = [reply("n", Status::Aborted, "no", json!({"pid": 1}), 1)];
        let out = results(None, &r, DisplayMode::All, false);
        assert!(!out.contains("pid"), "{out}");
    }

    #[test]
    fn summary_line_only() {
        let s = RunSummary {
            discovered: 3,
            responded: 3,
            elapsed: Duration::from_micros(123_900),
            ..RunSummary::default()
        };
        let out = render(|w| write_summary(w, &s));
        assert_eq!(out, "\nFinished processing 3 / 3 hosts in 123 ms\n");
    }

    #[test]
    fn summary_lists_silent_nodes_in_columns() {
        let s = RunSummary {
            discovered: 7,
            responded: 2,
            elapsed: Duration::from_millis(2000),
            no_response: ["n5", "n3", "n1", "n2", "n4"].map(String::from).to_vec(),
            unexpected: vec!["stray".into()],
        };
        let out = render(|w| write_summary(w, &s));
        let expected = format!(
            "\nFinished processing 2 / 7 hosts in 2000 ms\n\
             \nNo response from:\n\n   {} {} {} n4\n   n5\n\
             \nUnexpected response from:\n\n   stray\n",
            pad("n1", 30),
            pad("n2", 30),
            pad("n3", 30)
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn long_identities_are_listed_one_per_line() {
        let long = "a-very-long-node-name.example.net".to_string();
        assert!(long.len() > 30);
        let s = RunSummary {
            discovered: 2,
            no_response: vec!["b".into(), long.clone()],
            ..RunSummary::default()
        };
        let out = render(|w| write_summary(w, &s));
        assert!(
            out.ends_with(&format!("No response from:\n\n   {long}\n   b\n")),
            "{out}"
        );
    }
}

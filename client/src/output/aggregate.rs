//! The DDL's aggregate summaries over all replies of a run.
//!
//! Each aggregate names a function and an output field. As MCollective does,
//! only successful replies take part — except `nagios_states`, whose input is
//! an exit code that failed replies carry too. A reply whose field is missing,
//! null or of a type the function cannot use is left out rather than failing
//! the report, and an unknown function gets a one-line note instead of a block.

use std::collections::BTreeMap;
use std::io::{self, Write};

use mco_core::ddl::{Action, Aggregate};
use mco_core::wire::Status;
use serde_json::Value;

use super::{by_sender, format_printf, pad_left, plain, plain_f64, value_order, width, NodeReply};

/// Spaces before each line of a summary block.
const INDENT: &str = "   ";

/// Nagios state names by exit code; anything else is the last one.
const NAGIOS_STATES: [&str; 4] = ["OK", "WARNING", "CRITICAL", "UNKNOWN"];

/// Writes one `Summary of <display_as>:` block per aggregate of `action`, in
/// DDL order, each followed by a blank line.
///
/// `summary` counts distinct values (array elements one by one), most common
/// first; `average` and `sum` add up numbers; `boolean_summary` counts true
/// and false under the labels given in its options; `nagios_states` counts
/// exit codes as OK, WARNING, CRITICAL and UNKNOWN. The options' `format`
/// (printf-like, see [`format_printf`]) shapes `summary`, `average` and `sum` values.
pub fn write_aggregates(
    w: &mut dyn Write,
    action: &Action,
    replies: &[NodeReply],
) -> io::Result<()> {
    let replies = by_sender(replies);
    for agg in &action.aggregate {
        let Some(field) = agg.field() else {
            writeln!(
                w,
                "Aggregate {:?} names no output field, skipped",
                agg.function
            )?;
            writeln!(w)?;
            continue;
        };
        let label = action
            .output
            .get(field)
            .map(|o| o.display_as.as_str())
            .filter(|l| !l.is_empty())
            .unwrap_or(field);
        let lines = match agg.function.as_str() {
            "summary" => summary(agg, field, &replies),
            "average" => average(agg, field, label, &replies),
            "sum" => sum(agg, field, label, &replies),
            "boolean_summary" => boolean_summary(agg, field, &replies),
            "nagios_states" => nagios_states(field, &replies),
            other => {
                writeln!(
                    w,
                    "Unknown aggregate function {other:?} for {label}, skipped"
                )?;
                writeln!(w)?;
                continue;
            }
        };
        writeln!(w, "Summary of {label}:")?;
        writeln!(w)?;
        if lines.is_empty() {
            writeln!(w, "{INDENT}No aggregate summary could be computed")?;
        }
        for line in lines {
            writeln!(w, "{INDENT}{line}")?;
        }
        writeln!(w)?;
    }
    Ok(())
}

/// The field's value in each successful reply that has it, non-null.
fn ok_values<'a>(
    field: &'a str,
    replies: &'a [&'a NodeReply],
) -> impl Iterator<Item = &'a Value> + 'a {
    replies
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter_map(move |r| r.data.get(field))
        .filter(|v| !v.is_null())
}

fn format_option(agg: &Aggregate) -> Option<&str> {
    agg.options()
        .and_then(|o| o.get("format"))
        .and_then(Value::as_str)
}

fn formatted(agg: &Aggregate, v: &Value) -> String {
    match format_option(agg) {
        Some(fmt) => format_printf(fmt, v),
        None => plain(v),
    }
}

/// `value = count` lines with the values right-aligned to the widest one.
fn counted_lines(counts: Vec<(String, usize)>) -> Vec<String> {
    let w = counts.iter().map(|(v, _)| width(v)).max().unwrap_or(0);
    counts
        .into_iter()
        .map(|(v, n)| format!("{} = {n}", pad_left(&v, w)))
        .collect()
}

fn summary(agg: &Aggregate, field: &str, replies: &[&NodeReply]) -> Vec<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for v in ok_values(field, replies) {
        let items = match v {
            Value::Array(a) => a.iter().filter(|e| !e.is_null()).collect(),
            one => vec![one],
        };
        for item in items {
            *counts.entry(formatted(agg, item)).or_default() += 1;
        }
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| value_order(&a.0, &b.0)));
    counted_lines(counts)
}

/// The numbers among the field's values; other types are left out.
fn numbers<'a>(field: &'a str, replies: &'a [&'a NodeReply]) -> Vec<&'a serde_json::Number> {
    ok_values(field, replies)
        .filter_map(|v| match v {
            Value::Number(n) => Some(n),
            _ => None,
        })
        .collect()
}

fn average(agg: &Aggregate, field: &str, label: &str, replies: &[&NodeReply]) -> Vec<String> {
    let ns = numbers(field, replies);
    if ns.is_empty() {
        return Vec::new();
    }
    let total: f64 = ns.iter().filter_map(|n| n.as_f64()).sum();
    let avg = total / ns.len() as f64;
    let text = match format_option(agg) {
        Some(fmt) => format_printf(fmt, &Value::from(avg)),
        None => plain_f64(avg),
    };
    vec![format!("Average of {label}: {text}")]
}

fn sum(agg: &Aggregate, field: &str, label: &str, replies: &[&NodeReply]) -> Vec<String> {
    let ns = numbers(field, replies);
    if ns.is_empty() {
        return Vec::new();
    }
    let whole: Option<i128> = ns.iter().try_fold(0i128, |acc, n| {
        let i = n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))?;
        acc.checked_add(i)
    });
    let value = match whole.and_then(|t| i64::try_from(t).ok()) {
        Some(t) => Value::from(t),
        None => Value::from(ns.iter().filter_map(|n| n.as_f64()).sum::<f64>()),
    };
    let text = match (format_option(agg), &value) {
        (Some(fmt), v) => format_printf(fmt, v),
        (None, Value::Number(n)) if n.is_f64() => plain_f64(n.as_f64().unwrap_or_default()),
        (None, v) => plain(v),
    };
    vec![format!("Sum of {label}: {text}")]
}

fn boolean_summary(agg: &Aggregate, field: &str, replies: &[&NodeReply]) -> Vec<String> {
    let (mut yes, mut no) = (0usize, 0usize);
    for v in ok_values(field, replies) {
        match v {
            Value::Bool(true) => yes += 1,
            Value::Bool(false) => no += 1,
            _ => {}
        }
    }
    if yes + no == 0 {
        return Vec::new();
    }
    let label = |key: &str, default: &str| {
        agg.options()
            .and_then(|o| o.get(key))
            .filter(|v| !v.is_null())
            .map(plain)
            .unwrap_or_else(|| default.to_string())
    };
    let mut counts = vec![(label("true", "True"), yes), (label("false", "False"), no)];
    // Stable: on equal counts, true stays first.
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counted_lines(counts)
}

fn nagios_states(field: &str, replies: &[&NodeReply]) -> Vec<String> {
    let mut counts = [0usize; 4];
    let mut any = false;
    for v in replies.iter().filter_map(|r| r.data.get(field)) {
        let Value::Number(n) = v else { continue };
        let state = match (n.as_i64(), n.is_u64()) {
            (Some(code @ 0..=2), _) => code as usize,
            (Some(_), _) | (None, true) => 3,
            (None, false) => continue,
        };
        counts[state] += 1;
        any = true;
    }
    if !any {
        return Vec::new();
    }
    counted_lines(
        NAGIOS_STATES
            .iter()
            .zip(counts)
            .map(|(s, n)| (s.to_string(), n))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::testutil::{action, ok, render, reply};
    use serde_json::json;

    fn aggregates(outputs: &str, aggregate: &str, replies: &[NodeReply]) -> String {
        let a = action(&format!(
            r#"{{"action": "go", "output": {outputs}, "aggregate": {aggregate}}}"#
        ));
        render(|w| write_aggregates(w, &a, replies))
    }

    const VERSION: &str = r#"{"version": {"description": "v", "display_as": "Version"}}"#;

    #[test]
    fn summary_counts_values_most_common_first() {
        let r = [
            ok("a", json!({"version": "1.2.3"})),
            ok("b", json!({"version": "10.0"})),
            ok("c", json!({"version": "1.2.3"})),
            ok("d", json!({"version": "2.0"})),
            reply("e", Status::Aborted, "x", json!({"version": "9.9"}), 1),
        ];
        let out = aggregates(
            VERSION,
            r#"[{"function": "summary", "args": ["version"]}]"#,
            &r,
        );
        assert_eq!(
            out,
            "Summary of Version:\n\n   1.2.3 = 2\n     2.0 = 1\n    10.0 = 1\n\n"
        );
    }

    #[test]
    fn summary_counts_array_elements_one_by_one() {
        let r = [
            ok("a", json!({"version": ["web", "db"]})),
            ok("b", json!({"version": ["web"]})),
            ok("c", json!({"version": "web"})),
        ];
        let out = aggregates(
            VERSION,
            r#"[{"function": "summary", "args": ["version"]}]"#,
            &r,
        );
        assert_eq!(out, "Summary of Version:\n\n   web = 3\n    db = 1\n\n");
    }

    #[test]
    fn summary_applies_format_before_counting() {
        let r = [
            ok("a", json!({"version": 1.24})),
            ok("b", json!({"version": 1.21})),
            ok("c", json!({"version": 3})),
        ];
        let out = aggregates(
            VERSION,
            r#"[{"function": "summary", "args": ["version", {"format": "%.1f GB"}]}]"#,
            &r,
        );
        assert_eq!(
            out,
            "Summary of Version:\n\n   1.2 GB = 2\n   3.0 GB = 1\n\n"
        );
    }

    const LOAD: &str = r#"{"load": {"description": "l", "display_as": "Load"}}"#;

    fn loads() -> Vec<NodeReply> {
        vec![
            ok("a", json!({"load": 1})),
            ok("b", json!({"load": 2.5})),
            ok("c", json!({"load": "high"})),
            ok("d", json!({"other": 1})),
            ok("e", json!({"load": 0.2})),
            reply("f", Status::Aborted, "x", json!({"load": 100}), 1),
        ]
    }

    #[test]
    fn average_plain_and_formatted_skips_wrong_types() {
        let out = aggregates(
            LOAD,
            r#"[{"function": "average", "args": ["load"]}]"#,
            &loads(),
        );
        assert_eq!(out, "Summary of Load:\n\n   Average of Load: 1.233333\n\n");
        let out = aggregates(
            LOAD,
            r#"[{"function": "average", "args": ["load", {"format": "%.2f"}]}]"#,
            &loads(),
        );
        assert_eq!(out, "Summary of Load:\n\n   Average of Load: 1.23\n\n");
    }

    #[test]
    fn sum_plain_integer_float_and_formatted() {
        let ints = [ok("a", json!({"load": 2})), ok("b", json!({"load": 40}))];
        let out = aggregates(LOAD, r#"[{"function": "sum", "args": ["load"]}]"#, &ints);
        assert_eq!(out, "Summary of Load:\n\n   Sum of Load: 42\n\n");

        let out = aggregates(LOAD, r#"[{"function": "sum", "args": ["load"]}]"#, &loads());
        assert_eq!(out, "Summary of Load:\n\n   Sum of Load: 3.7\n\n");

        let out = aggregates(
            LOAD,
            r#"[{"function": "sum", "args": ["load", {"format": "%d units"}]}]"#,
            &loads(),
        );
        assert_eq!(out, "Summary of Load:\n\n   Sum of Load: 3 units\n\n");
    }

    #[test]
    fn nothing_to_aggregate_says_so() {
        let r = [ok("a", json!({"load": "n/a"}))];
        let out = aggregates(LOAD, r#"[{"function": "average", "args": ["load"]}]"#, &r);
        assert_eq!(
            out,
            "Summary of Load:\n\n   No aggregate summary could be computed\n\n"
        );
    }

    const CHANGED: &str = r#"{"changed": {"description": "c", "display_as": "Changed"}}"#;

    fn changes() -> Vec<NodeReply> {
        vec![
            ok("a", json!({"changed": true})),
            ok("b", json!({"changed": false})),
            ok("c", json!({"changed": true})),
            ok("d", json!({"changed": "yes"})),
            reply("e", Status::Aborted, "x", json!({"changed": false}), 1),
        ]
    }

    #[test]
    fn boolean_summary_with_labels() {
        let out = aggregates(
            CHANGED,
            r#"[{"function": "boolean_summary",
                 "args": ["changed", {"true": "Changed", "false": "Unchanged"}]}]"#,
            &changes(),
        );
        assert_eq!(
            out,
            "Summary of Changed:\n\n     Changed = 2\n   Unchanged = 1\n\n"
        );
    }

    #[test]
    fn boolean_summary_default_labels_and_order() {
        let r = [
            ok("a", json!({"changed": false})),
            ok("b", json!({"changed": false})),
            ok("c", json!({"changed": true})),
        ];
        let out = aggregates(
            CHANGED,
            r#"[{"function": "boolean_summary", "args": ["changed"]}]"#,
            &r,
        );
        assert_eq!(out, "Summary of Changed:\n\n   False = 2\n    True = 1\n\n");
    }

    #[test]
    fn nagios_states_count_every_reply_and_high_codes_as_unknown() {
        let outputs = r#"{"exitcode": {"description": "e", "display_as": "Exit Code"}}"#;
        let r = [
            ok("a", json!({"exitcode": 0})),
            ok("b", json!({"exitcode": 0})),
            reply("c", Status::Aborted, "warn", json!({"exitcode": 1}), 1),
            reply("d", Status::Aborted, "crit", json!({"exitcode": 2}), 1),
            reply("e", Status::Aborted, "odd", json!({"exitcode": 7}), 1),
            ok("f", json!({"exitcode": "0"})),
            ok("g", json!({})),
        ];
        let out = aggregates(
            outputs,
            r#"[{"function": "nagios_states", "args": ["exitcode"]}]"#,
            &r,
        );
        assert_eq!(
            out,
            "Summary of Exit Code:\n\n\
             \x20        OK = 2\n\
             \x20   WARNING = 1\n\
             \x20  CRITICAL = 1\n\
             \x20   UNKNOWN = 1\n\n"
        );
    }

    #[test]
    fn unknown_function_is_noted_and_others_still_print() {
        let r = [ok("a", json!({"load": 2}))];
        let out = aggregates(
            LOAD,
            r#"[{"function": "median", "args": ["load"]},
                {"function": "sum", "args": ["load"]}]"#,
            &r,
        );
        assert_eq!(
            out,
            "Unknown aggregate function \"median\" for Load, skipped\n\n\
             Summary of Load:\n\n   Sum of Load: 2\n\n"
        );
    }

    #[test]
    fn label_falls_back_to_field_name() {
        let outputs = r#"{"load": {"description": "l"}}"#;
        let r = [ok("a", json!({"load": 2}))];
        let out = aggregates(outputs, r#"[{"function": "sum", "args": ["load"]}]"#, &r);
        assert_eq!(out, "Summary of load:\n\n   Sum of load: 2\n\n");
    }

    #[test]
    fn result_does_not_depend_on_reply_order() {
        let mut r = loads();
        let a = aggregates(LOAD, r#"[{"function": "sum", "args": ["load"]}]"#, &r);
        r.reverse();
        let b = aggregates(LOAD, r#"[{"function": "sum", "args": ["load"]}]"#, &r);
        assert_eq!(a, b);
    }
}

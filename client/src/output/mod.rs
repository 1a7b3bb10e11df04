//! What the client prints: per-node results, aggregate summaries, the closing
//! lines of a run, JSON, ping and fact reports (ARCHITECTURE.md §5).
//!
//! Every writer takes any [`std::io::Write`] and never prints on its own, so
//! the binary decides where output goes and tests compare exact strings.
//! Replies arrive in whatever order the bus delivers them; each writer sorts
//! them first (by sender, or by round-trip time for ping), so the same set of
//! replies always prints the same bytes. Text layouts follow what MCollective
//! and Choria operators already read: identities padded to 40 columns,
//! right-aligned output labels, `Summary of …:` blocks and the
//! `Finished processing N / M hosts in X ms` line.

mod aggregate;
mod json;
mod printf;
mod report;
pub mod resource;
mod results;
mod states;

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use mco_core::wire::{ReplyBody, Status};
use serde_json::Value;

pub use aggregate::write_aggregates;
pub use json::write_json;
pub use printf::format_printf;
pub use report::{write_fact_report, write_ping};
pub use results::{write_results, write_summary};
pub use states::{write_json_states, write_text_states};

/// The column width identities are padded to, as MCollective prints them.
pub const IDENTITY_WIDTH: usize = 40;

/// One node's reply as the client keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeReply {
    /// The replying node's identity.
    pub sender: String,
    /// MCollective status code.
    pub status: Status,
    /// The status message (`OK` on success).
    pub message: String,
    /// Action outputs.
    pub data: serde_json::Map<String, Value>,
    /// Time from sending the request to receiving this reply.
    pub rtt: Duration,
}

impl NodeReply {
    /// Keeps what the output needs from a decoded reply body.
    pub fn from_body(body: ReplyBody, rtt: Duration) -> NodeReply {
        NodeReply {
            sender: body.sender,
            status: body.status,
            message: body.message,
            data: body.data,
            rtt,
        }
    }
}

/// Which results to print: the DDL's rule, or forced by `--display ok|failed|all`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DisplayMode {
    /// Follow the action's `display` rule; every result when there is no DDL.
    #[default]
    Ddl,
    /// Only successful results.
    Ok,
    /// Only failed results.
    Failed,
    /// Every result.
    All,
}

/// A `--display` value that is not `ok`, `failed` or `all`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown display mode {0:?}: expected ok, failed or all")]
pub struct UnknownDisplayMode(pub String);

impl FromStr for DisplayMode {
    type Err = UnknownDisplayMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ok" => Ok(DisplayMode::Ok),
            "failed" => Ok(DisplayMode::Failed),
            "all" | "always" => Ok(DisplayMode::All),
            other => Err(UnknownDisplayMode(other.to_string())),
        }
    }
}

impl fmt::Display for DisplayMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DisplayMode::Ddl => "ddl",
            DisplayMode::Ok => "ok",
            DisplayMode::Failed => "failed",
            DisplayMode::All => "all",
        })
    }
}

/// How a run went, for the closing lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Nodes discovered (the expected set).
    pub discovered: usize,
    /// Nodes that replied.
    pub responded: usize,
    /// Time from sending the request to the last reply or the timeout.
    pub elapsed: Duration,
    /// Expected nodes that did not reply.
    pub no_response: Vec<String>,
    /// Nodes that replied without being expected.
    pub unexpected: Vec<String>,
}

/// `s` followed by spaces up to `width` characters; unchanged when already as wide.
pub fn pad(s: &str, width: usize) -> String {
    let len = s.chars().count();
    let mut out = String::with_capacity(s.len() + width.saturating_sub(len));
    out.push_str(s);
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(len)));
    out
}

/// `s` preceded by spaces up to `width` characters; unchanged when already as wide.
fn pad_left(s: &str, width: usize) -> String {
    let len = s.chars().count();
    let mut out = " ".repeat(width.saturating_sub(len));
    out.push_str(s);
    out
}

/// Display width of `s` in characters.
fn width(s: &str) -> usize {
    s.chars().count()
}

/// Replies sorted by sender, for writers that list nodes.
fn by_sender(replies: &[NodeReply]) -> Vec<&NodeReply> {
    let mut sorted: Vec<&NodeReply> = replies.iter().collect();
    sorted.sort_by(|a, b| a.sender.cmp(&b.sender));
    sorted
}

/// A copy of `v` whose objects list their keys in sorted order at every depth,
/// so printed JSON does not depend on how the map was filled.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&m[k.as_str()])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Compact JSON text with sorted keys.
fn compact(v: &Value) -> String {
    canonical(v).to_string()
}

/// A value as an operator reads it: strings raw, numbers plain, anything else compact JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => compact(other),
    }
}

/// A computed number: whole numbers without a fraction, others with up to six
/// decimals and no trailing zeros (so `0.1 + 0.2` prints `0.3`).
fn plain_f64(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let fixed = format!("{x:.6}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    match trimmed {
        "-0" => "0".to_string(),
        t => t.to_string(),
    }
}

/// Sort order for value texts: numbers first, numerically, then everything
/// else by its text. A total order, so sorting never depends on input order.
fn value_order(a: &str, b: &str) -> Ordering {
    let num = |s: &str| s.trim().parse::<f64>().ok().filter(|x| x.is_finite());
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Milliseconds with two decimals, as ping prints them.
fn millis(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use mco_core::ddl::{Action, Ddl};

    /// A reply with data given as a JSON object literal.
    pub fn reply(
        sender: &str,
        status: Status,
        message: &str,
        data: Value,
        rtt_us: u64,
    ) -> NodeReply {
        NodeReply {
            sender: sender.to_string(),
            status,
            message: message.to_string(),
            data: data.as_object().cloned().unwrap_or_default(),
            rtt: Duration::from_micros(rtt_us),
        }
    }

    /// An OK reply.
    pub fn ok(sender: &str, data: Value) -> NodeReply {
        reply(sender, Status::Ok, "OK", data, 1000)
    }

    /// The only action of a one-action DDL whose action body is given as JSON text.
    pub fn action(body: &str) -> Action {
        let text = format!(
            r#"{{"metadata": {{"name": "t", "description": "test agent"}},
                 "actions": [{body}]}}"#
        );
        let ddl = Ddl::from_json("t.json", &text).expect("test DDL loads");
        ddl.actions.into_iter().next().expect("one action")
    }

    /// Runs a writer into a string.
    pub fn render(f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
        let mut buf = Vec::new();
        f(&mut buf).expect("writing to a Vec succeeds");
        String::from_utf8(buf).expect("output is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pad_counts_characters_and_never_truncates() {
        assert_eq!(pad("ab", 5), "ab   ");
        assert_eq!(pad("été", 4), "été ");
        assert_eq!(pad("abcdef", 3), "abcdef");
        assert_eq!(pad_left("ab", 4), "  ab");
    }

    #[test]
    fn display_mode_parses_cli_words() {
        assert_eq!("ok".parse::<DisplayMode>(), Ok(DisplayMode::Ok));
        assert_eq!("failed".parse::<DisplayMode>(), Ok(DisplayMode::Failed));
        assert_eq!("all".parse::<DisplayMode>(), Ok(DisplayMode::All));
        assert_eq!(
            "some".parse::<DisplayMode>(),
            Err(UnknownDisplayMode("some".into()))
        );
        assert_eq!(DisplayMode::Failed.to_string(), "failed");
    }

    #[test]
    fn plain_values() {
        assert_eq!(plain(&json!("a b")), "a b");
        assert_eq!(plain(&json!(12)), "12");
        assert_eq!(plain(&json!(1.5)), "1.5");
        assert_eq!(plain(&json!(true)), "true");
        assert_eq!(plain(&json!(null)), "null");
        assert_eq!(plain(&json!({"b": 1, "a": [1, 2]})), r#"{"a":[1,2],"b":1}"#);
        assert_eq!(plain_f64(0.1 + 0.2), "0.3");
        assert_eq!(plain_f64(2.0), "2");
        assert_eq!(plain_f64(12.345), "12.345");
        assert_eq!(plain_f64(-0.0000001), "0");
    }

    #[test]
    fn value_order_puts_numbers_first_numerically() {
        let mut v = vec!["b", "10", "a", "9", "1a", "-1"];
        v.sort_by(|a, b| value_order(a, b));
        assert_eq!(v, ["-1", "9", "10", "1a", "a", "b"]);
    }

    #[test]
    fn from_body_keeps_reply_fields() {
        let body = ReplyBody {
            request_id: "r".into(),
            sender: "n1".into(),
            status: Status::MissingData,
            message: "missing x".into(),
            data: json!({"k": 1}).as_object().cloned().unwrap(),
            time_ms: 0,
            elapsed_us: 0,
        };
        let r = NodeReply::from_body(body, Duration::from_millis(3));
        assert_eq!(r.sender, "n1");
        assert_eq!(r.status, Status::MissingData);
        assert_eq!(r.message, "missing x");
        assert_eq!(r.data["k"], 1);
        assert_eq!(r.rtt, Duration::from_millis(3));
    }
}

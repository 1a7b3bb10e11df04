//! One aggregated check: each node's state, the counts, and the two ways of
//! printing them (`check_mco_nrpe`'s plugin output, `mco nrpe`'s report).

use std::fmt::Write as _;
use std::time::Duration;

use mco_core::wire::Status;
use serde_json::Value;

use super::perfdata;
use crate::output::NodeReply;

/// A Nagios state, ordered by exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// 0.
    Ok,
    /// 1.
    Warning,
    /// 2.
    Critical,
    /// 3.
    Unknown,
}

impl State {
    /// The state of a plugin exit code; anything outside 0–3 is UNKNOWN.
    pub fn from_code(code: i64) -> State {
        match code {
            0 => State::Ok,
            1 => State::Warning,
            2 => State::Critical,
            _ => State::Unknown,
        }
    }

    /// The name Nagios uses.
    pub fn name(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }

    /// The exit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// How bad, for ordering lists worst first: CRITICAL, WARNING, UNKNOWN, OK.
    fn badness(self) -> u8 {
        match self {
            State::Critical => 3,
            State::Warning => 2,
            State::Unknown => 1,
            State::Ok => 0,
        }
    }
}

/// One node's part in the check.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeCheck {
    /// The node.
    pub identity: String,
    /// Its state.
    pub state: State,
    /// The first line of its plugin output, or why there is none.
    pub output: String,
    /// The rest of its output.
    pub long_output: String,
    /// Its performance data.
    pub perfdata: String,
    /// Whether it answered.
    pub answered: bool,
}

fn text(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_string()
}

impl NodeCheck {
    /// A node's reply: the state from its `exitcode` (UNKNOWN when missing,
    /// as for a refused request), its output or the reply's message.
    pub fn from_reply(r: &NodeReply) -> NodeCheck {
        let code = r.data.get("exitcode").and_then(Value::as_i64);
        let state = code.map_or(State::Unknown, State::from_code);
        let mut output = text(r.data.get("output"));
        if output.is_empty() || code.is_none() {
            output = if r.status == Status::Ok {
                "(no output)".into()
            } else {
                format!("{}: {}", r.status.label(), r.message)
            };
        }
        NodeCheck {
            identity: r.sender.clone(),
            state,
            output,
            long_output: text(r.data.get("long_output")),
            perfdata: text(r.data.get("perfdata")),
            answered: true,
        }
    }

    /// A node that was asked and did not answer.
    pub fn silent(identity: &str, state: State, waited: Duration) -> NodeCheck {
        NodeCheck {
            identity: identity.to_string(),
            state,
            output: format!("no response within {:.1}s", waited.as_secs_f64()),
            long_output: String::new(),
            perfdata: String::new(),
            answered: false,
        }
    }
}

/// The result of one aggregated check.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The check's name.
    pub check: String,
    /// Every node asked, sorted by identity.
    pub nodes: Vec<NodeCheck>,
    /// Nodes `--expect` wanted beyond those discovered, and their state.
    pub missing: Option<(usize, State)>,
    /// How long the check took.
    pub elapsed: Duration,
    /// How often the connection to the broker was lost during the check.
    pub broker_lost: u32,
}

/// Text from a node made safe for the plugin output: a `|` would start
/// performance data, a line break (or any control or line-separator
/// character) would start a line of the node's choosing.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '|' => '/',
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => ' ',
            c => c,
        })
        .collect()
}

impl Report {
    /// Counts of OK, WARNING, CRITICAL and UNKNOWN, including missing nodes.
    pub fn counts(&self) -> [usize; 4] {
        let mut c = [0usize; 4];
        for n in &self.nodes {
            c[n.state as usize] += 1;
        }
        if let Some((n, state)) = self.missing {
            c[state as usize] += n;
        }
        c
    }

    /// Every node counted, including expected ones never discovered.
    pub fn total(&self) -> usize {
        self.counts().iter().sum()
    }

    /// The overall state: CRITICAL if any, else WARNING if any, else UNKNOWN
    /// if any, else OK.
    pub fn state(&self) -> State {
        let c = self.counts();
        if c[2] > 0 {
            State::Critical
        } else if c[1] > 0 {
            State::Warning
        } else if c[3] > 0 {
            State::Unknown
        } else {
            State::Ok
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        self.state().code()
    }

    /// The nodes in `state`, sorted.
    pub fn hosts(&self, state: State) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| n.state == state)
            .map(|n| n.identity.as_str())
            .collect()
    }

    /// Non-OK nodes, worst first, then by identity.
    fn problems(&self) -> Vec<&NodeCheck> {
        let mut p: Vec<&NodeCheck> = self.nodes.iter().filter(|n| n.state != State::Ok).collect();
        p.sort_by(|a, b| {
            b.state
                .badness()
                .cmp(&a.state.badness())
                .then_with(|| a.identity.cmp(&b.identity))
        });
        p
    }

    /// `OK: a WARNING: b CRITICAL: c UNKNOWN: d`.
    pub fn summary(&self) -> String {
        let c = self.counts();
        format!(
            "OK: {} WARNING: {} CRITICAL: {} UNKNOWN: {}",
            c[0], c[1], c[2], c[3]
        )
    }

    /// The performance data of line 1: counts, check time and each label's
    /// min/avg/max across the nodes that answered.
    pub fn perfdata(&self) -> String {
        let c = self.counts();
        let mut items = vec![
            format!("total={}", self.total()),
            format!("ok={}", c[0]),
            format!("warning={}", c[1]),
            format!("critical={}", c[2]),
            format!("unknown={}", c[3]),
            format!("checktime={:.3}s", self.elapsed.as_secs_f64()),
        ];
        let agg = perfdata::aggregate_counted(self.answered_perfdata());
        items.extend(perfdata::render(&agg.stats));
        items.join(" ")
    }

    fn answered_perfdata(&self) -> impl Iterator<Item = &str> {
        self.nodes
            .iter()
            .filter(|n| n.answered)
            .map(|n| n.perfdata.as_str())
    }

    /// Lines saying which performance data was left out of line 1: items
    /// refused for a label or unit Nagios would misread (per node), and
    /// labels beyond [`perfdata::MAX_LABELS`].
    fn perfdata_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for n in self.nodes.iter().filter(|n| n.answered) {
            let refused = perfdata::parse_checked(&n.perfdata).refused;
            if refused > 0 {
                notes.push(format!(
                    "perfdata: {refused} item(s) from {} refused: a label or unit with characters Nagios would misread",
                    n.identity
                ));
            }
        }
        let left_out = perfdata::aggregate_counted(self.answered_perfdata()).labels_left_out;
        if left_out > 0 {
            notes.push(format!(
                "perfdata: {left_out} label(s) beyond the first {} left out",
                perfdata::MAX_LABELS
            ));
        }
        notes
    }

    /// The lines naming the hosts in each non-OK state, worst first, after
    /// one saying so if the connection to the broker was lost meanwhile.
    fn state_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.broker_lost > 0 {
            lines.push(crate::rpc::lost_words(self.broker_lost, "the check"));
        }
        for state in [State::Critical, State::Warning, State::Unknown] {
            let mut hosts: Vec<String> = self.hosts(state).iter().map(|h| h.to_string()).collect();
            if let Some((n, s)) = self.missing {
                if s == state {
                    hosts.push(format!("(+{n} expected, not discovered)"));
                }
            }
            if !hosts.is_empty() {
                lines.push(format!("{}: {}", state.name(), hosts.join(" ")));
            }
        }
        lines
    }

    /// The plugin output: line 1 with the counts and performance data, the
    /// host lists, then each non-OK host with its output (long output);
    /// `verbose` adds the OK hosts at the end.
    pub fn plugin_output(&self, verbose: bool) -> String {
        fit_nagios(&self.full_plugin_output(verbose), NAGIOS_OUTPUT_LIMIT)
    }

    fn full_plugin_output(&self, verbose: bool) -> String {
        let mut out = format!(
            "{}: {}|{}\n",
            clean(&self.check),
            self.summary(),
            self.perfdata()
        );
        for line in self.state_lines().into_iter().chain(self.perfdata_notes()) {
            out.push_str(&clean(&line));
            out.push('\n');
        }
        let oks = self
            .nodes
            .iter()
            .filter(|n| verbose && n.state == State::Ok);
        for n in self.problems().into_iter().chain(oks) {
            let _ = writeln!(
                out,
                "[{}] {}: {}",
                n.state.name(),
                clean(&n.identity),
                clean(&n.output)
            );
            for l in n.long_output.lines().filter(|l| !l.trim().is_empty()) {
                let _ = writeln!(out, "    {}", clean(l));
            }
        }
        out
    }

    /// `mco nrpe`'s report: non-OK nodes (every node with `verbose`) with
    /// their output, then the counts and host lists.
    pub fn text(&self, verbose: bool) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            if n.state == State::Ok && !verbose {
                continue;
            }
            let _ = writeln!(
                out,
                "{}{:<9} {}",
                crate::output::pad(&n.identity, crate::output::IDENTITY_WIDTH),
                n.state.name(),
                n.output
            );
            for l in n.long_output.lines().filter(|l| !l.trim().is_empty()) {
                let _ = writeln!(
                    out,
                    "{}{}",
                    " ".repeat(crate::output::IDENTITY_WIDTH + 10),
                    l
                );
            }
            if verbose && !n.perfdata.is_empty() {
                let _ = writeln!(
                    out,
                    "{}perfdata: {}",
                    " ".repeat(crate::output::IDENTITY_WIDTH + 10),
                    n.perfdata
                );
            }
        }
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "{}: {}", self.check, self.summary());
        for line in self.state_lines() {
            let _ = writeln!(out, "{line}");
        }
        out
    }
}

/// Nagios 4 keeps at most this many bytes of a plugin's output (its
/// `MAX_PLUGIN_OUTPUT_LENGTH`); the rest would be dropped without a word.
pub const NAGIOS_OUTPUT_LIMIT: usize = 8192;

/// `text` cut to `limit` bytes at a line boundary, the first line (state,
/// counts, performance data) always kept whole, with a last line saying how
/// much was left out.
pub fn fit_nagios(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut lines = text.lines();
    let mut out = String::with_capacity(limit);
    if let Some(first) = lines.next() {
        out.push_str(first);
        out.push('\n');
    }
    let rest: Vec<&str> = lines.collect();
    // Room for the note at the end.
    let room = limit.saturating_sub(120);
    let mut kept = 0;
    for line in &rest {
        if out.len() + line.len() + 1 > room {
            break;
        }
        out.push_str(line);
        out.push('\n');
        kept += 1;
    }
    let _ = writeln!(
        out,
        "... {} more lines cut to fit Nagios' {limit}-byte output limit; `mco nrpe` shows them all",
        rest.len() - kept
    );
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_output_is_cut_to_the_nagios_limit_keeping_line_one() {
        let first = format!("check: CRITICAL: 0 ...|{}", "x=1;2;3 ".repeat(40));
        let mut text = format!("{first}\n");
        for i in 0..2000 {
            text.push_str(&format!("[CRITICAL] node-{i:04}: CRITICAL - disk full\n"));
        }
        let cut = fit_nagios(&text, 8192);
        assert!(cut.len() <= 8192, "{}", cut.len());
        assert_eq!(cut.lines().next(), Some(first.as_str()));
        let last = cut.lines().last().unwrap();
        assert!(
            last.starts_with("... ") && last.contains("more lines cut"),
            "{last}"
        );
        let kept = cut.lines().count() - 2;
        assert!(
            last.starts_with(&format!("... {} more", 2000 - kept)),
            "{last}"
        );
        // Short output is untouched.
        assert_eq!(fit_nagios("a|b\nc\n", 8192), "a|b\nc\n");
    }

    use super::*;
    use serde_json::json;

    fn reply(sender: &str, status: Status, data: Value) -> NodeReply {
        NodeReply {
            sender: sender.into(),
            status,
            message: "msg".into(),
            data: data.as_object().cloned().unwrap_or_default(),
            rtt: Duration::ZERO,
        }
    }

    fn sample() -> Report {
        let mut nodes = vec![
            NodeCheck::from_reply(&reply(
                "web2",
                Status::Ok,
                json!({"exitcode": 0, "output": "OK - load 3.1", "perfdata": "load1=3.1;5;10"}),
            )),
            NodeCheck::from_reply(&reply(
                "web1",
                Status::Ok,
                json!({"exitcode": 0, "output": "OK - load 0.1", "perfdata": "load1=0.1;5;10"}),
            )),
            NodeCheck::from_reply(&reply(
                "db1",
                Status::Aborted,
                json!({"exitcode": 2, "output": "CRITICAL - a|b", "long_output": "detail 1\n\ndetail 2", "perfdata": "load1=12 x=1s"}),
            )),
            NodeCheck::from_reply(&reply(
                "odd",
                Status::Aborted,
                json!({"exitcode": 42, "output": "strange"}),
            )),
            NodeCheck::from_reply(&reply("denied", Status::InvalidData, json!({}))),
            NodeCheck::silent("gone", State::Unknown, Duration::from_millis(9500)),
        ];
        nodes.sort_by(|a, b| a.identity.cmp(&b.identity));
        Report {
            check: "check_load".into(),
            nodes,
            missing: Some((2, State::Unknown)),
            elapsed: Duration::from_millis(1234),
            broker_lost: 0,
        }
    }

    #[test]
    fn a_lost_broker_connection_is_said_under_the_first_line() {
        let mut r = sample();
        r.broker_lost = 1;
        let out = r.plugin_output(false);
        let second = out.lines().nth(1).unwrap();
        assert_eq!(
            second,
            "the connection to the broker was lost during the check; replies sent while it was down are lost, so nodes may be missing"
        );
        r.broker_lost = 2;
        assert!(r.text(false).contains("was lost 2 times during the check"));
    }

    #[test]
    fn plugin_output_per_the_guidelines() {
        let r = sample();
        assert_eq!(r.counts(), [2, 0, 1, 5]);
        assert_eq!(r.exit_code(), 2);
        let verbose = r.plugin_output(true);
        assert!(
            verbose.ends_with(
                "[UNKNOWN] odd: strange\n[OK] web1: OK - load 0.1\n[OK] web2: OK - load 3.1\n"
            ),
            "{verbose}"
        );
        assert_eq!(
            r.plugin_output(false),
            "check_load: OK: 2 WARNING: 0 CRITICAL: 1 UNKNOWN: 5|total=8 ok=2 warning=0 critical=1 unknown=5 checktime=1.234s \
             load1_min=0.1;;;; load1_avg=5.066667;;;; load1_max=12;;;; x_min=1s;;;; x_avg=1s;;;; x_max=1s;;;;\n\
             CRITICAL: db1\n\
             UNKNOWN: denied gone odd (+2 expected, not discovered)\n\
             [CRITICAL] db1: CRITICAL - a/b\n    detail 1\n    detail 2\n\
             [UNKNOWN] denied: Invalid Request Data: msg\n\
             [UNKNOWN] gone: no response within 9.5s\n\
             [UNKNOWN] odd: strange\n"
        );
    }

    /// N: a node's perfdata label with a newline, a unit with a `|`, and output with line
    /// breaks cannot add a line or a perfdata item to the plugin output; the refusal is said.
    #[test]
    fn a_node_cannot_forge_lines_or_perfdata() {
        let evil = reply(
            "db-01",
            Status::Aborted,
            json!({"exitcode": 2, "output": "CRITICAL\n[OK] db-02: fine\r\u{2028}x",
                   "long_output": "a\rb", "perfdata": "'x\n[OK] db-03: all good'=1 y=2|z=9 t=1s"}),
        );
        let r = Report {
            check: "check_db".into(),
            nodes: vec![NodeCheck::from_reply(&evil)],
            missing: None,
            elapsed: Duration::ZERO,
            broker_lost: 0,
        };
        assert_eq!(
            r.plugin_output(false),
            "check_db: OK: 0 WARNING: 0 CRITICAL: 1 UNKNOWN: 0|total=1 ok=0 warning=0 critical=1 unknown=0 checktime=0.000s \
             t_min=1s;;;; t_avg=1s;;;; t_max=1s;;;;\n\
             CRITICAL: db-01\n\
             perfdata: 2 item(s) from db-01 refused: a label or unit with characters Nagios would misread\n\
             [CRITICAL] db-01: CRITICAL [OK] db-02: fine  x\n    a b\n"
        );
    }

    #[test]
    fn overall_state_order() {
        let mk = |codes: &[i64]| Report {
            check: "c".into(),
            nodes: codes
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    NodeCheck::from_reply(&reply(
                        &format!("n{i}"),
                        Status::Ok,
                        json!({"exitcode": c, "output": "x"}),
                    ))
                })
                .collect(),
            missing: None,
            elapsed: Duration::ZERO,
            broker_lost: 0,
        };
        assert_eq!(mk(&[0, 0]).exit_code(), 0);
        assert_eq!(mk(&[0, 3]).exit_code(), 3);
        assert_eq!(mk(&[3, 1]).exit_code(), 1);
        assert_eq!(mk(&[1, 2, 3]).exit_code(), 2);
        assert_eq!(mk(&[0, -1]).exit_code(), 3);
        let mut r = mk(&[0]);
        r.missing = Some((1, State::Critical));
        assert_eq!((r.exit_code(), r.total()), (2, 2));
        assert_eq!(
            r.state_lines(),
            vec!["CRITICAL: (+1 expected, not discovered)"]
        );
    }

    #[test]
    fn mco_text_shows_problems_unless_verbose() {
        let r = sample();
        let t = r.text(false);
        assert!(!t.contains("web1"), "{t}");
        assert!(
            t.contains(&format!("{:<40}CRITICAL  CRITICAL - a|b\n", "db1")),
            "{t}"
        );
        assert!(t.ends_with("check_load: OK: 2 WARNING: 0 CRITICAL: 1 UNKNOWN: 5\nCRITICAL: db1\nUNKNOWN: denied gone odd (+2 expected, not discovered)\n"), "{t}");
        assert!(r
            .text(true)
            .contains(&format!("{:<40}OK        OK - load 0.1\n", "web1")));
    }
}

//! The RPC engine: send one request to a known set of nodes, in batches if
//! asked, and wait exactly until each has answered or the timeout passes.
//!
//! Whatever a node sends is kept within bounds: one reply per expected
//! node, the count and first few reasons of refused replies
//! ([`Refusals::KEPT`]), at most [`UNEXPECTED_KEPT`] names of nodes that
//! answered unasked. A listed node that the filter's identity patterns do
//! not select is not sent the request (it counts as not answering), and a
//! reply from such a sender is dropped ([`Senders`]).

use std::collections::HashSet;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use mco_core::wire::RequestBody;
use mco_core::Filter;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::bus::{Bus, To};
use crate::error::ClientError;
use crate::output::NodeReply;
use crate::senders::{outside_words, Senders};
use crate::target::Plan;
use crate::verify::{cut, dropped_words, reasons, Intake, Refusals, Rejected, REASON_MAX};

/// Most names of nodes that answered unasked kept by one call; more are
/// only counted.
pub const UNEXPECTED_KEPT: usize = 1_000;

/// What to call.
#[derive(Debug, Clone)]
pub struct Call {
    /// Collective.
    pub collective: String,
    /// Agent.
    pub agent: String,
    /// Action.
    pub action: String,
    /// Validated inputs.
    pub data: Map<String, Value>,
    /// The filter each node checks again.
    pub filter: Filter,
}

/// How to wait.
#[derive(Debug, Clone)]
pub struct Wait {
    /// Reply timeout per batch.
    pub timeout: Duration,
    /// Batch size and pause.
    pub batch: Option<(usize, Duration)>,
    /// Show a progress bar.
    pub progress: bool,
    /// Re-send to the nodes that did not answer (`--retry`).
    pub retry: Option<crate::retry::Retry>,
}

/// The replies of one call.
#[derive(Debug, Default)]
pub struct Collected {
    /// Replies from expected nodes.
    pub replies: Vec<NodeReply>,
    /// Expected nodes that did not answer, sorted.
    pub no_response: Vec<String>,
    /// Nodes that answered without being asked, sorted; at most
    /// [`UNEXPECTED_KEPT`].
    pub unexpected: Vec<String>,
    /// Further replies from nodes not asked, past [`UNEXPECTED_KEPT`]
    /// names: counted only.
    pub unexpected_more: usize,
    /// Replies that did not decode.
    pub undecodable: usize,
    /// The reasons of the first replies that failed verification (treated
    /// as no reply): at most [`Refusals::KEPT`], each cut short.
    pub untrusted: Vec<String>,
    /// How many replies failed verification.
    pub untrusted_count: usize,
    /// Replies from senders the filter's identity patterns do not select.
    pub outside: usize,
    /// Replies dropped unread because a node flooded the call.
    pub dropped: usize,
    /// Request ids sent, one per batch.
    pub request_ids: Vec<String>,
    /// How often the connection to the broker was lost during the call.
    pub broker_lost: u32,
    /// Requests sent to the nodes that had not answered: 1 without `--retry`.
    pub tries: u32,
    /// The try each node that answered on a re-send answered (absent: the first).
    pub answered_on: std::collections::BTreeMap<String, u32>,
}

impl Collected {
    /// What the operator must be told about this call, one line each:
    /// replies that failed verification (counted as no reply) or did not
    /// decode, replies from nodes outside the filter or not asked, replies
    /// dropped unread, and a connection to the broker lost during the call.
    /// A [`Session`](crate::session::Session) says them after every call.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.broker_lost > 0 {
            out.push(lost_words(self.broker_lost, "the call"));
        }
        out.extend(self.untrusted_line());
        if self.undecodable > 0 {
            out.push(format!(
                "ignored {} replies that did not decode",
                self.undecodable
            ));
        }
        if self.outside > 0 {
            out.push(outside_words(self.outside, "call"));
        }
        if self.unexpected_more > 0 {
            out.push(format!(
                "ignored {} more replies from nodes that were not asked (their names are not listed)",
                self.unexpected_more
            ));
        }
        if self.dropped > 0 {
            out.push(dropped_words(self.dropped));
        }
        out
    }

    /// The one line about replies that failed verification, if any did.
    pub fn untrusted_line(&self) -> Option<String> {
        (self.untrusted_count > 0).then(|| {
            format!(
                "ignored {} replies that failed verification (counted as no reply): {}",
                self.untrusted_count,
                reasons(self.untrusted_count, &self.untrusted)
            )
        })
    }

    /// Counts a reply that failed verification, keeping the first reasons.
    fn refuse(&mut self, why: String) {
        self.untrusted_count += 1;
        if self.untrusted.len() < Refusals::KEPT {
            self.untrusted.push(cut(&why, REASON_MAX));
        }
    }

    /// Notes that `sender` answered unasked, once per name and at most
    /// [`UNEXPECTED_KEPT`] names.
    fn unasked(&mut self, seen: &mut HashSet<String>, sender: String) {
        if seen.contains(&sender) {
            return;
        }
        if seen.len() >= UNEXPECTED_KEPT {
            self.unexpected_more += 1;
            return;
        }
        seen.insert(sender.clone());
        self.unexpected.push(sender);
    }
}

/// What to tell the operator when the connection to the broker was lost
/// `times` times during `what`.
pub fn lost_words(times: u32, what: &str) -> String {
    let times = match times {
        1 => String::new(),
        n => format!(" {n} times"),
    };
    format!(
        "the connection to the broker was lost{times} during {what}; replies sent while it was down are lost, so nodes may be missing"
    )
}

/// Sends `call` to each of `nodes` directly and collects their replies.
pub async fn call(
    bus: &Bus,
    call: &Call,
    nodes: &[String],
    wait: &Wait,
) -> Result<Collected, ClientError> {
    let senders = Senders::from_filter(&call.filter)?;
    bus.warm_keys(nodes);
    let lost_before = bus.times_lost();
    let bar = progress_bar(wait.progress, nodes.len());
    let mut out = Collected::default();
    let mut unasked = HashSet::new();
    let size = wait.batch.map_or(nodes.len().max(1), |(n, _)| n);
    for (i, batch) in nodes.chunks(size).enumerate() {
        if i > 0 {
            if let Some((_, pause)) = wait.batch {
                tokio::time::sleep(pause).await;
            }
        }
        // A listed node the filter does not select would stay silent: it
        // is not sent the request, and no reply is taken from it.
        let (batch, outside): (Vec<&String>, Vec<&String>) =
            batch.iter().partition(|n| senders.admits(n));
        out.no_response.extend(outside.into_iter().cloned());
        let batch: Vec<String> = batch.into_iter().cloned().collect();
        if batch.is_empty() {
            continue;
        }
        let mut each = Batch {
            nodes: &batch,
            senders: &senders,
            unasked: &mut unasked,
            bar: &bar,
        };
        one_batch(bus, call, &mut each, wait.timeout, &mut out).await?;
    }
    bar.finish_and_clear();
    out.broker_lost = bus.times_lost() - lost_before;
    out.replies.sort_by(|a, b| a.sender.cmp(&b.sender));
    out.no_response.sort();
    out.unexpected.sort();
    Ok(out)
}

/// Publishes without waiting for replies, giving the broker up to `within`
/// to take the request; returns the request id.
pub async fn fire(
    bus: &Bus,
    call: &Call,
    nodes: &[String],
    within: Duration,
) -> Result<String, ClientError> {
    let req = call.request(bus);
    bus.send(&req, To::Nodes(nodes), Instant::now() + within)
        .await?;
    Ok(req.id)
}

impl Call {
    /// `agent#action` with `data`, for the plan's collective and filter.
    pub fn for_plan(plan: &Plan, agent: &str, action: &str, data: Map<String, Value>) -> Call {
        Call {
            collective: plan.collective.clone(),
            agent: agent.to_string(),
            action: action.to_string(),
            data,
            filter: plan.filter.clone(),
        }
    }

    fn request(&self, bus: &Bus) -> RequestBody {
        bus.request(
            &self.collective,
            &self.agent,
            &self.action,
            self.data.clone(),
            self.filter.clone(),
        )
    }
}

/// One batch of a call: its nodes (whose replies are taken), the senders
/// the filter selects, and what is shared between batches.
struct Batch<'a> {
    nodes: &'a [String],
    senders: &'a Senders,
    unasked: &'a mut HashSet<String>,
    bar: &'a ProgressBar,
}

async fn one_batch(
    bus: &Bus,
    call: &Call,
    batch: &mut Batch<'_>,
    timeout: Duration,
    out: &mut Collected,
) -> Result<(), ClientError> {
    let req = call.request(bus);
    let reply_to = bus.reply_subject(&req);
    let sub = bus
        .client
        .subscribe(reply_to)
        .await
        .map_err(|e| ClientError::bus("subscribing to the replies", e))?;
    let sent = Instant::now();
    let mut intake = Intake::start(sub, bus.opener.clone(), sent, Some(batch.nodes.len()));
    bus.send(&req, To::Nodes(batch.nodes), sent + timeout)
        .await?;
    out.request_ids.push(req.id.clone());
    let mut pending: HashSet<&str> = batch.nodes.iter().map(String::as_str).collect();
    let mut answered: HashSet<String> = HashSet::new();
    let deadline = sent + timeout;
    while !pending.is_empty() {
        let Some((rtt, opened)) = intake.next_until(deadline).await else {
            break;
        };
        let reply = match opened {
            Ok(r) if r.request_id == req.id => r,
            Ok(_) => continue,
            Err(Rejected::Undecodable(_)) => {
                out.undecodable += 1;
                continue;
            }
            Err(Rejected::Untrusted(why)) => {
                out.refuse(why);
                continue;
            }
        };
        if pending.remove(reply.sender.as_str()) {
            answered.insert(reply.sender.clone());
            batch.bar.inc(1);
            out.replies.push(NodeReply {
                sender: reply.sender,
                status: reply.status,
                message: reply.message,
                data: reply.data,
                rtt,
            });
        } else if !batch.senders.admits(&reply.sender) {
            out.outside += 1;
        } else if !answered.contains(&reply.sender) {
            // Not of this batch: it answered a request it was not sent.
            out.unasked(batch.unasked, reply.sender);
        }
    }
    out.dropped += intake.dropped();
    out.no_response
        .extend(pending.into_iter().map(str::to_string));
    Ok(())
}

fn progress_bar(wanted: bool, len: usize) -> ProgressBar {
    use std::io::IsTerminal;
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template(" {pos:>6} / {len:<6} {wide_bar} {elapsed}") {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_keeps_counts_and_a_few_reasons_not_every_refusal() {
        let mut c = Collected::default();
        assert_eq!(c.untrusted_line(), None);
        for _ in 0..100_000 {
            c.refuse(format!("a reply claiming to be from {}", "x".repeat(4096)));
        }
        assert_eq!(c.untrusted_count, 100_000);
        assert_eq!(c.untrusted.len(), Refusals::KEPT);
        let line = c.untrusted_line().unwrap();
        assert!(line.starts_with("ignored 100000 replies that failed verification (counted as no reply): the first 5: "), "{line}");
        assert!(line.len() < 2048, "{}", line.len());
        assert!(!line.contains('\n'));
    }

    #[test]
    fn nodes_answering_unasked_are_named_once_and_at_most_so_many() {
        let mut c = Collected::default();
        let mut seen = HashSet::new();
        for _ in 0..3 {
            c.unasked(&mut seen, "stray".into());
        }
        assert_eq!(c.unexpected, ["stray"]);
        for i in 0..UNEXPECTED_KEPT + 10 {
            c.unasked(&mut seen, format!("n{i}"));
        }
        assert_eq!(c.unexpected.len(), UNEXPECTED_KEPT);
        assert_eq!(c.unexpected_more, 11);
    }
}

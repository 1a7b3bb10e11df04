//! The RPC engine: send one request to a known set of nodes, in batches if
//! asked, and wait exactly until each has answered or the timeout passes.

use std::collections::HashSet;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use mco_core::wire::RequestBody;
use mco_core::{subject, Filter};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::bus::Bus;
use crate::error::ClientError;
use crate::output::NodeReply;
use crate::verify::{Intake, Rejected};

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
}

/// The replies of one call.
#[derive(Debug, Default)]
pub struct Collected {
    /// Replies from expected nodes.
    pub replies: Vec<NodeReply>,
    /// Expected nodes that did not answer, sorted.
    pub no_response: Vec<String>,
    /// Nodes that answered without being asked, sorted.
    pub unexpected: Vec<String>,
    /// Replies that did not decode.
    pub undecodable: usize,
    /// Replies that failed verification, with the reason (treated as no reply).
    pub untrusted: Vec<String>,
    /// Request ids sent, one per batch.
    pub request_ids: Vec<String>,
    /// How often the connection to the broker was lost during the call.
    pub broker_lost: u32,
}

impl Collected {
    /// Says on stderr which replies were ignored: those that failed
    /// verification (counted as no reply) and those that did not decode;
    /// and whether the connection to the broker was lost during the call.
    pub fn warn_ignored(&self) {
        if self.broker_lost > 0 {
            eprintln!("warning: {}", lost_words(self.broker_lost, "the call"));
        }
        if !self.untrusted.is_empty() {
            eprintln!(
                "warning: ignored {} replies that failed verification (counted as no reply): {}",
                self.untrusted.len(),
                self.untrusted.join("; ")
            );
        }
        if self.undecodable > 0 {
            eprintln!(
                "warning: ignored {} replies that did not decode",
                self.undecodable
            );
        }
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
    bus.warm_keys(nodes);
    let lost_before = bus.times_lost();
    let bar = progress_bar(wait.progress, nodes.len());
    let mut out = Collected::default();
    let size = wait.batch.map_or(nodes.len().max(1), |(n, _)| n);
    for (i, batch) in nodes.chunks(size).enumerate() {
        if i > 0 {
            if let Some((_, pause)) = wait.batch {
                tokio::time::sleep(pause).await;
            }
        }
        one_batch(bus, call, batch, wait.timeout, &bar, &mut out).await?;
    }
    bar.finish_and_clear();
    out.broker_lost = bus.times_lost() - lost_before;
    out.replies.sort_by(|a, b| a.sender.cmp(&b.sender));
    out.no_response.sort();
    out.unexpected.sort();
    out.unexpected.dedup();
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
    send(bus, &req, nodes, Instant::now() + within).await?;
    Ok(req.id)
}

impl Call {
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

/// Sends one encoded request to each node's own subject by `deadline`.
async fn send(
    bus: &Bus,
    req: &RequestBody,
    nodes: &[String],
    deadline: Instant,
) -> Result<(), ClientError> {
    let subjects: Vec<String> = nodes
        .iter()
        .map(|n| subject::node(&req.collective, n))
        .collect();
    bus.publish_by(
        &subjects,
        &bus.reply_subject(req),
        bus.encode(req)?,
        deadline,
    )
    .await
}

async fn one_batch(
    bus: &Bus,
    call: &Call,
    batch: &[String],
    timeout: Duration,
    bar: &ProgressBar,
    out: &mut Collected,
) -> Result<(), ClientError> {
    let req = call.request(bus);
    let reply_to = bus.reply_subject(&req);
    let sub = bus
        .client
        .subscribe(reply_to)
        .await
        .map_err(|e| ClientError::Bus(e.to_string()))?;
    let sent = Instant::now();
    let mut intake = Intake::start(sub, bus.opener.clone(), sent, Some(batch.len()));
    send(bus, &req, batch, sent + timeout).await?;
    out.request_ids.push(req.id.clone());
    let mut pending: HashSet<&str> = batch.iter().map(String::as_str).collect();
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
                out.untrusted.push(why);
                continue;
            }
        };
        if pending.remove(reply.sender.as_str()) {
            answered.insert(reply.sender.clone());
            bar.inc(1);
            out.replies.push(NodeReply {
                sender: reply.sender,
                status: reply.status,
                message: reply.message,
                data: reply.data,
                rtt,
            });
        } else if !answered.contains(&reply.sender) {
            out.unexpected.push(reply.sender);
        }
    }
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

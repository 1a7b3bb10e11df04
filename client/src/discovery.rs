//! Discovery (DESIGN §6): who should act.
//!
//! Broadcast discovery publishes `rpcutil ping` with the filter and collects
//! identities until the timeout — or, with the sliding window, as soon as no
//! new reply has arrived for the window after the first one.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use mco_core::{subject, Filter};
use tokio::time::Instant;

use crate::bus::Bus;
use crate::error::ClientError;
use crate::target::{Plan, Source};
use crate::verify::{Intake, Rejected};

/// The nodes found, and whether the bus was asked.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// Identities, sorted and unique.
    pub nodes: Vec<String>,
    /// True when found by broadcast (affects the exit code when none reply).
    pub by_broadcast: bool,
}

/// Finds the nodes for `plan`. `agent`, when given, is added to the filter
/// so only nodes hosting it are found.
pub async fn discover(
    bus: &Bus,
    plan: &Plan,
    agent: Option<&str>,
) -> Result<Discovered, ClientError> {
    match &plan.source {
        Source::File(path) => Ok(Discovered {
            nodes: read_nodes_file(path)?,
            by_broadcast: false,
        }),
        Source::Stdin => Ok(Discovered {
            nodes: read_stdin()?,
            by_broadcast: false,
        }),
        Source::Listed(nodes) => Ok(Discovered {
            nodes: nodes.clone(),
            by_broadcast: false,
        }),
        Source::Broadcast => {
            if let Some(ids) = plan.filter.literal_identities() {
                let mut ids = ids;
                ids.sort();
                ids.dedup();
                return Ok(Discovered {
                    nodes: ids,
                    by_broadcast: false,
                });
            }
            let mut filter = plan.filter.clone();
            if let Some(a) =
                agent.filter(|a| *a != "rpcutil" && !filter.agent.iter().any(|x| x == a))
            {
                filter.agent.push(a.to_string());
            }
            let found = broadcast(
                bus,
                &plan.collective,
                filter,
                plan.discovery_timeout,
                plan.discovery_window,
            )
            .await?;
            let nodes = found.into_iter().map(|(id, _)| id).collect();
            Ok(Discovered {
                nodes,
                by_broadcast: true,
            })
        }
    }
}

/// Reads identities from a file: one per line, blank lines and `#` comments skipped.
pub fn read_nodes_file(path: &Path) -> Result<Vec<String>, ClientError> {
    let f = std::fs::File::open(path)
        .map_err(|e| ClientError::Io(format!("--nodes {}: {e}", path.display())))?;
    parse_nodes(std::io::BufReader::new(f))
        .map_err(|e| ClientError::Io(format!("--nodes {}: {e}", path.display())))
}

/// Reads identities from standard input, as from a nodes file.
pub fn read_stdin() -> Result<Vec<String>, ClientError> {
    parse_nodes(std::io::stdin().lock()).map_err(|e| ClientError::Io(format!("stdin: {e}")))
}

fn parse_nodes(r: impl BufRead) -> std::io::Result<Vec<String>> {
    let mut set = BTreeSet::new();
    for line in r.lines() {
        let line = line?;
        let id = line.trim();
        if !id.is_empty() && !id.starts_with('#') {
            set.insert(id.to_string());
        }
    }
    Ok(set.into_iter().collect())
}

/// Broadcast discovery: identities of matching nodes with their round-trip
/// times, sorted by identity.
pub async fn broadcast(
    bus: &Bus,
    collective: &str,
    filter: Filter,
    timeout: Duration,
    window: Duration,
) -> Result<Vec<(String, Duration)>, ClientError> {
    let lost_before = bus.times_lost();
    let req = bus.request(collective, "rpcutil", "ping", Default::default(), filter);
    let reply_to = bus.reply_subject(&req);
    let sub = bus
        .client
        .subscribe(reply_to.clone())
        .await
        .map_err(|e| ClientError::Bus(e.to_string()))?;
    let sent = Instant::now();
    let mut intake = Intake::start(sub, bus.opener.clone(), sent, None);
    let hard = sent + timeout;
    let to = [subject::broadcast(collective, "rpcutil")];
    bus.publish_by(&to, &reply_to, bus.encode(&req)?, hard)
        .await?;
    let mut found = std::collections::BTreeMap::new();
    let mut untrusted = 0usize;
    loop {
        let deadline = if found.is_empty() || window.is_zero() {
            hard
        } else {
            (Instant::now() + window).min(hard)
        };
        match intake.next_until(deadline).await {
            Some((rtt, Ok(reply))) if reply.request_id == req.id => {
                found.entry(reply.sender).or_insert(rtt);
            }
            Some((_, Err(Rejected::Untrusted(why)))) => {
                untrusted += 1;
                tracing::warn!("ignored a discovery reply: {why}");
            }
            Some(_) => {}
            None => break,
        }
    }
    if untrusted > 0 {
        eprintln!("warning: ignored {untrusted} discovery replies that failed verification");
    }
    let lost = bus.times_lost() - lost_before;
    if lost > 0 {
        eprintln!("warning: {}", crate::rpc::lost_words(lost, "discovery"));
    }
    Ok(found.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_files_skip_blanks_and_comments() {
        let text = "web1\n\n# comment\n  web2  \nweb1\n";
        assert_eq!(parse_nodes(text.as_bytes()).unwrap(), vec!["web1", "web2"]);
    }
}

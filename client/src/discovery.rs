//! Discovery (ARCHITECTURE.md §5): who should act.
//!
//! Broadcast discovery publishes `rpcutil ping` with the filter and collects
//! identities until the timeout — or, with the sliding window, as soon as no
//! new reply has arrived for the window after the first one.
//!
//! Only replies whose certificate-verified sender matches the filter's
//! identity patterns are kept ([`Senders`]): a node that answers a
//! discovery it does not match is not sent the request. What is found is
//! bounded too ([`FOUND_MAX`] names, [`FOUND_BYTES_MAX`] bytes of them).

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use mco_core::Filter;
use tokio::time::Instant;

use crate::bus::{Bus, To};
use crate::error::ClientError;
use crate::senders::{outside_words, Senders};
use crate::target::{Plan, Source};
use crate::verify::{dropped_words, Intake, Refusals, Rejected};

/// The least time a read of the inventory registry is given, whatever the discovery timeout.
pub const INVENTORY_READ_MIN: Duration = Duration::from_secs(5);

/// Most nodes one discovery finds; replies from more are dropped and counted.
pub const FOUND_MAX: usize = 1_000_000;

/// Most bytes of identities one discovery keeps.
pub const FOUND_BYTES_MAX: usize = 64 << 20;

/// The nodes found, and whether the bus was asked.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// Identities, sorted and unique.
    pub nodes: Vec<String>,
    /// True when found by broadcast (affects the exit code when none reply).
    pub by_broadcast: bool,
    /// What the operator must be told about the discovery, one line each.
    pub warnings: Vec<String>,
    /// Identities the filter names that discovery did not find (inventory discovery).
    pub not_found: Vec<String>,
}

/// What a broadcast discovery found.
#[derive(Debug, Default)]
pub struct Pinged {
    /// Identities of the matching nodes with their round-trip times, sorted.
    pub nodes: Vec<(String, Duration)>,
    /// What the operator must be told about it, one line each.
    pub warnings: Vec<String>,
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
            warnings: Vec::new(),
            not_found: Vec::new(),
        }),
        Source::Stdin => Ok(Discovered {
            nodes: read_stdin()?,
            by_broadcast: false,
            warnings: Vec::new(),
            not_found: Vec::new(),
        }),
        Source::Listed(nodes) => Ok(Discovered {
            nodes: nodes.clone(),
            by_broadcast: false,
            warnings: Vec::new(),
            not_found: Vec::new(),
        }),
        Source::Inventory(bucket) => {
            let registry =
                crate::inventory::read(bus, bucket, plan.discovery_timeout.max(INVENTORY_READ_MIN))
                    .await?;
            let mut filter = plan.filter.clone();
            if let Some(a) =
                agent.filter(|a| *a != "rpcutil" && !filter.agent.iter().any(|x| x == a))
            {
                filter.agent.push(a.to_string());
            }
            let nodes: Vec<String> =
                crate::inventory::select(&registry, &filter, &plan.collective)?
                    .into_iter()
                    .map(|e| e.body.identity.clone())
                    .collect();
            let not_found = plan
                .filter
                .literal_identities()
                .unwrap_or_default()
                .into_iter()
                .filter(|n| !nodes.contains(n))
                .collect();
            Ok(Discovered {
                nodes,
                by_broadcast: false,
                warnings: registry.warnings,
                not_found,
            })
        }
        Source::Broadcast => {
            if let Some(ids) = plan.filter.literal_identities() {
                let mut ids = ids;
                ids.sort();
                ids.dedup();
                return Ok(Discovered {
                    nodes: ids,
                    by_broadcast: false,
                    warnings: Vec::new(),
                    not_found: Vec::new(),
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
            let nodes = found.nodes.into_iter().map(|(id, _)| id).collect();
            Ok(Discovered {
                nodes,
                by_broadcast: true,
                warnings: found.warnings,
                not_found: Vec::new(),
            })
        }
    }
}

/// Reads identities from a file: one per line, blank lines and `#` comments skipped.
pub fn read_nodes_file(path: &Path) -> Result<Vec<String>, ClientError> {
    let f = std::fs::File::open(path)
        .map_err(|e| ClientError::file(format!("--nodes {}", path.display()), e))?;
    parse_nodes(std::io::BufReader::new(f))
        .map_err(|e| ClientError::file(format!("--nodes {}", path.display()), e))
}

/// Reads identities from standard input, as from a nodes file.
pub fn read_stdin() -> Result<Vec<String>, ClientError> {
    parse_nodes(std::io::stdin().lock()).map_err(|e| ClientError::file("stdin", e))
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
/// times, sorted by identity. Replies whose verified sender the filter's
/// identity patterns do not select are dropped and counted, and so are
/// refused ones; each kind is one line of [`Pinged::warnings`].
pub async fn broadcast(
    bus: &Bus,
    collective: &str,
    filter: Filter,
    timeout: Duration,
    window: Duration,
) -> Result<Pinged, ClientError> {
    let senders = Senders::from_filter(&filter)?;
    let lost_before = bus.times_lost();
    let req = bus.request(collective, "rpcutil", "ping", Default::default(), filter);
    let sub = bus
        .client
        .subscribe(bus.reply_subject(&req))
        .await
        .map_err(|e| ClientError::bus("subscribing to the replies", e))?;
    let sent = Instant::now();
    let mut intake = Intake::start(sub, bus.opener.clone(), sent, None);
    let hard = sent + timeout;
    bus.send(&req, To::Broadcast, hard).await?;
    let mut found = Found::default();
    loop {
        let deadline = if found.nodes.is_empty() || window.is_zero() {
            hard
        } else {
            (Instant::now() + window).min(hard)
        };
        match intake.next_until(deadline).await {
            Some((rtt, Ok(reply))) if reply.request_id == req.id => {
                found.add(&senders, reply.sender, rtt);
            }
            Some((_, Err(Rejected::Untrusted(why)))) => {
                tracing::debug!("ignored a discovery reply: {why}");
                found.untrusted.add(why);
            }
            Some(_) => {}
            None => break,
        }
    }
    let mut warnings = found.warnings(intake.dropped());
    let lost = bus.times_lost() - lost_before;
    if lost > 0 {
        warnings.push(crate::rpc::lost_words(lost, "discovery"));
    }
    Ok(Pinged {
        nodes: found.nodes.into_iter().collect(),
        warnings,
    })
}

/// What one discovery found and ignored.
#[derive(Debug, Default)]
struct Found {
    nodes: std::collections::BTreeMap<String, Duration>,
    bytes: usize,
    /// Replies from senders the filter does not select.
    outside: usize,
    /// Replies past [`FOUND_MAX`] or [`FOUND_BYTES_MAX`].
    over: usize,
    untrusted: Refusals,
}

impl Found {
    fn add(&mut self, senders: &Senders, sender: String, rtt: Duration) {
        if !senders.admits(&sender) {
            self.outside += 1;
        } else if self.nodes.contains_key(&sender) {
            // Found already: its first reply's time stands.
        } else if self.nodes.len() >= FOUND_MAX
            || self.bytes.saturating_add(sender.len()) > FOUND_BYTES_MAX
        {
            self.over += 1;
        } else {
            self.bytes += sender.len();
            self.nodes.insert(sender, rtt);
        }
    }

    fn warnings(&self, dropped: usize) -> Vec<String> {
        let mut out = Vec::new();
        if self.untrusted.count > 0 {
            out.push(format!(
                "ignored {} discovery replies that failed verification: {}",
                self.untrusted.count,
                self.untrusted.reasons()
            ));
        }
        if self.outside > 0 {
            out.push(outside_words(self.outside, "discovery"));
        }
        if self.over > 0 {
            out.push(format!(
                "ignored {} discovery replies past the bound of {FOUND_MAX} nodes or {} MiB of names",
                self.over,
                FOUND_BYTES_MAX >> 20
            ));
        }
        if dropped > 0 {
            out.push(dropped_words(dropped));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_keeps_only_senders_the_filter_selects_and_bounds_the_rest() {
        let filter = Filter {
            identity: vec!["db-*".into()],
            ..Filter::default()
        };
        let senders = Senders::from_filter(&filter).unwrap();
        let mut found = Found::default();
        let ms = Duration::from_millis(1);
        found.add(&senders, "db-01".into(), ms);
        found.add(&senders, "evil-07".into(), ms);
        found.add(&senders, "evil-07".into(), ms);
        found.add(&senders, "db-01".into(), ms * 2);
        assert_eq!(found.nodes.keys().collect::<Vec<_>>(), ["db-01"]);
        assert_eq!(found.nodes["db-01"], ms, "the first reply's time");
        assert_eq!(found.outside, 2);

        let mut big = Found {
            bytes: FOUND_BYTES_MAX - 3,
            ..Found::default()
        };
        big.add(&senders, "db-1".into(), ms);
        assert_eq!((big.nodes.len(), big.over), (0, 1));
        big.add(&senders, "db-".into(), ms);
        assert_eq!((big.nodes.len(), big.over), (1, 1));
    }

    #[test]
    fn nodes_files_skip_blanks_and_comments() {
        let text = "web1\n\n# comment\n  web2  \nweb1\n";
        assert_eq!(parse_nodes(text.as_bytes()).unwrap(), vec!["web1", "web2"]);
    }
}

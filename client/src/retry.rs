//! `--retry N`: re-sending a call to the nodes that did not answer, each time as a new signed
//! request (a new id, so no node's replay cache refuses it), and each node's final state.
//!
//! A node that was only slow may run the action twice (its late reply to the first request is
//! no longer listened for): retry idempotent actions, as MCollective's users retry by hand.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::rpc::Collected;

/// How many times to re-send, and the pause before each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Re-sends after the first request.
    pub count: u32,
    /// Pause before each re-send.
    pub delay: Duration,
}

/// The pause before a re-send unless given.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(1);

/// Most re-sends one call may ask for.
pub const MAX_RETRIES: u32 = 100;

/// Where a node ended up after a call and its re-sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum FinalState {
    /// It answered, to this try (1 is the first request).
    Replied {
        /// The try it answered.
        tries: u32,
    },
    /// It was asked this many times and never answered.
    NoReply {
        /// How many requests it was sent.
        tries: u32,
    },
    /// It was named but not found where the nodes were discovered.
    NotDiscovered,
}

impl Collected {
    /// Adds the result of a re-send to the nodes that had not answered: their replies join
    /// the others, and the nodes still silent are the new `no_response`.
    pub fn merge_retry(&mut self, again: Collected, attempt: u32) {
        for r in &again.replies {
            self.answered_on.insert(r.sender.clone(), attempt);
        }
        self.replies.extend(again.replies);
        self.no_response = again.no_response;
        for u in again.unexpected {
            if !self.unexpected.contains(&u) {
                self.unexpected.push(u);
            }
        }
        self.unexpected.sort();
        self.unexpected_more += again.unexpected_more;
        self.undecodable += again.undecodable;
        self.untrusted_count += again.untrusted_count;
        for u in again.untrusted {
            if self.untrusted.len() < crate::verify::Refusals::KEPT {
                self.untrusted.push(u);
            }
        }
        self.outside += again.outside;
        self.dropped += again.dropped;
        self.request_ids.extend(again.request_ids);
        self.broker_lost += again.broker_lost;
        self.tries = attempt;
    }

    /// Each node's final state: every reply, every node still silent, and the named nodes
    /// `not_found` by discovery; sorted by node.
    pub fn final_states(&self, not_found: &[String]) -> BTreeMap<String, FinalState> {
        let mut out = BTreeMap::new();
        for r in &self.replies {
            let tries = self.answered_on.get(&r.sender).copied().unwrap_or(1);
            out.insert(r.sender.clone(), FinalState::Replied { tries });
        }
        for n in &self.no_response {
            out.insert(
                n.clone(),
                FinalState::NoReply {
                    tries: self.tries.max(1),
                },
            );
        }
        for n in not_found {
            out.entry(n.clone()).or_insert(FinalState::NotDiscovered);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::NodeReply;
    use mco_core::wire::Status;

    fn reply(sender: &str) -> NodeReply {
        NodeReply {
            sender: sender.into(),
            status: Status::Ok,
            message: "OK".into(),
            data: Default::default(),
            rtt: Duration::ZERO,
        }
    }

    #[test]
    fn a_retry_moves_answering_nodes_to_the_replies_and_counts_tries() {
        let mut first = Collected {
            replies: vec![reply("a")],
            no_response: vec!["b".into(), "c".into()],
            tries: 1,
            ..Default::default()
        };
        let again = Collected {
            replies: vec![reply("b")],
            no_response: vec!["c".into()],
            untrusted_count: 1,
            untrusted: vec!["x".into()],
            ..Default::default()
        };
        first.merge_retry(again, 2);
        assert_eq!(first.no_response, vec!["c".to_string()]);
        assert_eq!(first.untrusted_count, 1);
        let states = first.final_states(&["d".to_string(), "a".to_string()]);
        assert_eq!(states["a"], FinalState::Replied { tries: 1 });
        assert_eq!(states["b"], FinalState::Replied { tries: 2 });
        assert_eq!(states["c"], FinalState::NoReply { tries: 2 });
        assert_eq!(states["d"], FinalState::NotDiscovered);
        assert_eq!(states.len(), 4);
        let json = serde_json::to_value(&states["c"]).unwrap();
        assert_eq!(json, serde_json::json!({"state": "no_reply", "tries": 2}));
    }
}

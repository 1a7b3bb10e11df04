//! How the provisioner asks: a request to one node in the provisioning
//! collective or the main one, the `provision` agent's actions with the
//! token, and the CA node's `ca` agent.

use std::time::Duration;

use mco_client::output::NodeReply;
use mco_client::rpc::{Call, Wait};
use mco_client::session::Session;
use mco_core::provisioning::{MAX_LOCK_EXPIRY_S, PROVISIONING_COLLECTIVE};
use mco_core::{Filter, Status as WireStatus};
use serde_json::{json, Map, Value};

use crate::service::Provisioner;
use crate::step::{Fail, Outcome};

impl Provisioner {
    /// `ca ACTION` on the CA node, at most `[ca] concurrency` at once.
    pub(crate) async fn ca_call(
        &self,
        action: &str,
        input: Map<String, Value>,
    ) -> Result<Map<String, Value>, Outcome> {
        let (_, ca) = self.masters_now().await?;
        let ca = ca.ok_or_else(|| {
            Outcome::Failed(format!(
                "no CA: no node hosting the ca agent answers in the {} collective",
                self.main_cfg.collective
            ))
        })?;
        let _slot = self
            .ca_slots
            .acquire()
            .await
            .map_err(|e| Outcome::Failed(e.to_string()))?;
        self.ask_heeding(On::Main, &ca, "ca", action, input, None, Heed::Refusal)
            .await
            .map_err(|f| match f {
                Fail::Refused(m) => Outcome::Refused(format!("the CA {ca} refuses {action}: {m}")),
                f => Outcome::Failed(format!("ca {action} on {ca}: {f}")),
            })
    }

    /// `provision lock` for `expiry` (at most a day).
    pub(crate) async fn lock(&self, node: &str, expiry: Duration) -> Result<(), Fail> {
        // A node's lock lasts at most a day (the provision agent refuses more).
        let secs = expiry.as_secs().clamp(1, MAX_LOCK_EXPIRY_S);
        let mut data = Map::new();
        data.insert("expiry".into(), json!(secs));
        data.insert("token".into(), Value::String(self.token.clone()));
        self.ask_heeding(
            On::Provisioning,
            node,
            "provision",
            "lock",
            data,
            None,
            Heed::Lock,
        )
        .await
        .map(|_| ())
    }

    /// `provision unlock`.
    pub(crate) async fn unlock(&self, node: &str) -> Result<(), Fail> {
        self.provision(node, "unlock", json!({})).await.map(|_| ())
    }

    /// A `provision` action on a node, with the token.
    pub(crate) async fn provision(
        &self,
        node: &str,
        action: &str,
        input: Value,
    ) -> Result<Map<String, Value>, Fail> {
        let mut data = input.as_object().cloned().unwrap_or_default();
        data.insert("token".into(), Value::String(self.token.clone()));
        self.ask(On::Provisioning, node, "provision", action, data, None)
            .await
    }

    /// `agent action` on `node` in the provisioning collective or the main
    /// one, within `timeout` (default `request_timeout`): its outputs, or why
    /// there are none.
    pub(crate) async fn ask(
        &self,
        on: On,
        node: &str,
        agent: &str,
        action: &str,
        data: Map<String, Value>,
        timeout: Option<Duration>,
    ) -> Result<Map<String, Value>, Fail> {
        self.ask_heeding(on, node, agent, action, data, timeout, Heed::Nothing)
            .await
    }

    /// As [`ask`](Self::ask), taking a refusal's marker from the reply only
    /// where `heed` says the answerer may give one: a node's `locked_by` to
    /// `lock` itself, the CA's (or a master's) `refused` to `ca` actions.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn ask_heeding(
        &self,
        on: On,
        node: &str,
        agent: &str,
        action: &str,
        data: Map<String, Value>,
        timeout: Option<Duration>,
        heed: Heed,
    ) -> Result<Map<String, Value>, Fail> {
        let (bus, collective) = match on {
            On::Provisioning => (&self.prov, PROVISIONING_COLLECTIVE),
            On::Main => (&self.main, self.main_cfg.collective.as_str()),
        };
        let timeout = timeout.unwrap_or(self.cfg.request_timeout);
        ok(
            self.reply(bus, collective, node, agent, action, data, timeout)
                .await?,
            heed,
        )
    }

    pub(crate) fn call(
        &self,
        collective: &str,
        agent: &str,
        action: &str,
        data: Map<String, Value>,
        node: Option<&str>,
    ) -> Call {
        Call {
            collective: collective.to_string(),
            agent: agent.to_string(),
            action: action.to_string(),
            data,
            filter: Filter {
                identity: node.map(|n| vec![n.to_string()]).unwrap_or_default(),
                ..Filter::default()
            },
        }
    }

    pub(crate) fn wait(&self, timeout: Duration) -> Wait {
        Wait {
            retry: None,
            timeout,
            batch: None,
            progress: false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn reply(
        &self,
        bus: &Session,
        collective: &str,
        node: &str,
        agent: &str,
        action: &str,
        data: Map<String, Value>,
        timeout: Duration,
    ) -> Result<NodeReply, Fail> {
        let call = self.call(collective, agent, action, data, Some(node));
        bus.ask(&call, node, timeout)
            .await
            .map_err(|e| Fail::NoReply(e.to_string()))
    }
}

/// Which collective a node is asked in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum On {
    /// The provisioning collective, on its own broker.
    Provisioning,
    /// The main collective.
    Main,
}

/// Which refusal marker a reply may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heed {
    /// None: any error is a failure, counted and retried.
    Nothing,
    /// The `provision` agent's `locked_by`, in answer to `lock`.
    Lock,
    /// The `ca` agent's `refused`, in answer to a `ca` action.
    Refusal,
}

/// The outputs of a reply that says OK; otherwise a refusal for good or a
/// lock refusal where `heed` allows one, or else a failure.
fn ok(r: NodeReply, heed: Heed) -> Result<Map<String, Value>, Fail> {
    if r.status == WireStatus::Ok {
        return Ok(r.data);
    }
    match heed {
        Heed::Refusal if r.data.get("refused").and_then(Value::as_str).is_some() => {
            Err(Fail::Refused(r.message))
        }
        Heed::Lock => match r.data.get("locked_by").and_then(Value::as_str) {
            Some(by) if !by.is_empty() => Err(Fail::Locked {
                by: by.to_string(),
                message: r.message,
            }),
            _ => Err(Fail::Status(r.message)),
        },
        _ => Err(Fail::Status(r.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(data: Value) -> NodeReply {
        NodeReply {
            sender: "n1".into(),
            status: WireStatus::Aborted,
            message: "no".into(),
            data: data.as_object().unwrap().clone(),
            rtt: Duration::ZERO,
        }
    }

    #[test]
    fn a_refusal_marker_counts_only_where_it_is_heeded() {
        let locked = || refusal(json!({"locked_by": "user:bob"}));
        let refused = || refusal(json!({"refused": "reserved"}));
        // A node marking any answer but `lock`'s cannot dodge the count.
        assert_eq!(ok(locked(), Heed::Nothing), Err(Fail::Status("no".into())));
        assert_eq!(ok(refused(), Heed::Nothing), Err(Fail::Status("no".into())));
        assert_eq!(ok(refused(), Heed::Lock), Err(Fail::Status("no".into())));
        assert_eq!(ok(locked(), Heed::Refusal), Err(Fail::Status("no".into())));
        assert_eq!(
            ok(locked(), Heed::Lock),
            Err(Fail::Locked {
                by: "user:bob".into(),
                message: "no".into()
            })
        );
        assert_eq!(
            ok(refused(), Heed::Refusal),
            Err(Fail::Refused("no".into()))
        );
    }
}

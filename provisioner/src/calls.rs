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
        self.ask(On::Main, &ca, "ca", action, input, None)
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
        self.provision(node, "lock", json!({"expiry": secs}))
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
        let (bus, collective) = match on {
            On::Provisioning => (&self.prov, PROVISIONING_COLLECTIVE),
            On::Main => (&self.main, self.main_cfg.collective.as_str()),
        };
        let timeout = timeout.unwrap_or(self.cfg.request_timeout);
        ok(self
            .reply(bus, collective, node, agent, action, data, timeout)
            .await?)
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

/// The outputs of a reply that says OK; otherwise a refusal for good (the
/// `ca` agent's `refused` output), a lock refusal (the `provision` agent's
/// `locked_by` output) or any other error.
fn ok(r: NodeReply) -> Result<Map<String, Value>, Fail> {
    if r.status == WireStatus::Ok {
        return Ok(r.data);
    }
    if r.data.get("refused").and_then(Value::as_str).is_some() {
        return Err(Fail::Refused(r.message));
    }
    match r.data.get("locked_by").and_then(Value::as_str) {
        Some(by) if !by.is_empty() => Err(Fail::Locked {
            by: by.to_string(),
            message: r.message,
        }),
        _ => Err(Fail::Status(r.message)),
    }
}

//! The `Agent` trait: what every plugin implements.
//!
//! It lives in core so that plugins depend on nothing but this crate, and the
//! responder composes them. An agent receives inputs that the dispatcher has
//! already validated against its DDL and a [`RequestContext`] describing who
//! asked and on which node it runs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::ddl::Ddl;
use crate::facts::FactMap;
use crate::wire::Status;

/// Outputs of an action.
pub type Outputs = Map<String, Value>;

/// Outputs from a JSON object (as `json!({…})` builds them); any other
/// value gives none.
pub fn outputs(v: Value) -> Outputs {
    match v {
        Value::Object(m) => m,
        _ => Outputs::new(),
    }
}

/// Splits a comma-separated input (`servers=a,b`, `groups=wheel, adm`)
/// into its trimmed parts, dropping empty ones.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// A failed action: a status other than OK and a message for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionError {
    /// The reply status (never `Ok`).
    pub status: Status,
    /// What went wrong, in words an operator can act on.
    pub message: String,
    /// Outputs to return despite the failure (may be empty).
    pub data: Outputs,
}

impl ActionError {
    /// Status 1: the action ran and failed, or was refused.
    pub fn aborted(message: impl Into<String>) -> ActionError {
        ActionError::new(Status::Aborted, message)
    }

    /// An error with any status.
    pub fn new(status: Status, message: impl Into<String>) -> ActionError {
        ActionError {
            status,
            message: message.into(),
            data: Outputs::new(),
        }
    }

    /// Attaches outputs to the failure.
    pub fn with_data(mut self, data: Outputs) -> ActionError {
        self.data = data;
        self
    }
}

/// What an action returns.
pub type ActionResult = Result<Outputs, ActionError>;

/// One agent as the node lists it.
#[derive(Debug, Clone)]
pub struct AgentSummary {
    /// Agent name.
    pub name: String,
    /// Version from the DDL.
    pub version: String,
    /// One-line description from the DDL.
    pub description: String,
}

/// What an agent may know of the node it runs on.
pub trait NodeInfo: Send + Sync {
    /// The node's identity.
    fn identity(&self) -> &str;
    /// The collectives the node serves; the first is the main one.
    fn collectives(&self) -> &[String];
    /// A snapshot of the node's facts.
    fn facts(&self) -> Arc<FactMap>;
    /// A snapshot of the node's classes.
    fn classes(&self) -> Arc<Vec<String>>;
    /// The agents the node hosts.
    fn agents(&self) -> Vec<AgentSummary>;
    /// Daemon statistics as a JSON object (requests seen, ok, failed, dropped…).
    fn stats(&self) -> Map<String, Value>;
    /// How long the daemon has been running.
    fn uptime(&self) -> Duration;
    /// Publishes the CA's signed CRL (the bytes of `ca.crl`) in the collective's CRL bucket, as
    /// this node, and returns the bucket's revision: what the CA agent does after a
    /// revocation, so that every node applies it within seconds (ARCHITECTURE.md §11). Every
    /// node verifies the CRL against the CA and takes it only if it is newer, so publishing
    /// cannot weaken anything. By default a node cannot publish.
    fn publish_crl(&self, crl: Vec<u8>) -> BoxFuture<Result<u64, String>> {
        drop(crl);
        Box::pin(async { Err("this node has no CRL bucket to publish in".to_string()) })
    }
}

/// A boxed future, as [`NodeInfo`]'s asynchronous methods return.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// Who asked, and where the action runs.
#[derive(Clone)]
pub struct RequestContext {
    /// The request id.
    pub request_id: String,
    /// The authenticated caller (`user:alice`).
    pub caller: String,
    /// The sending client's identity.
    pub sender: String,
    /// The collective the request arrived on.
    pub collective: String,
    /// The node this responder serves.
    pub node: Arc<dyn NodeInfo>,
}

/// An agent: a named set of actions described by a DDL.
#[async_trait::async_trait]
pub trait Agent: Send + Sync + 'static {
    /// The agent's DDL (its name is the agent's name).
    fn ddl(&self) -> &Ddl;

    /// Runs `action` with validated `input`. The dispatcher enforces the DDL
    /// timeout and catches panics; an agent need only do its work.
    async fn call(
        &self,
        action: &str,
        input: &Map<String, Value>,
        ctx: &RequestContext,
    ) -> ActionResult;

    /// The agent's name.
    fn name(&self) -> &str {
        &self.ddl().metadata.name
    }

    /// The per-action timeout (the DDL's).
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.ddl().metadata.timeout.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_on_commas() {
        assert_eq!(split_list(" a, b,,c "), vec!["a", "b", "c"]);
        assert!(split_list("").is_empty());
    }
}

//! Dispatch: validate a request against the DDL, run the action under its
//! timeout with panics contained, and build the reply.

use std::sync::Arc;
use std::time::Instant;

use mco_core::agent::RequestContext;
use mco_core::wire::{now_ms, ReplyBody, RequestBody, Status};
use serde_json::Map;
use tracing::{debug, warn, Instrument};

use crate::audit::AuditRecord;
use crate::node::{NodeState, View};

/// Runs one authentic, selected request to completion and returns its reply.
pub async fn dispatch(node: Arc<NodeState>, req: RequestBody) -> ReplyBody {
    let started = Instant::now();
    let span = tracing::info_span!(
        "request",
        id = %req.id,
        agent = %req.agent,
        action = %req.action,
        caller = %req.caller,
        node = %node.identity
    );
    let (status, message, data) = run(&node, &req).instrument(span).await;
    if status == Status::Ok {
        node.stats.ok();
    } else {
        node.stats.failed();
    }
    let reply = ReplyBody {
        request_id: req.id.clone(),
        sender: node.identity.clone(),
        status,
        message,
        data,
        time_ms: now_ms(),
        elapsed_us: started.elapsed().as_micros() as u64,
    };
    if let Some(audit) = &node.audit {
        let action = node
            .registry
            .get(&req.agent)
            .and_then(|h| h.ddl.action(&req.action));
        audit.log(AuditRecord::new(&req, &reply, action));
    }
    reply
}

type Outcome = (Status, String, Map<String, serde_json::Value>);

async fn run(node: &Arc<NodeState>, req: &RequestBody) -> Outcome {
    let Some(hosted) = node.registry.get(&req.agent).cloned() else {
        return (
            Status::UnknownAction,
            format!("agent '{}' is not hosted on this node", req.agent),
            Map::new(),
        );
    };
    let decision = node
        .authz
        .authorize(&req.agent, &req.action, &req.caller, &View::of(node));
    if let Some(e) = &decision.error {
        warn!("policy file problem: {e}");
    }
    if !decision.allowed {
        debug!("denied: {}", decision.reason);
        return (Status::Aborted, "not authorized".into(), Map::new());
    }
    let Some(action) = hosted.ddl.action(&req.action) else {
        return (
            Status::UnknownAction,
            format!("unknown action '{}' for agent '{}'", req.action, req.agent),
            Map::new(),
        );
    };
    let mut input = req.data.clone();
    if let Err(e) = action.validate(&mut input) {
        debug!(status = e.status.code(), "input refused: {}", e.message);
        return (e.status, e.message, Map::new());
    }
    let defaults = action.output_defaults();
    let timeout = std::time::Duration::from_secs(hosted.ddl.metadata.timeout.max(1));
    let ctx = RequestContext {
        request_id: req.id.clone(),
        caller: req.caller.clone(),
        sender: req.sender.clone(),
        collective: req.collective.clone(),
        node: node.clone(),
    };
    let agent = hosted.agent.clone();
    let action_name = req.action.clone();
    let task =
        tokio::spawn(async move { agent.call(&action_name, &input, &ctx).await }.in_current_span());
    let abort = task.abort_handle();
    let joined = tokio::time::timeout(timeout, task).await;
    let merge = |out: Map<String, serde_json::Value>| {
        let mut data = defaults.clone();
        data.extend(out);
        data
    };
    match joined {
        Ok(Ok(Ok(out))) => (Status::Ok, "OK".into(), merge(out)),
        Ok(Ok(Err(e))) => {
            let status = if e.status == Status::Ok {
                Status::UnknownError
            } else {
                e.status
            };
            (status, e.message, merge(e.data))
        }
        Ok(Err(join)) => {
            let why = if join.is_panic() {
                let p = join.into_panic();
                let text = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-text panic".into());
                format!("agent '{}' failed unexpectedly: {text}", req.agent)
            } else {
                format!("agent '{}' was cancelled", req.agent)
            };
            warn!("{why}");
            (Status::UnknownError, why, Map::new())
        }
        Err(_) => {
            abort.abort();
            let why = format!(
                "action '{}' of agent '{}' timed out after {}s",
                req.action,
                req.agent,
                timeout.as_secs()
            );
            warn!("{why}");
            (Status::Aborted, why, Map::new())
        }
    }
}

//! `mco rpc AGENT ACTION key=value…`.

use std::io::Write;

use mco_core::config::ClientConfig;
use mco_core::ddl::{coerce_argument, Action};
use mco_core::Ddl;
use serde_json::{Map, Value};

use super::{discover, exit_code, io, Exit};
use crate::cli::{DisplayArg, RpcArgs};
use crate::ddls::DdlStore;
use crate::discovery::Discovered;
use crate::error::ClientError;
use crate::output::{self, DisplayMode, RunSummary};
use crate::rpc::{Call, Collected, Wait};
use crate::session::Session;
use crate::target::Plan;

/// Finds the agent's DDL and action, or says which exist.
pub(crate) fn action<'a>(
    store: &'a DdlStore,
    agent: &str,
    action: &str,
) -> Result<(&'a Ddl, &'a Action), ClientError> {
    let ddl = store.get(agent).ok_or_else(|| {
        let known: Vec<&str> = store.all().map(|d| d.metadata.name.as_str()).collect();
        ClientError::Usage(format!(
            "no DDL for agent '{agent}' (known: {}); put its DDL in a ddl_dirs directory",
            known.join(", ")
        ))
    })?;
    let act = ddl.action(action).ok_or_else(|| {
        let known: Vec<&str> = ddl.actions.iter().map(|a| a.action.as_str()).collect();
        ClientError::Usage(format!(
            "Unknown Action: agent '{agent}' has no action '{action}' (actions: {})",
            known.join(", ")
        ))
    })?;
    Ok((ddl, act))
}

/// Turns `key=value` words into validated inputs.
pub(crate) fn inputs(act: &Action, words: &[String]) -> Result<Map<String, Value>, ClientError> {
    let mut data = Map::new();
    for w in words {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| ClientError::Usage(format!("input {w:?} is not key=value")))?;
        let input = act.input.get(k).ok_or_else(|| {
            let known: Vec<&str> = act.input.keys().map(String::as_str).collect();
            ClientError::Usage(format!(
                "Invalid Request Data: unknown input '{k}' for action '{}' (known: {})",
                act.action,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ))
        })?;
        let value = coerce_argument(k, input, v)
            .map_err(|e| ClientError::Usage(format!("{}: {}", e.status.label(), e.message)))?;
        data.insert(k.to_string(), value);
    }
    act.validate(&mut data)
        .map_err(|e| ClientError::Usage(format!("{}: {}", e.status.label(), e.message)))?;
    Ok(data)
}

/// A discovered and answered call: what the verbs print from.
pub(crate) struct Answered {
    /// Who was expected to answer.
    pub found: Discovered,
    /// What came back.
    pub collected: Collected,
    /// When the call began (discovery included).
    pub started: std::time::Instant,
    /// The broker the call went through, as `mco -v` names it.
    pub broker: String,
}

/// Discovers the target and calls `agent#action` with `data` on it, waiting
/// the plan's timeout (or discovery plus the DDL's). `None` when nothing was
/// discovered (after saying so: on `out`, or on stderr with `[]` on `out`
/// for JSON).
pub(crate) async fn discover_and_call(
    cfg: &ClientConfig,
    target: &crate::cli::TargetArgs,
    ddl: &Ddl,
    action: &str,
    data: Map<String, Value>,
    json: bool,
    out: &mut dyn Write,
) -> Result<Option<Answered>, ClientError> {
    let (plan, session) = Session::open(cfg, target).await?;
    let result = call_planned(&session, &plan, ddl, action, data, json, out).await;
    session.finish(result)
}

async fn call_planned(
    session: &Session,
    plan: &Plan,
    ddl: &Ddl,
    action: &str,
    data: Map<String, Value>,
    json: bool,
    out: &mut dyn Write,
) -> Result<Option<Answered>, ClientError> {
    let agent = ddl.metadata.name.as_str();
    let started = std::time::Instant::now();
    let found = if json {
        // Keep stdout valid JSON for scripts: an empty array, the words on stderr.
        let mut note = Vec::new();
        let found = discover(session, plan, Some(agent), &mut note).await?;
        if found.is_none() {
            eprint!("{}", String::from_utf8_lossy(&note));
            writeln!(out, "[]").map_err(io)?;
        }
        found
    } else {
        discover(session, plan, Some(agent), out).await?
    };
    let Some(found) = found else {
        return Ok(None);
    };
    let call = Call::for_plan(plan, agent, action, data);
    let wait = Wait {
        timeout: call_timeout(plan, ddl),
        batch: plan.batch,
        progress: plan.progress && !json,
        retry: plan.retry,
    };
    let collected = session.call(&call, &found.nodes, &wait).await?;
    Ok(Some(Answered {
        found,
        collected,
        started,
        broker: session.bus().server(),
    }))
}

/// How long a call waits for replies: the plan's timeout, or discovery's
/// plus the DDL's.
pub(crate) fn call_timeout(plan: &Plan, ddl: &Ddl) -> std::time::Duration {
    plan.timeout
        .unwrap_or(plan.discovery_timeout + std::time::Duration::from_secs(ddl.metadata.timeout))
}

/// Sends without waiting for replies (`--no-results`).
async fn fire(
    session: &Session,
    plan: &Plan,
    ddl: &Ddl,
    action: &str,
    data: Map<String, Value>,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let agent = ddl.metadata.name.as_str();
    let Some(found) = discover(session, plan, Some(agent), out).await? else {
        return Ok(1);
    };
    let call = Call::for_plan(plan, agent, action, data);
    let id = session
        .fire(&call, &found.nodes, call_timeout(plan, ddl))
        .await?;
    writeln!(out, "Request sent with id: {id}").map_err(io)?;
    Ok(0)
}

/// The closing lines every verb prints after its results.
pub(crate) fn summary(out: &mut dyn Write, a: &Answered) -> Result<(), ClientError> {
    output::write_summary(
        out,
        &RunSummary {
            discovered: a.found.nodes.len(),
            responded: a.collected.replies.len(),
            elapsed: a.started.elapsed(),
            no_response: a.collected.no_response.clone(),
            unexpected: a.collected.unexpected.clone(),
        },
    )
    .map_err(io)
}

pub(super) async fn run(
    cfg: &ClientConfig,
    args: &RpcArgs,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let store = DdlStore::load(&cfg.ddl_dirs)?;
    let (ddl, act) = action(&store, &args.agent, &args.action)?;
    let words: Vec<String> = args.inputs.iter().chain(&args.arg).cloned().collect();
    let data = inputs(act, &words)?;
    if args.no_results {
        let (plan, session) = Session::open(cfg, &args.target).await?;
        let result = fire(&session, &plan, ddl, &args.action, data, out).await;
        return session.finish(result);
    }
    let Some(answered) =
        discover_and_call(cfg, &args.target, ddl, &args.action, data, args.json, out).await?
    else {
        return Ok(1);
    };
    let collected = &answered.collected;
    let retried = args.target.retry.is_some();
    let states = collected.final_states(&answered.found.not_found);
    if args.json && retried {
        output::write_json_states(out, &args.agent, &args.action, &collected.replies, &states)
            .map_err(io)?;
    } else if args.json {
        output::write_json(out, &args.agent, &args.action, &collected.replies).map_err(io)?;
    } else {
        let mode = match (args.verbose, args.display) {
            (true, _) | (_, Some(DisplayArg::All)) => DisplayMode::All,
            (_, Some(DisplayArg::Ok)) => DisplayMode::Ok,
            (_, Some(DisplayArg::Failed)) => DisplayMode::Failed,
            _ => DisplayMode::Ddl,
        };
        output::write_results(out, Some(act), &collected.replies, mode, args.verbose)
            .map_err(io)?;
        output::write_aggregates(out, act, &collected.replies).map_err(io)?;
        summary(out, &answered)?;
        if retried {
            output::write_text_states(out, collected.tries, &states).map_err(io)?;
        }
        if args.verbose {
            writeln!(out, "Broker: {}", answered.broker).map_err(io)?;
        }
    }
    Ok(exit_code(&answered.found, collected))
}

//! `mco rpc AGENT ACTION key=value…`.

use std::io::Write;

use mco_core::config::ClientConfig;
use mco_core::ddl::{coerce_argument, Action};
use mco_core::Ddl;
use serde_json::{Map, Value};

use super::{connect, discover, exit_code, io, Exit};
use crate::cli::{DisplayArg, RpcArgs};
use crate::ddls::DdlStore;
use crate::error::ClientError;
use crate::output::{self, DisplayMode, RunSummary};
use crate::rpc::{self, Call, Wait};

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

pub(super) async fn run(
    cfg: &ClientConfig,
    args: &RpcArgs,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let store = DdlStore::load(&cfg.ddl_dirs)?;
    let (ddl, act) = action(&store, &args.agent, &args.action)?;
    let words: Vec<String> = args.inputs.iter().chain(&args.arg).cloned().collect();
    let data = inputs(act, &words)?;
    let (plan, bus) = connect(cfg, &args.target).await?;
    let started = std::time::Instant::now();
    let found = if args.json {
        // Keep stdout valid JSON for scripts: an empty array, the words on stderr.
        let mut note = Vec::new();
        let found = discover(&bus, &plan, Some(&args.agent), &mut note).await?;
        if found.is_none() {
            eprint!("{}", String::from_utf8_lossy(&note));
            writeln!(out, "[]").map_err(io)?;
        }
        found
    } else {
        discover(&bus, &plan, Some(&args.agent), out).await?
    };
    let Some(found) = found else {
        return Ok(1);
    };
    let call = Call {
        collective: plan.collective.clone(),
        agent: args.agent.clone(),
        action: args.action.clone(),
        data,
        filter: plan.filter.clone(),
    };
    if args.no_results {
        let id = rpc::fire(&bus, &call, &found.nodes).await?;
        writeln!(out, "Request sent with id: {id}").map_err(io)?;
        return Ok(0);
    }
    let timeout = plan
        .timeout
        .unwrap_or(plan.discovery_timeout + std::time::Duration::from_secs(ddl.metadata.timeout));
    let wait = Wait {
        timeout,
        batch: plan.batch,
        progress: plan.progress && !args.json,
    };
    let collected = rpc::call(&bus, &call, &found.nodes, &wait).await?;
    if args.json {
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
        output::write_summary(
            out,
            &RunSummary {
                discovered: found.nodes.len(),
                responded: collected.replies.len(),
                elapsed: started.elapsed(),
                no_response: collected.no_response.clone(),
                unexpected: collected.unexpected.clone(),
            },
        )
        .map_err(io)?;
    }
    if !collected.untrusted.is_empty() {
        eprintln!(
            "warning: ignored {} replies that failed verification (counted as no reply): {}",
            collected.untrusted.len(),
            collected.untrusted.join("; ")
        );
    }
    if collected.undecodable > 0 {
        eprintln!(
            "warning: ignored {} replies that did not decode",
            collected.undecodable
        );
    }
    Ok(exit_code(&found, &collected))
}

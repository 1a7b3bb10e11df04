//! `mco facts FACT`: how a fact's values spread over the fleet.

use std::io::Write;

use mco_core::config::ClientConfig;
use serde_json::{Map, Value};

use super::{discover, exit_code, io, Exit};
use crate::cli::TargetArgs;
use crate::error::ClientError;
use crate::output::{self, RunSummary};
use crate::rpc::{Call, Wait};
use crate::session::Session;
use crate::target::Plan;

pub(super) async fn run(
    cfg: &ClientConfig,
    fact: &str,
    verbose: bool,
    args: &TargetArgs,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let store = crate::ddls::DdlStore::load(&cfg.ddl_dirs)?;
    let (ddl, act) = super::rpc::action(&store, "rpcutil", "get_fact")?;
    let data = super::rpc::inputs(act, &[format!("fact={fact}")])?;
    let (plan, session) = Session::open(cfg, args).await?;
    let timeout = super::rpc::call_timeout(&plan, ddl);
    let result = report(&session, &plan, fact, data, timeout, verbose, out).await;
    session.finish(result)
}

async fn report(
    session: &Session,
    plan: &Plan,
    fact: &str,
    data: Map<String, Value>,
    timeout: std::time::Duration,
    verbose: bool,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let started = std::time::Instant::now();
    let Some(found) = discover(session, plan, None, out).await? else {
        return Ok(1);
    };
    let call = Call::for_plan(plan, "rpcutil", "get_fact", data);
    let wait = Wait {
        timeout,
        batch: plan.batch,
        progress: plan.progress,
        retry: plan.retry,
    };
    let c = session.call(&call, &found.nodes, &wait).await?;
    output::write_fact_report(out, fact, &c.replies, verbose).map_err(io)?;
    output::write_summary(
        out,
        &RunSummary {
            discovered: found.nodes.len(),
            responded: c.replies.len(),
            elapsed: started.elapsed(),
            no_response: c.no_response.clone(),
            unexpected: c.unexpected.clone(),
        },
    )
    .map_err(io)?;
    Ok(exit_code(&found, &c))
}

//! `mco facts FACT`: how a fact's values spread over the fleet.

use std::io::Write;

use mco_core::config::ClientConfig;

use super::{connect, discover, exit_code, io, Exit};
use crate::cli::TargetArgs;
use crate::error::ClientError;
use crate::output::{self, RunSummary};
use crate::rpc::{self, Call, Wait};

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
    let (plan, bus) = connect(cfg, args).await?;
    let started = std::time::Instant::now();
    let Some(found) = discover(&bus, &plan, None, out).await? else {
        return Ok(1);
    };
    let call = Call {
        collective: plan.collective.clone(),
        agent: "rpcutil".into(),
        action: "get_fact".into(),
        data,
        filter: plan.filter.clone(),
    };
    let wait = Wait {
        timeout: plan.timeout.unwrap_or(
            plan.discovery_timeout + std::time::Duration::from_secs(ddl.metadata.timeout),
        ),
        batch: plan.batch,
        progress: plan.progress,
    };
    let c = rpc::call(&bus, &call, &found.nodes, &wait).await?;
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

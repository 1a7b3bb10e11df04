//! `mco ping`: who is there, and how fast.

use std::io::Write;

use mco_core::config::ClientConfig;

use super::{connect, io, Exit};
use crate::cli::TargetArgs;
use crate::discovery;
use crate::error::ClientError;
use crate::output::{self, NodeReply, RunSummary};
use crate::rpc::{self, Call, Wait};
use crate::target::{self, Source};

pub(super) async fn run(
    cfg: &ClientConfig,
    args: &TargetArgs,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let (plan, bus) = connect(cfg, args).await?;
    let started = std::time::Instant::now();
    let direct = plan.source != Source::Broadcast || plan.filter.literal_identities().is_some();
    if !direct {
        let found = discovery::broadcast(
            &bus,
            &plan.collective,
            plan.filter.clone(),
            plan.timeout.unwrap_or(plan.discovery_timeout),
            plan.discovery_window,
        )
        .await?;
        let replies: Vec<NodeReply> = found
            .into_iter()
            .map(|(sender, rtt)| NodeReply {
                sender,
                status: mco_core::Status::Ok,
                message: "OK".into(),
                data: Default::default(),
                rtt,
            })
            .collect();
        output::write_ping(out, &replies).map_err(io)?;
        return Ok(if replies.is_empty() { 1 } else { 0 });
    }
    let found = discovery::discover(&bus, &plan, None).await?;
    let nodes = target::apply_limit(found.nodes.clone(), plan.limit, plan.limit_seed);
    let call = Call {
        collective: plan.collective.clone(),
        agent: "rpcutil".into(),
        action: "ping".into(),
        data: Default::default(),
        filter: plan.filter.clone(),
    };
    let wait = Wait {
        timeout: plan.timeout.unwrap_or(plan.discovery_timeout),
        batch: plan.batch,
        progress: false,
    };
    let c = rpc::call(&bus, &call, &nodes, &wait).await?;
    output::write_ping(out, &c.replies).map_err(io)?;
    if !c.no_response.is_empty() {
        output::write_summary(
            out,
            &RunSummary {
                discovered: nodes.len(),
                responded: c.replies.len(),
                elapsed: started.elapsed(),
                no_response: c.no_response.clone(),
                unexpected: c.unexpected.clone(),
            },
        )
        .map_err(io)?;
    }
    Ok(super::exit_code(&found, &c))
}

//! `mco ping`: who is there, and how fast.

use std::io::Write;

use mco_core::config::ClientConfig;

use super::{io, Exit};
use crate::cli::TargetArgs;
use crate::error::ClientError;
use crate::output::{self, NodeReply, RunSummary};
use crate::rpc::{Call, Wait};
use crate::session::Session;
use crate::target::{Plan, Source};

pub(super) async fn run(
    cfg: &ClientConfig,
    args: &TargetArgs,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let (plan, session) = Session::open(cfg, args).await?;
    let result = ping(&session, &plan, out).await;
    session.finish(result)
}

async fn ping(session: &Session, plan: &Plan, out: &mut dyn Write) -> Result<Exit, ClientError> {
    let started = std::time::Instant::now();
    let direct = plan.source != Source::Broadcast || plan.filter.literal_identities().is_some();
    if !direct {
        let found = session
            .ping(
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
    let found = session.discover(plan, None).await?;
    let call = Call::for_plan(plan, "rpcutil", "ping", Default::default());
    let wait = Wait {
        timeout: plan.timeout.unwrap_or(plan.discovery_timeout),
        batch: plan.batch,
        progress: false,
        retry: plan.retry,
    };
    let c = session.call(&call, &found.nodes, &wait).await?;
    output::write_ping(out, &c.replies).map_err(io)?;
    if !c.no_response.is_empty() {
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
    }
    Ok(super::exit_code(&found, &c))
}

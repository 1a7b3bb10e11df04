//! `mco find`: identities of matching nodes.

use std::io::Write;

use mco_core::config::ClientConfig;

use super::{io, Exit};
use crate::cli::TargetArgs;
use crate::error::ClientError;
use crate::session::Session;
use crate::target::{self, Plan, Source};

pub(super) async fn run(
    cfg: &ClientConfig,
    args: &TargetArgs,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let (plan, session) = Session::open(cfg, args).await?;
    let result = find(&session, &plan, out).await;
    session.finish(result)
}

async fn find(session: &Session, plan: &Plan, out: &mut dyn Write) -> Result<Exit, ClientError> {
    // Finding is asking the bus: literal identities are checked too, not echoed.
    let nodes = if plan.source == Source::Broadcast {
        let found = session
            .ping(
                &plan.collective,
                plan.filter.clone(),
                plan.discovery_timeout,
                plan.discovery_window,
            )
            .await?;
        let nodes = found.into_iter().map(|(id, _)| id).collect();
        target::apply_limit(nodes, plan.limit, plan.limit_seed)
    } else {
        session.discover(plan, None).await?.nodes
    };
    for n in &nodes {
        writeln!(out, "{n}").map_err(io)?;
    }
    Ok(if nodes.is_empty() { 1 } else { 0 })
}

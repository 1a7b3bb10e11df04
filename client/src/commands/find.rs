//! `mco find`: identities of matching nodes.

use std::io::Write;

use mco_core::config::ClientConfig;

use super::{connect, io, Exit};
use crate::cli::TargetArgs;
use crate::discovery;
use crate::error::ClientError;
use crate::target::{self, Source};

pub(super) async fn run(
    cfg: &ClientConfig,
    args: &TargetArgs,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let (plan, bus) = connect(cfg, args).await?;
    // Finding is asking the bus: literal identities are checked too, not echoed.
    let nodes = if plan.source == Source::Broadcast {
        discovery::broadcast(
            &bus,
            &plan.collective,
            plan.filter.clone(),
            plan.discovery_timeout,
            plan.discovery_window,
        )
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect()
    } else {
        discovery::discover(&bus, &plan, None).await?.nodes
    };
    let nodes = target::apply_limit(nodes, plan.limit, plan.limit_seed);
    for n in &nodes {
        writeln!(out, "{n}").map_err(io)?;
    }
    Ok(if nodes.is_empty() { 1 } else { 0 })
}

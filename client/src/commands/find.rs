//! `mco find`: identities of matching nodes.

use std::io::Write;

use mco_core::config::ClientConfig;

use super::{connect, io, Exit};
use crate::cli::TargetArgs;
use crate::discovery;
use crate::error::ClientError;
use crate::target;

pub(super) async fn run(
    cfg: &ClientConfig,
    args: &TargetArgs,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    let (plan, bus) = connect(cfg, args).await?;
    let found = discovery::discover(&bus, &plan, None).await?;
    let nodes = target::apply_limit(found.nodes, plan.limit, plan.limit_seed);
    for n in &nodes {
        writeln!(out, "{n}").map_err(io)?;
    }
    Ok(if nodes.is_empty() { 1 } else { 0 })
}

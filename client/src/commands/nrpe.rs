//! `mco nrpe CHECK [ARG …] [filters]`: one NRPE check across the fleet.

use std::io::Write;

use mco_core::config::ClientConfig;

use super::{io, Exit};
use crate::cli::NrpeArgs;
use crate::error::ClientError;
use crate::nrpe::{self, Outcome};
use crate::output::{self, RunSummary};

pub(super) async fn run(
    cfg: &ClientConfig,
    args: &NrpeArgs,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    match nrpe::run(cfg, args, None).await? {
        Outcome::NothingDiscovered(why) => {
            writeln!(
                out,
                "No request sent, we did not discover any nodes: {why}."
            )
            .map_err(io)?;
            Ok(nrpe::State::Unknown.code())
        }
        Outcome::Checked(report) => {
            write!(out, "{}", report.text(args.verbose)).map_err(io)?;
            let summary = RunSummary {
                discovered: report.nodes.len(),
                responded: report.nodes.iter().filter(|n| n.answered).count(),
                elapsed: report.elapsed,
                no_response: report
                    .nodes
                    .iter()
                    .filter(|n| !n.answered)
                    .map(|n| n.identity.clone())
                    .collect(),
                unexpected: Vec::new(),
            };
            output::write_summary(out, &summary).map_err(io)?;
            Ok(report.exit_code())
        }
    }
}

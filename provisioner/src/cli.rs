//! `mco-provisioner`'s command line. Its `--config` is the provisioner's
//! own file (`MCO_PROVISIONER_CONFIG`), never a client config: `MCO_CONFIG`
//! is not read.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mco_client::error::ClientError;

use crate::admin::{self, Exit};
use crate::config::ProvisionerConfig;

/// The default place of the provisioner's config.
pub const DEFAULT_CONFIG: &str = "/etc/mco/provisioner.toml";

/// `mco-provisioner`.
#[derive(Parser, Debug)]
#[command(
    name = "mco-provisioner",
    version,
    about = "The mco provisioner: finds new nodes, signs, configures and bootstraps them"
)]
pub struct Cli {
    /// The provisioner's config (provisioner.toml).
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "MCO_PROVISIONER_CONFIG",
        default_value = DEFAULT_CONFIG,
        value_name = "FILE"
    )]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run the provisioner until SIGTERM or SIGINT: find unprovisioned nodes,
    /// sign, configure, bootstrap and restart them into the fleet.
    Run,
    /// Show what the provisioner's journal says of every node.
    Status {
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Let nodes the provisioner gave up on (or that failed or are waiting)
    /// be tried again from the first attempt. With the provisioner stopped.
    Retry {
        /// Node identities.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Forget nodes: their pinned key and everything the journal holds of
    /// them, so a node re-imaged with a new key can be provisioned again.
    /// With the provisioner stopped.
    Forget {
        /// Node identities.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Print an expected node's classification as a Puppet external node
    /// classifier does (YAML: classes, parameters, environment); exit 1 for
    /// a node that is not expected.
    Classify {
        /// The node's identity (Puppet passes its certname).
        node: String,
    },
}

/// Runs a verb other than `run` (which the binary runs with its signals).
pub async fn run(
    cfg: &ProvisionerConfig,
    command: &Command,
    out: &mut dyn Write,
) -> Result<Exit, ClientError> {
    match command {
        Command::Run => Ok(0),
        Command::Status { json } => admin::status(cfg, *json, out),
        Command::Retry { nodes } => admin::retry(cfg, nodes, out),
        Command::Forget { nodes } => admin::forget(cfg, nodes, out),
        Command::Classify { node } => admin::classify(cfg, node, out).await,
    }
}

//! Command-line definitions. Help and completions come from these types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// mco: orchestrate a fleet over NATS.
#[derive(Parser, Debug)]
#[command(name = "mco", version = mco_core::VERSION, propagate_version = true)]
pub struct Cli {
    /// Client config file (default: ~/.config/mco/client.toml, then /etc/mco/client.toml).
    #[arg(long, short = 'c', env = "MCO_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Broker URL, replacing the config's servers (repeatable).
    #[arg(long = "nats", value_name = "URL", global = true)]
    pub nats: Vec<String>,
    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// Every verb.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Ping matching nodes and show round-trip times.
    Ping {
        /// Filters and discovery.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Call an agent action on matching nodes.
    Rpc(RpcArgs),
    /// Ensure, show or list resources (users, files, packages, …) on matching nodes.
    Resource(ResourceArgs),
    /// Run one NRPE check on matching nodes and aggregate the Nagios states.
    Nrpe(NrpeArgs),
    /// Report the values of one fact across matching nodes.
    Facts {
        /// The fact, dotted for nested facts.
        fact: String,
        /// List the nodes under each value.
        #[arg(short, long)]
        verbose: bool,
        /// Answer from the inventory registry, without asking the nodes.
        #[arg(long)]
        from_registry: bool,
        /// Filters and discovery.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show one node's agents, classes, facts and statistics.
    Inventory {
        /// The node's identity.
        node: String,
        /// Print JSON.
        #[arg(short = 'j', long)]
        json: bool,
        /// Answer from the inventory registry, without asking the node.
        #[arg(long)]
        from_registry: bool,
        /// Filters and discovery.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List the identities of matching nodes, one per line.
    Find {
        /// Instead: the nodes of the inventory registry whose entry is older than AGE (10m,
        /// 1h): those that stopped registering.
        #[arg(long, value_name = "AGE")]
        stale: Option<String>,
        /// Filters and discovery.
        #[command(flatten)]
        target: TargetArgs,
    },
    /// The inventory registry: every node's signed entry in a JetStream bucket.
    Registry {
        /// What to do.
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Documentation of agents from their DDLs.
    Plugin {
        /// What to do.
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// The collective's PKI: CA, certificates, CSRs, revocation, broker configuration.
    Pki {
        /// The PKI directory (default: ~/.config/mco/pki).
        #[arg(long, global = true, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// What to do.
        #[command(subcommand)]
        command: crate::commands::pki::PkiCommand,
    },
    /// Provisioning: `run` the provisioner service, show its `status`,
    /// `retry` nodes it gave up on or `forget` nodes. Runs `mco-provisioner`
    /// with these arguments: `--config` here names the provisioner's config
    /// (or MCO_PROVISIONER_CONFIG), never a client config.
    #[command(disable_help_flag = true)]
    Provision {
        /// `mco-provisioner`'s arguments (`run --config provisioner.toml`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<std::ffi::OsString>,
    },
    /// Print an expected node's classification as a Puppet external node
    /// classifier (`mco-provisioner classify`): for a master's `external_nodes`.
    #[command(disable_help_flag = true)]
    Classify {
        /// The node, and `mco-provisioner`'s options (`--config FILE`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<std::ffi::OsString>,
    },
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `mco plugin …`.
#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Show an agent's actions, inputs and outputs; without AGENT, list known agents.
    Doc {
        /// The agent.
        agent: Option<String>,
    },
}

/// `mco rpc AGENT ACTION [key=value …]`.
#[derive(Args, Debug)]
pub struct RpcArgs {
    /// Agent name.
    pub agent: String,
    /// Action name.
    pub action: String,
    /// Inputs as key=value, converted by the DDL's types.
    pub inputs: Vec<String>,
    /// An input as key=value (repeatable).
    #[arg(long = "arg", value_name = "KEY=VALUE")]
    pub arg: Vec<String>,
    /// Print a JSON array of replies instead of text.
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Which results to print (default: the DDL's display rule).
    #[arg(long, value_enum)]
    pub display: Option<DisplayArg>,
    /// Show every result with its status message and timing.
    #[arg(short, long)]
    pub verbose: bool,
    /// Send the request without waiting for replies; print the request id.
    #[arg(long)]
    pub no_results: bool,
    /// Filters and discovery.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `mco resource TYPE [NAME] [PROPERTY=VALUE …]`.
#[derive(Args, Debug)]
pub struct ResourceArgs {
    /// The type: user, group, file, package, service, exec, host, mailalias, cron, ssh_authorized_key.
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// The resource's name; given alone, the resource is shown.
    pub name: Option<String>,
    /// Desired properties as property=value; the nodes make it so.
    #[arg(value_name = "PROPERTY=VALUE")]
    pub properties: Vec<String>,
    /// Report what would change and change nothing.
    #[arg(long)]
    pub noop: bool,
    /// List every resource of the type on each node.
    #[arg(long, conflicts_with_all = ["name", "properties", "noop"])]
    pub search: bool,
    /// With --search: most resources per node.
    #[arg(long, requires = "search", value_name = "N")]
    pub limit: Option<u64>,
    /// Print a JSON array of replies instead of text.
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Show unchanged nodes too, and whole resources in --search.
    #[arg(short, long)]
    pub verbose: bool,
    /// Filters and discovery.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `mco nrpe CHECK [ARG …] [filters]`, and the arguments of `check_mco_nrpe`.
#[derive(Args, Debug, Clone)]
pub struct NrpeArgs {
    /// The check: a command[NAME] defined on the nodes; `NAME!ARG1!ARG2` works too.
    pub check: String,
    /// Arguments for $ARG1$, $ARG2$ … (after `--` when one starts with a dash).
    pub args: Vec<String>,
    /// Show every node, OK ones included (`mco nrpe` adds their performance data).
    #[arg(short, long)]
    pub verbose: bool,
    /// Expect at least N nodes: those not discovered count as UNKNOWN (see --unknown-as).
    #[arg(long, value_name = "N")]
    pub expect: Option<usize>,
    /// How to count nodes that did not answer or were expected but not found.
    #[arg(long, value_enum, value_name = "STATE", default_value = "unknown")]
    pub unknown_as: crate::nrpe::UnknownAs,
    /// Filters and discovery.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `--display`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayArg {
    /// Only successful results.
    Ok,
    /// Only failed results.
    Failed,
    /// Every result.
    All,
}

/// Filters, discovery, limits and batching, shared by every verb.
#[derive(Args, Debug, Clone, Default)]
pub struct TargetArgs {
    /// Identity filter: exact, glob or /regex/ (repeatable; any may match).
    #[arg(short = 'I', long = "identity", value_name = "ID")]
    pub with_identity: Vec<String>,
    /// Fact filter: NAME OP VALUE (repeatable; all must hold).
    #[arg(
        short = 'F',
        long = "wf",
        visible_alias = "with-fact",
        value_name = "FACT"
    )]
    pub with_fact: Vec<String>,
    /// Class filter: exact or /regex/ (repeatable; all must be present).
    #[arg(
        short = 'C',
        long = "wc",
        visible_alias = "with-class",
        value_name = "CLASS"
    )]
    pub with_class: Vec<String>,
    /// Agent filter (repeatable; all must be hosted).
    #[arg(
        short = 'A',
        long = "wa",
        visible_alias = "with-agent",
        value_name = "AGENT"
    )]
    pub with_agent: Vec<String>,
    /// Mixed fact or class filter, MCollective style: space-separated terms (repeatable).
    #[arg(short = 'W', long = "with", value_name = "FILTER")]
    pub with: Vec<String>,
    /// Compound filter: `(role=web or role=db) and not /^test/`.
    #[arg(short = 'S', long = "select", value_name = "EXPR")]
    pub select: Vec<String>,
    /// Collective to address (default: the config's).
    #[arg(short = 'T', long = "target", value_name = "COLLECTIVE")]
    pub collective: Option<String>,
    /// Discovery timeout, seconds or a duration (2s, 500ms).
    #[arg(
        long = "dt",
        visible_alias = "discovery-timeout",
        value_name = "DURATION"
    )]
    pub discovery_timeout: Option<String>,
    /// Quiet window that ends broadcast discovery early; 0 waits the whole timeout.
    #[arg(long = "discovery-window", value_name = "DURATION")]
    pub discovery_window: Option<String>,
    /// Where the node list comes from.
    #[arg(long = "discovery-method", visible_alias = "dm", value_enum)]
    pub discovery_method: Option<DiscoveryMethod>,
    /// Read identities from FILE (one per line) instead of discovering.
    #[arg(long = "nodes", value_name = "FILE")]
    pub nodes: Option<PathBuf>,
    /// How long to wait for replies (default: discovery timeout + the DDL's timeout).
    #[arg(short = 't', long = "timeout", value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Send to N nodes at a time.
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
    /// Pause between batches.
    #[arg(long = "batch-sleep", value_name = "DURATION", requires = "batch")]
    pub batch_sleep: Option<String>,
    /// Act on only N nodes, or N% of them.
    #[arg(long = "limit-nodes", visible_alias = "ln", value_name = "N|N%")]
    pub limit_nodes: Option<String>,
    /// Seed for choosing the limited nodes (same seed, same nodes).
    #[arg(long = "limit-seed", value_name = "SEED", requires = "limit_nodes")]
    pub limit_seed: Option<u64>,
    /// No progress bar.
    #[arg(long = "np", visible_alias = "no-progress")]
    pub no_progress: bool,
    /// Re-send up to N times to the nodes that did not answer, each time as a new request;
    /// the output then gives each node's final state.
    #[arg(long, value_name = "N")]
    pub retry: Option<u32>,
    /// Pause before each re-send (default 1s).
    #[arg(long = "retry-delay", value_name = "DURATION", requires = "retry")]
    pub retry_delay: Option<String>,
}

/// `mco registry …`.
#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Create the bucket (an inventory admin's right; see `mco pki broker-config
    /// --inventory-admin`).
    Init {
        /// Drop an entry not rewritten for this long: the node is forgotten.
        #[arg(long, default_value = "168h", value_name = "AGE")]
        max_age: String,
        /// Copies kept in a cluster (at most the number of servers).
        #[arg(long, default_value_t = 1, value_name = "N")]
        replicas: usize,
    },
}

/// `--discovery-method`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryMethod {
    /// Ask the bus who matches (default).
    Broadcast,
    /// Identities from `--nodes FILE`.
    Flatfile,
    /// Identities from standard input, one per line.
    Stdin,
    /// The nodes of the inventory registry the filter selects: every node that should
    /// answer, including those too busy or gone silent to answer a broadcast.
    Inventory,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}

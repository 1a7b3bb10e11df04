//! Every `mco` verb, one module each.

mod doc;
mod facts;
mod find;
mod inventory;
mod nrpe;
mod ping;
pub mod pki;
mod pki_broker;
mod provision;
mod registry;
mod resource;
mod rpc;

use std::io::Write;

use crate::cli::{Cli, Command, PluginCommand, RegistryCommand};
use crate::discovery::Discovered;
use crate::error::ClientError;
use crate::rpc::Collected;
use crate::session::Session;
use crate::target::Plan;

/// What a verb produced: the process exit code.
pub type Exit = u8;

/// Runs the parsed command line, writing to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<Exit, ClientError> {
    if let Command::Completion { shell } = &cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(*shell, &mut cmd, "mco", out);
        return Ok(0);
    }
    if let Command::Pki { dir, command } = &cli.command {
        let code = pki::run(dir.as_deref(), command, out)?;
        if code != 0 || !command.publishes() {
            return Ok(code);
        }
        let crl = pki::pki_dir(dir.as_deref())?.join(mco_pki::CA_CRL);
        let cfg = crate::config::load(cli.config.as_deref(), &cli.nats)?;
        return registry::publish_crl(&cfg, &crl, out).await;
    }
    if let Command::Provision { args } = &cli.command {
        return provision::exec(None, args);
    }
    if let Command::Classify { args } = &cli.command {
        return provision::exec(Some("classify"), args);
    }
    let cfg = crate::config::load(cli.config.as_deref(), &cli.nats)?;
    match cli.command {
        Command::Ping { target } => ping::run(&cfg, &target, out).await,
        Command::Rpc(args) => rpc::run(&cfg, &args, out).await,
        Command::Resource(args) => resource::run(&cfg, &args, out).await,
        Command::Nrpe(args) => nrpe::run(&cfg, &args, out).await,
        Command::Facts {
            fact,
            verbose,
            from_registry: true,
            target,
        } => registry::facts(&cfg, &fact, verbose, &target, out).await,
        Command::Facts {
            fact,
            verbose,
            target,
            ..
        } => facts::run(&cfg, &fact, verbose, &target, out).await,
        Command::Inventory {
            node,
            json,
            from_registry,
            target,
        } => inventory::run(&cfg, &node, json, from_registry, &target, out).await,
        Command::Find {
            stale: Some(age),
            target,
        } => {
            let age = crate::target::duration_arg("--stale", &Some(age))?.unwrap_or_default();
            registry::stale(&cfg, &target, age, out).await
        }
        Command::Find { target, .. } => find::run(&cfg, &target, out).await,
        Command::Registry {
            command: RegistryCommand::Init { max_age, replicas },
        } => {
            let age = crate::target::duration_arg("--max-age", &Some(max_age))?
                .unwrap_or(registry::DEFAULT_MAX_AGE);
            registry::init(&cfg, age, replicas, out).await
        }
        Command::Plugin {
            command: PluginCommand::Doc { agent },
        } => doc::run(&cfg, agent.as_deref(), out),
        Command::Completion { .. }
        | Command::Pki { .. }
        | Command::Provision { .. }
        | Command::Classify { .. } => Ok(0),
    }
}

/// Discovers for `plan` through `session`; `None` (after saying so on
/// `out`) when nothing was found.
async fn discover(
    session: &Session,
    plan: &Plan,
    agent: Option<&str>,
    out: &mut dyn Write,
) -> Result<Option<Discovered>, ClientError> {
    let found = session.discover(plan, agent).await?;
    if found.nodes.is_empty() {
        writeln!(out, "No request sent, we did not discover any nodes.").map_err(io)?;
        return Ok(None);
    }
    Ok(Some(found))
}

/// The exit code of a finished call (ARCHITECTURE.md §5).
pub fn exit_code(found: &Discovered, c: &Collected) -> Exit {
    if c.replies.is_empty() {
        return if found.by_broadcast { 3 } else { 4 };
    }
    if !c.no_response.is_empty() || c.replies.iter().any(|r| r.status != mco_core::Status::Ok) {
        2
    } else {
        0
    }
}

fn io(e: std::io::Error) -> ClientError {
    ClientError::file("writing the output", e)
}

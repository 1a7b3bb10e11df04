//! `mco-responder`: parse arguments, load config, run the daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use mco_core::config::ResponderConfig;
use mco_responder::{daemon, Options};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Notify};

/// mimalloc: the system allocator spent about a third of a busy fleet's CPU
/// in its own bookkeeping (see `bench/RESULTS.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The mco responder: serves this node's agents on the NATS bus.
#[derive(Parser, Debug)]
#[command(name = "mco-responder", version = mco_core::VERSION)]
struct Args {
    /// Config file.
    #[arg(
        long,
        short = 'c',
        env = "MCO_CONFIG",
        default_value = "/etc/mco/responder.toml"
    )]
    config: PathBuf,
    /// Broker URL, replacing the config's servers (repeatable).
    #[arg(long = "nats", value_name = "URL")]
    nats: Vec<String>,
    /// Serve N virtual nodes named `<identity>-NNNN`, each with its own connection.
    #[arg(long, value_name = "N")]
    fleet: Option<usize>,
    /// Log level, overriding the config's (error, warn, info, debug, trace).
    #[arg(long)]
    log_level: Option<String>,
}

const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            // Help and --version are success; bad usage exits 64 (EX_USAGE).
            return ExitCode::from(if usage { 64 } else { 0 });
        }
    };
    let mut cfg = match ResponderConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mco-responder: bad configuration:\n{e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    if !args.nats.is_empty() {
        cfg.nats.servers = args.nats.clone();
    }
    if args.fleet == Some(0) {
        eprintln!("mco-responder: --fleet needs at least 1 node");
        return ExitCode::from(EX_USAGE);
    }
    let level = args
        .log_level
        .clone()
        .unwrap_or_else(|| cfg.log_level.clone());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},async_nats=warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| mco_core::logline::Escaping(std::io::stderr()))
        .init();
    let opts = Options { fleet: args.fleet };
    let registry = match daemon::preflight(&cfg, &opts) {
        Ok((r, warnings)) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
            r
        }
        Err(e) => {
            eprintln!("mco-responder: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mco-responder: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let (tx, rx) = watch::channel(false);
        let reload = Arc::new(Notify::new());
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            eprintln!("mco-responder: cannot install signal handlers");
            return ExitCode::FAILURE;
        };
        let reload2 = reload.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    _ = hup.recv() => { reload2.notify_one(); continue; }
                }
            }
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = tx.send(true);
        });
        match mco_responder::run(cfg, registry, opts, rx, reload).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mco-responder: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

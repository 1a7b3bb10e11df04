//! `mco-provisioner`: the provisioning service and the operator's verbs on it.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use mco_provisioner::cli::{Cli, Command};
use mco_provisioner::ProvisionerConfig;

/// mimalloc: the system allocator spent about a third of a busy fleet's CPU
/// in its own bookkeeping (see `bench/RESULTS.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return ExitCode::from(if usage { 64 } else { 0 });
        }
    };
    // The service logs what it does; the verbs only what goes wrong.
    let default_log = if matches!(cli.command, Command::Run) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(mco_provisioner::webhook::quiet_wire_dumps(
            tracing_subscriber::EnvFilter::try_from_env("MCO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
        ))
        .with_writer(|| mco_core::logline::Escaping(std::io::stderr()))
        .init();
    let cfg = match ProvisionerConfig::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mco-provisioner: {e}");
            return ExitCode::from(78);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mco-provisioner: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let mut buf: Vec<u8> = Vec::new();
    let result = rt.block_on(async {
        match &cli.command {
            Command::Run => mco_provisioner::run(cfg, shutdown()).await.map(|()| 0),
            other => mco_provisioner::cli::run(&cfg, other, &mut buf).await,
        }
    });
    let mut stdout = std::io::stdout().lock();
    // What nodes said (errors in the journal) reaches a terminal only through
    // the one filter every mco output passes.
    let buf = mco_client::terminal::clean(&buf);
    if let Err(e) = stdout.write_all(&buf).and_then(|_| stdout.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("mco-provisioner: cannot write output: {e}");
            return ExitCode::from(1);
        }
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!(
                "mco-provisioner: {}",
                mco_client::terminal::clean_str(&e.to_string())
            );
            ExitCode::from(e.exit_code())
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

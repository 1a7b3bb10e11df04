//! `mco`: parse arguments, run the verb, map the outcome to an exit code.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use mco_client::cli::Cli;

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
            // Help and --version are success; bad usage exits 64 (EX_USAGE).
            return ExitCode::from(if usage { 64 } else { 0 });
        }
    };
    let default_log = "warn";
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MCO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
        )
        .with_writer(|| mco_core::logline::Escaping(std::io::stderr()))
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mco: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let mut buf: Vec<u8> = Vec::new();
    let result = rt.block_on(mco_client::commands::run(cli, &mut buf));
    let mut stdout = std::io::stdout().lock();
    let buf = mco_client::terminal::clean(&buf);
    if let Err(e) = stdout.write_all(&buf).and_then(|_| stdout.flush()) {
        // A closed pipe (mco find | head) is success.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("mco: cannot write output: {e}");
            return ExitCode::from(1);
        }
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mco: {}", mco_client::terminal::clean_str(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

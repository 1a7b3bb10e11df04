//! `check_mco_nrpe`: one Nagios/Icinga check over many nodes.
//!
//! Follows the monitoring plugin guidelines: everything goes to standard
//! output, line 1 is the status with performance data, the exit code is the
//! state (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), and anything that stops
//! the check itself — bad usage, bad configuration, no broker, nothing
//! discovered, running out of time — is UNKNOWN with a line saying why.
//! `-t` bounds the whole run, so the check ends inside the monitoring core's
//! own service timeout.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use mco_client::cli::NrpeArgs;
use mco_client::nrpe::{self, Outcome, State};

/// mimalloc: the system allocator spent about a third of a busy fleet's CPU
/// in its own bookkeeping (see `bench/RESULTS.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The whole run's time limit when `-t` is not given.
const DEFAULT_BUDGET: Duration = Duration::from_secs(10);

/// check_mco_nrpe: run one NRPE check on every matching node and report the
/// aggregated Nagios state.
#[derive(Parser, Debug)]
#[command(name = "check_mco_nrpe", version = mco_core::VERSION)]
struct Cli {
    /// Client config file (default: ~/.config/mco/client.toml, then /etc/mco/client.toml).
    #[arg(long, short = 'c', env = "MCO_CONFIG")]
    config: Option<PathBuf>,
    /// Broker URL, replacing the config's servers (repeatable).
    #[arg(long = "nats", value_name = "URL")]
    nats: Vec<String>,
    #[command(flatten)]
    check: NrpeArgs,
}

/// Prints `text` (the plugin output) and returns `state` as the exit code.
fn finish(text: &str, state: State) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(&mco_client::terminal::clean(text.as_bytes()))
        .and_then(|_| stdout.flush());
    ExitCode::from(state.code())
}

fn unknown(name: &str, why: &str) -> ExitCode {
    let mut lines = why.lines();
    let first = lines.next().unwrap_or_default().replace('|', "/");
    let mut text = format!("{name}: UNKNOWN: {first}\n");
    for l in lines {
        text.push_str(&l.replace('|', "/"));
        text.push('\n');
    }
    finish(&text, State::Unknown)
}

fn main() -> ExitCode {
    let command = Cli::command().mut_arg("timeout", |a| {
        a.help("Time limit for the whole check: discovery and replies (default: 10s)")
    });
    let cli = match command
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => {
            if !e.use_stderr() {
                // --help and --version.
                return finish(&e.to_string(), State::Ok);
            }
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            return unknown("check_mco_nrpe", &format!("usage error: {text}"));
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MCO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(|| mco_core::logline::Escaping(std::io::stderr()))
        .init();
    let name = nrpe::check_and_args(&cli.check).0;
    let budget = match cli.check.target.timeout.as_deref() {
        None => DEFAULT_BUDGET,
        Some(t) => match mco_core::config::parse_duration(t) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => return unknown(&name, "usage error: -t must be more than zero"),
            Err(e) => return unknown(&name, &format!("usage error: -t: {e}")),
        },
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return unknown(&name, &format!("cannot start the runtime: {e}")),
    };
    let result = rt.block_on(async {
        let cfg = mco_client::config::load(cli.config.as_deref(), &cli.nats)?;
        let run = nrpe::run(&cfg, &cli.check, Some(budget));
        match tokio::time::timeout(budget, run).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    });
    match result {
        Ok(Some(Outcome::Checked(report))) => {
            finish(&report.plugin_output(cli.check.verbose), report.state())
        }
        Ok(Some(Outcome::NothingDiscovered(why))) => unknown(&name, &why),
        Ok(None) => unknown(
            &name,
            &format!("the check did not finish within {}s", budget.as_secs_f64()),
        ),
        Err(e) => unknown(&name, &e.to_string()),
    }
}

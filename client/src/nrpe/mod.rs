//! The client side of the `nrpe` agent, shared by `mco nrpe` and the
//! `check_mco_nrpe` Nagios plugin: run one check on every matching node and
//! aggregate the states.
//!
//! The key decision is that a node that should have answered and did not is
//! a result, not an absence: discovered (or `--nodes`-listed) nodes that stay
//! silent, and nodes `--expect` wants beyond those found, are counted as
//! UNKNOWN (or CRITICAL with `--unknown-as critical`) and named, so the
//! aggregated check cannot turn green because half the fleet is down.

pub mod perfdata;
pub mod report;

use std::time::Duration;

use clap::ValueEnum;
use mco_core::config::ClientConfig;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::cli::NrpeArgs;
use crate::ddls::DdlStore;
use crate::error::ClientError;
use crate::rpc::{self, Call, Wait};
use crate::session::Session;
use crate::target::{self, Plan};

pub use report::{NodeCheck, Report, State};

/// The agent and action a check calls.
pub const AGENT: &str = "nrpe";
/// The action a check calls.
pub const ACTION: &str = "runcommand";

/// How nodes that did not answer are counted.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownAs {
    /// As UNKNOWN (exit 3).
    #[default]
    Unknown,
    /// As CRITICAL (exit 2).
    Critical,
}

impl UnknownAs {
    fn state(self) -> State {
        match self {
            UnknownAs::Unknown => State::Unknown,
            UnknownAs::Critical => State::Critical,
        }
    }
}

/// What a check run came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nodes were asked: the report.
    Checked(Report),
    /// No node was found to ask; why, in words.
    NothingDiscovered(String),
}

/// The check name and its `!`-separated arguments: `CHECK ARG…` or NRPE's
/// own `CHECK!ARG1!ARG2`.
pub fn check_and_args(args: &NrpeArgs) -> (String, Option<String>) {
    let (check, inline) = match args.check.split_once('!') {
        Some((c, rest)) => (c.to_string(), Some(rest.to_string())),
        None => (args.check.clone(), None),
    };
    let all: Vec<String> = inline
        .into_iter()
        .chain(args.args.iter().cloned())
        .collect();
    (check, (!all.is_empty()).then(|| all.join("!")))
}

/// Checks the request against the nrpe DDL: a bad check name or unsafe
/// arguments are usage errors, found before anything is sent. Returns the
/// request's data and the DDL's timeout.
pub fn request_data(
    cfg: &ClientConfig,
    args: &NrpeArgs,
) -> Result<(Map<String, Value>, Duration), ClientError> {
    let store = DdlStore::load(&cfg.ddl_dirs)?;
    let ddl = store
        .get(AGENT)
        .ok_or_else(|| ClientError::Usage(format!("no DDL for agent '{AGENT}'")))?;
    let act = ddl
        .action(ACTION)
        .ok_or_else(|| ClientError::Usage(format!("the {AGENT} DDL has no {ACTION} action")))?;
    let (check, extra) = check_and_args(args);
    let mut data = Map::new();
    data.insert("command".into(), Value::String(check));
    if let Some(a) = extra {
        data.insert("args".into(), Value::String(a));
    }
    act.validate(&mut data)
        .map_err(|e| ClientError::Usage(format!("{}: {}", e.status.label(), e.message)))?;
    Ok((data, Duration::from_secs(ddl.metadata.timeout.max(1))))
}

/// Runs the check. With `budget`, the whole run — connecting, discovery and
/// the call — ends within it (the plugin's `-t`); otherwise `-t` is the reply
/// timeout as for every verb.
pub async fn run(
    cfg: &ClientConfig,
    args: &NrpeArgs,
    budget: Option<Duration>,
) -> Result<Outcome, ClientError> {
    let started = Instant::now();
    let (data, ddl_timeout) = request_data(cfg, args)?;
    let check = data
        .get("command")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut plan = target::resolve(&args.target, cfg)?.read_listed().await?;
    if let Some(b) = budget {
        plan.discovery_timeout = plan.discovery_timeout.min(b * 2 / 5);
    }
    let session = match budget {
        Some(b) => tokio::time::timeout(left(started, b), Session::for_plan(cfg, &plan))
            .await
            .map_err(|_| {
                ClientError::Timeout(format!(
                    "cannot connect to the broker at {}: timed out",
                    cfg.nats.servers.join(", ")
                ))
            })??,
        None => Session::for_plan(cfg, &plan).await?,
    };
    let asked = Asked {
        data,
        check,
        ddl_timeout,
        budget,
        started,
    };
    let result = run_check(&session, &plan, args, asked).await;
    session.finish(result)
}

/// What is left of `budget` since `started`, keeping a margin to print the
/// result.
fn left(started: Instant, budget: Duration) -> Duration {
    let margin = (budget / 10).min(Duration::from_millis(500));
    (started + budget)
        .checked_duration_since(Instant::now())
        .map_or(Duration::ZERO, |d| d.saturating_sub(margin))
}

/// What [`run_check`] asks, and within what.
struct Asked {
    data: Map<String, Value>,
    check: String,
    ddl_timeout: Duration,
    budget: Option<Duration>,
    started: Instant,
}

/// The check itself, on a connected session.
async fn run_check(
    session: &Session,
    plan: &Plan,
    args: &NrpeArgs,
    asked: Asked,
) -> Result<Outcome, ClientError> {
    let Asked {
        data,
        check,
        ddl_timeout,
        budget,
        started,
    } = asked;
    let found = session.discover(plan, Some(AGENT)).await?;
    let unknown = args.unknown_as.state();
    let expected_extra = args.expect.unwrap_or(0).saturating_sub(found.nodes.len());
    if found.nodes.is_empty() && expected_extra == 0 {
        return Ok(Outcome::NothingDiscovered(format!(
            "no nodes with the {AGENT} agent matched the filter in collective {}",
            plan.collective
        )));
    }
    let timeout = match budget {
        Some(b) => left(started, b),
        None => plan.timeout.unwrap_or(plan.discovery_timeout + ddl_timeout),
    };
    let call = Call::for_plan(plan, AGENT, ACTION, data);
    let collected = if found.nodes.is_empty() {
        rpc::Collected::default()
    } else {
        let wait = Wait {
            timeout,
            batch: plan.batch,
            progress: plan.progress && budget.is_none(),
            retry: plan.retry,
        };
        session.call(&call, &found.nodes, &wait).await?
    };
    let mut nodes: Vec<NodeCheck> = collected
        .replies
        .iter()
        .map(NodeCheck::from_reply)
        .collect();
    nodes.extend(
        collected
            .no_response
            .iter()
            .map(|id| NodeCheck::silent(id, unknown, timeout)),
    );
    nodes.sort_by(|a, b| a.identity.cmp(&b.identity));
    Ok(Outcome::Checked(Report {
        check,
        nodes,
        missing: (expected_extra > 0).then_some((expected_extra, unknown)),
        elapsed: started.elapsed(),
        broker_lost: collected.broker_lost,
    }))
}

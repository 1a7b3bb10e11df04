//! The `nrpe` agent: runs Nagios checks defined in NRPE configuration files,
//! so that one request checks a whole fleet and the client aggregates the
//! states (`mco nrpe`, `check_mco_nrpe`).
//!
//! Definitions are the operator's existing `command[NAME]=…` lines
//! ([`defs`]), re-read when their files change. Only a name and, where the
//! node allows them (`allow_arguments`), `!`-separated arguments come from
//! the bus; each argument is one plain word and takes the place of `$ARGn$`
//! as exactly one word of what runs ([`cmdline`]). The key decision is to
//! run a check **without a shell** whenever its line is plain words (the
//! common case), and through `/bin/sh -c` only for shell syntax the operator
//! wrote, arguments then passed as positional parameters the shell never
//! parses; a check runs in its own process group, which is killed as a whole
//! on timeout ([`run`]).
//!
//! Replies follow the plugin's state: exit 0 is status OK; 1, 2 and 3 are
//! status 1 (aborted) with `WARNING`, `CRITICAL` or `UNKNOWN` in the message
//! and every output still attached, so the client can count and show them;
//! anything else that goes wrong is UNKNOWN (exit code 3) with a message
//! saying what.

#![forbid(unsafe_code)]

pub mod cmdline;
pub mod config;
pub mod defs;
pub mod output;
pub mod run;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use mco_core::agent::{ActionError, ActionResult, Agent, Outputs, RequestContext};
use mco_core::{Ddl, Status};
use serde_json::{json, Map, Value};

pub use config::NrpeConfig;

use cmdline::ArgPolicy;
use defs::{Definitions, Loaded};
use run::Ran;

/// The DDL shipped in `ddl/nrpe.json`.
pub const DDL_JSON: &str = include_str!("../../../ddl/nrpe.json");

/// How many checks `runallcommands` runs at once.
pub const PARALLEL_CHECKS: usize = 4;

/// The exit code of the UNKNOWN state.
pub const UNKNOWN: i64 = 3;

/// The nrpe agent.
pub struct Nrpe {
    ddl: Ddl,
    defs: Arc<Definitions>,
    timeout: Duration,
    args: ArgPolicy,
}

/// One check's result, as replies carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (anything odd is 3).
    pub exitcode: i64,
    /// First line of output (or what went wrong).
    pub output: String,
    /// The rest of the output.
    pub long_output: String,
    /// Performance data.
    pub perfdata: String,
    /// The command line run (empty when none was).
    pub command: String,
}

impl CheckResult {
    fn unknown(command: &str, output: String) -> CheckResult {
        CheckResult {
            exitcode: UNKNOWN,
            output,
            long_output: String::new(),
            perfdata: String::new(),
            command: command.to_string(),
        }
    }

    /// The state's name.
    pub fn state(&self) -> &'static str {
        match self.exitcode {
            0 => "OK",
            1 => "WARNING",
            2 => "CRITICAL",
            _ => "UNKNOWN",
        }
    }

    fn outputs(&self) -> Outputs {
        let mut m = Map::new();
        m.insert("exitcode".into(), json!(self.exitcode));
        m.insert("output".into(), json!(self.output));
        m.insert("long_output".into(), json!(self.long_output));
        m.insert("perfdata".into(), json!(self.perfdata));
        m.insert("command".into(), json!(self.command));
        m
    }
}

impl Nrpe {
    /// The agent reading the definitions `cfg` names.
    pub fn new(cfg: NrpeConfig) -> Nrpe {
        static DDL: OnceLock<Ddl> = OnceLock::new();
        let ddl = DDL
            .get_or_init(|| {
                Ddl::from_json("ddl/nrpe.json", DDL_JSON).expect("the shipped nrpe DDL loads")
            })
            .clone();
        // Leave a second of the DDL's timeout to build the reply, so a slow
        // check is reported as a timeout rather than cut off without outputs.
        let ceiling = Duration::from_secs(ddl.metadata.timeout.max(2) - 1);
        let timeout = cfg.timeout.min(ceiling);
        let args = cfg.args;
        Nrpe {
            args,
            ddl,
            defs: Arc::new(Definitions::new(cfg)),
            timeout,
        }
    }

    /// The per-command timeout in force.
    pub fn command_timeout(&self) -> Duration {
        self.timeout
    }

    async fn load(&self) -> Loaded {
        let defs = self.defs.clone();
        tokio::task::spawn_blocking(move || defs.load())
            .await
            .unwrap_or_default()
    }

    /// Runs the definition `name` with `args` (already split and checked).
    async fn check(&self, loaded: &Loaded, name: &str, args: &[String]) -> CheckResult {
        let Some(template) = loaded.commands.get(name) else {
            let mut why = format!("UNKNOWN: no command '{name}' is defined on this node");
            if !loaded.problems.is_empty() {
                why.push_str(&format!(" ({})", loaded.problems.join("; ")));
            }
            return CheckResult::unknown("", why);
        };
        let prog = match cmdline::prepare(template, args) {
            Ok(p) => p,
            Err(e) => return CheckResult::unknown(template, format!("UNKNOWN: {e}")),
        };
        let line = prog.display();
        match run::run(&prog, self.timeout).await {
            Ran::Exited { code, text } => {
                let split = output::split(&text);
                let mut r = CheckResult {
                    exitcode: i64::from(code),
                    output: split.output,
                    long_output: split.long_output,
                    perfdata: split.perfdata,
                    command: line,
                };
                if !(0..=3).contains(&code) {
                    r.exitcode = UNKNOWN;
                    r.output = if r.output.is_empty() {
                        format!("UNKNOWN: the check exited with code {code}")
                    } else {
                        format!("UNKNOWN: the check exited with code {code}: {}", r.output)
                    };
                } else if r.output.is_empty() {
                    r.output = "(no output)".into();
                }
                r
            }
            Ran::Signalled(sig) => CheckResult::unknown(
                &line,
                format!("UNKNOWN: the check was killed by signal {sig}"),
            ),
            Ran::TimedOut(t) => CheckResult::unknown(
                &line,
                format!(
                    "UNKNOWN: the check timed out after {}s and was killed",
                    t.as_secs_f64()
                ),
            ),
            Ran::NotStarted(why) => {
                CheckResult::unknown(&line, format!("UNKNOWN: the check could not be run: {why}"))
            }
        }
    }

    async fn runcommand(&self, input: &Map<String, Value>) -> ActionResult {
        let name = input
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !defs::valid_name(name) {
            return Err(ActionError::new(
                Status::InvalidData,
                format!("command {name:?} is not a valid command name (letters, digits, _ and -)"),
            ));
        }
        let args = match input.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => self
                .args
                .split(s)
                .map_err(|e| ActionError::new(Status::InvalidData, e.to_string()))?,
            Some(_) => {
                return Err(ActionError::new(
                    Status::InvalidData,
                    "args must be a string of !-separated arguments",
                ))
            }
        };
        let loaded = self.load().await;
        let r = self.check(&loaded, name, &args).await;
        match r.exitcode {
            0 => Ok(r.outputs()),
            _ => {
                let msg = if r.output.starts_with(r.state()) {
                    r.output.clone()
                } else {
                    format!("{}: {}", r.state(), r.output)
                };
                Err(ActionError::aborted(msg).with_data(r.outputs()))
            }
        }
    }

    async fn runallcommands(&self) -> ActionResult {
        let loaded = self.load().await;
        let names: Vec<String> = loaded.commands.keys().cloned().collect();
        let loaded = &loaded;
        let results: Vec<(String, CheckResult)> = futures::stream::iter(names)
            .map(|name| async move {
                let r = self.check(loaded, &name, &[]).await;
                (name, r)
            })
            .buffer_unordered(PARALLEL_CHECKS)
            .collect()
            .await;
        let mut commands = Map::new();
        for (name, r) in results {
            commands.insert(
                name,
                json!({"exitcode": r.exitcode, "output": r.output, "perfdata": r.perfdata}),
            );
        }
        let mut out = Map::new();
        out.insert("commands".into(), Value::Object(commands));
        Ok(out)
    }
}

#[async_trait::async_trait]
impl Agent for Nrpe {
    fn ddl(&self) -> &Ddl {
        &self.ddl
    }

    async fn call(
        &self,
        action: &str,
        input: &Map<String, Value>,
        _ctx: &RequestContext,
    ) -> ActionResult {
        match action {
            "runcommand" => self.runcommand(input).await,
            "runallcommands" => self.runallcommands().await,
            "list" => {
                let loaded = self.load().await;
                let names: Vec<&String> = loaded.commands.keys().collect();
                let mut out = Map::new();
                out.insert("commands".into(), json!(names));
                Ok(out)
            }
            other => Err(ActionError::new(
                Status::UnknownAction,
                format!("nrpe has no action '{other}'"),
            )),
        }
    }
}

#[cfg(test)]
mod tests;

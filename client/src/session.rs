//! A session: the one call path every verb takes.
//!
//! A [`Session`] owns the connection (credentials, trust, pins), and every
//! request goes out through it: discovery, the expected set, batching,
//! timeouts, binding and signing ([`Bus::send`]), verification of the
//! replies, and the warnings about what was ignored or lost, which it says
//! after every discovery and call — on stderr for a command, in the log for
//! a daemon ([`Warnings`]). A verb is a thin layer: it builds a [`Call`],
//! asks the session, and prints. The caches a session fills (checked node
//! certificates, key pins) are saved by [`Session::close`], not on drop.

use std::sync::Arc;
use std::time::Duration;

use mco_core::config::ClientConfig;
use mco_core::Filter;

use crate::bus::Bus;
use crate::cli::TargetArgs;
use crate::discovery::{self, Discovered};
use crate::error::ClientError;
use crate::output::NodeReply;
use crate::pins::KeyPins;
use crate::rpc::{self, Call, Collected, Wait};
use crate::target::{self, Plan};

/// Where a session says its warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warnings {
    /// On stderr, each line after `warning: ` (the `mco` command).
    Stderr,
    /// In the log at warning level (a long-running service).
    Log,
}

impl Warnings {
    /// Says each of `lines`.
    pub fn say(self, lines: &[String]) {
        for line in lines {
            match self {
                Warnings::Stderr => eprintln!("warning: {line}"),
                Warnings::Log => tracing::warn!("{line}"),
            }
        }
    }
}

/// A connection to the collective and the one way to call it.
pub struct Session {
    bus: Bus,
    warnings: Warnings,
}

impl Session {
    /// Resolves the target flags into a plan and connects for it, warning on
    /// stderr. For the `provisioning` collective, replies signed by bare node
    /// keys are checked against the key pins.
    pub async fn open(
        cfg: &ClientConfig,
        args: &TargetArgs,
    ) -> Result<(Plan, Session), ClientError> {
        let plan = target::resolve(args, cfg)?.read_listed().await?;
        let session = Session::for_plan(cfg, &plan).await?;
        Ok((plan, session))
    }

    /// Connects for `plan` (its named nodes' known keys are prepared while
    /// connecting), warning on stderr.
    pub async fn for_plan(cfg: &ClientConfig, plan: &Plan) -> Result<Session, ClientError> {
        let bus = Bus::connect_for(cfg, &plan.named_nodes()).await?;
        let mut session = Session {
            bus,
            warnings: Warnings::Stderr,
        };
        if plan.collective == mco_core::provisioning::PROVISIONING_COLLECTIVE {
            let path = crate::pins::default_pins_path();
            let pins =
                KeyPins::load(&path).map_err(|e| ClientError::Verification(e.to_string()))?;
            session = session.with_pins(Arc::new(pins));
        }
        Ok(session)
    }

    /// Connects with `cfg`, saying warnings to `warnings`.
    pub async fn connect(cfg: &ClientConfig, warnings: Warnings) -> Result<Session, ClientError> {
        Ok(Session {
            bus: Bus::connect(cfg).await?,
            warnings,
        })
    }

    /// Checks replies signed by bare node keys against `pins`.
    pub fn with_pins(mut self, pins: Arc<KeyPins>) -> Session {
        self.bus = self.bus.with_pins(pins);
        self
    }

    /// The connection, for what is not a call (a subscription of one's own).
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Finds the nodes for `plan` (only those hosting `agent`, when given),
    /// limited as the plan says, and says the discovery's warnings.
    pub async fn discover(
        &self,
        plan: &Plan,
        agent: Option<&str>,
    ) -> Result<Discovered, ClientError> {
        let mut found = discovery::discover(&self.bus, plan, agent).await?;
        self.warnings.say(&std::mem::take(&mut found.warnings));
        found.nodes = target::apply_limit(found.nodes, plan.limit, plan.limit_seed);
        Ok(found)
    }

    /// Broadcast discovery: the nodes of `collective` that `filter` selects,
    /// with their round-trip times; says the discovery's warnings.
    pub async fn ping(
        &self,
        collective: &str,
        filter: Filter,
        timeout: Duration,
        window: Duration,
    ) -> Result<Vec<(String, Duration)>, ClientError> {
        let found = discovery::broadcast(&self.bus, collective, filter, timeout, window).await?;
        self.warnings.say(&found.warnings);
        Ok(found.nodes)
    }

    /// Calls `call` on `nodes` and collects their replies, then says what
    /// was ignored or lost on the way.
    pub async fn call(
        &self,
        call: &Call,
        nodes: &[String],
        wait: &Wait,
    ) -> Result<Collected, ClientError> {
        let mut collected = rpc::call(&self.bus, call, nodes, wait).await?;
        collected.tries = 1;
        if let Some(retry) = wait.retry {
            let mut attempt = 1;
            while attempt <= retry.count && !collected.no_response.is_empty() {
                tokio::time::sleep(retry.delay).await;
                attempt += 1;
                let silent = collected.no_response.clone();
                // A new request: a new id and signature, for the silent nodes only.
                let again = rpc::call(&self.bus, call, &silent, wait).await?;
                collected.merge_retry(again, attempt);
            }
        }
        self.warnings.say(&collected.warnings());
        Ok(collected)
    }

    /// Calls `call` on one node and returns its reply: an error of kind
    /// [`NoResponders`](crate::error::ErrorKind::NoResponders) when it did
    /// not answer within `timeout`, or
    /// [`Verification`](crate::error::ErrorKind::Verification) when what
    /// came back failed verification.
    pub async fn ask(
        &self,
        call: &Call,
        node: &str,
        timeout: Duration,
    ) -> Result<NodeReply, ClientError> {
        let wait = Wait {
            timeout,
            batch: None,
            progress: false,
            retry: None,
        };
        let mut got = self.call(call, &[node.to_string()], &wait).await?;
        match got.replies.pop() {
            Some(r) => Ok(r),
            None if !got.untrusted.is_empty() => Err(ClientError::Verification(format!(
                "{} {}: the reply of {node} failed verification: {}",
                call.agent,
                call.action,
                got.untrusted.join("; ")
            ))),
            None => Err(ClientError::NoResponders(format!(
                "{} {}: no reply from {node} within {timeout:?}",
                call.agent, call.action
            ))),
        }
    }

    /// Sends `call` to `nodes` without waiting for replies, giving the broker
    /// up to `within` to take it; returns the request id.
    pub async fn fire(
        &self,
        call: &Call,
        nodes: &[String],
        within: Duration,
    ) -> Result<String, ClientError> {
        rpc::fire(&self.bus, call, nodes, within).await
    }

    /// Saves what the session learnt for the next one (checked node
    /// certificates, key pins), for a session that lives on.
    pub fn save_caches(&self) {
        self.bus.save_caches();
    }

    /// Ends the session, saving what it learnt for the next one.
    pub fn close(self) {
        self.save_caches();
    }

    /// Ends the session as [`close`](Self::close) does and hands back
    /// `result`: the last line of a verb.
    pub fn finish<T>(self, result: T) -> T {
        self.close();
        result
    }
}

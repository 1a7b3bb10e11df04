//! The vocabulary of one attempt at a node: its steps, how a request fails,
//! and how the attempt ends; and the rules, pure functions of a node's
//! record, that say whether a node is due and what an ending leaves behind.
//!
//! Nothing here talks to the bus or the journal, so the step machine's
//! decisions are tested on their own (`step_tests.rs`); the service
//! (`attempt.rs`) carries them out.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ProvisionerConfig, Steps};
use crate::state::{Record, Refusal, Status};

/// A step of an attempt, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `provision lock`: a node locked by someone else is left to them.
    Lock,
    /// The journal could not be written.
    Journal,
    /// `rpcutil inventory`: the node's facts.
    Inventory,
    /// The expected check, and the reserved-name check.
    Expected,
    /// A master chosen among the configured ones.
    PickMaster,
    /// `provision set_master`.
    SetMaster,
    /// `provision gencsr`, old certificates cleaned, `ca sign`.
    Sign,
    /// Recorded in the journal while the CA is asked to sign: the CSR's key
    /// is this attempt's, so a resumed run does not clean its certificate.
    Signing,
    /// `provision configure`.
    Configure,
    /// `provision run`.
    Bootstrap,
    /// `provision run phase=final`.
    FinalRun,
    /// `provision restart`.
    Restart,
    /// `rpcutil ping` in the main collective until it answers.
    Confirm,
}

impl Step {
    /// The name used in the journal, the metrics, the log and events.
    pub fn name(self) -> &'static str {
        match self {
            Step::Lock => "lock",
            Step::Journal => "journal",
            Step::Inventory => "inventory",
            Step::Expected => "expected",
            Step::PickMaster => "pick_master",
            Step::SetMaster => "set_master",
            Step::Sign => "sign",
            Step::Signing => "signing",
            Step::Configure => "configure",
            Step::Bootstrap => "bootstrap",
            Step::FinalRun => "final_run",
            Step::Restart => "restart",
            Step::Confirm => "confirm",
        }
    }

    /// The steps after the lock that `steps` turns on, in order. The
    /// inventory, the expected check and the master's choice always run.
    pub fn plan(steps: &Steps) -> Vec<Step> {
        let mut out = vec![Step::Inventory, Step::Expected, Step::PickMaster];
        let optional = [
            (steps.set_master, Step::SetMaster),
            (steps.sign, Step::Sign),
            (steps.configure, Step::Configure),
            (steps.bootstrap, Step::Bootstrap),
            (steps.bootstrap && steps.final_run, Step::FinalRun),
            (steps.restart, Step::Restart),
            (steps.confirm, Step::Confirm),
        ];
        out.extend(optional.iter().filter(|(on, _)| *on).map(|(_, s)| *s));
        out
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A request to a node (or the CA) that got no good answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    /// The node's lock is held by someone else (the agent's reply says who,
    /// in its `locked_by` output).
    Locked {
        /// Who holds it.
        by: String,
        /// The agent's message.
        message: String,
    },
    /// It refuses for good: the name is one it never acts on (the `ca`
    /// agent's `refused` output).
    Refused(String),
    /// It answered with an error.
    Status(String),
    /// Silence, or the bus failed.
    NoReply(String),
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Locked { message, .. }
            | Fail::Refused(message)
            | Fail::Status(message)
            | Fail::NoReply(message) => f.write_str(message),
        }
    }
}

/// How an attempt at a node ended short of provisioning it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Another provisioner (or an operator) holds it: not ours to count.
    Busy(String),
    /// In none of the expected lists: locked out, looked at again each interval.
    NotExpected(String),
    /// Never to be signed as it stands: its CSR is for another name or key,
    /// or its name is reserved. Locked out for the longest backoff.
    Refused(String),
    /// No master to give it: it waits, unlocked, and the operator is told.
    Waiting(String),
    /// The step failed: retried with backoff until `retries` attempts.
    Failed(String),
    /// The provisioner is shutting down: the attempt stops between steps
    /// and resumes from the journal at the next start.
    Interrupted,
}

impl From<Fail> for Outcome {
    fn from(f: Fail) -> Outcome {
        match f {
            Fail::Locked { message, .. } => Outcome::Busy(message),
            Fail::Refused(message) => Outcome::Refused(message),
            f => Outcome::Failed(f.to_string()),
        }
    }
}

/// An attempt that did not provision the node: where it stopped and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// The step it stopped at.
    pub step: Step,
    /// Why.
    pub outcome: Outcome,
}

impl Stopped {
    /// `outcome` at `step`.
    pub fn at(step: Step, outcome: impl Into<Outcome>) -> Stopped {
        Stopped {
            step,
            outcome: outcome.into(),
        }
    }
}

/// What the notifiers are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Provisioned.
    Provisioned,
    /// Refused: not expected, or never to be signed.
    Refused,
    /// Waiting for a master.
    Waiting,
    /// Failed; to be retried.
    Failed,
    /// Failed for the last time.
    GaveUp,
}

/// What happens to the node's lock once an attempt has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockAfter {
    /// Left as it is.
    Keep,
    /// Renewed for this long: it keeps others off while the node is locked
    /// out, or frees the node exactly when its retry is due.
    Renew(Duration),
    /// Released: a waiting node is anyone's.
    Release,
}

/// What an ending leaves behind, besides the record itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The node's lock.
    pub lock: LockAfter,
    /// The event for the notifiers, when this ending is news (a node that
    /// stays refused or waiting is reported once).
    pub event: Option<Event>,
    /// Whether the record is written and fsynced (news always is).
    pub durable: bool,
}

/// Whether a node with journal record `rec` is due for an attempt at `now`,
/// having been seen in the provisioning collective at `seen_ms`.
pub fn due(rec: Option<&Record>, seen_ms: u64, now: u64) -> bool {
    let Some(r) = rec else { return true };
    match r.status {
        Status::GaveUp => false,
        Status::Failed | Status::Refused => now >= r.retry_at_ms,
        // Back in provisioning after it was provisioned (re-imaged), unless
        // the sighting predates the provisioning (a replay, a stale discovery).
        Status::Provisioned => seen_ms > r.updated_ms,
        Status::InProgress | Status::Waiting => true,
    }
}

/// Applies the end of an attempt to the node's record: `was` is the status
/// before the attempt, `rec.attempts` already counts this attempt.
pub fn settle(
    rec: &mut Record,
    was: Option<Status>,
    ending: Result<(), &Stopped>,
    cfg: &ProvisionerConfig,
    now: u64,
) -> Settled {
    rec.updated_ms = now;
    let news = |event| Settled {
        lock: LockAfter::Keep,
        event: Some(event),
        durable: true,
    };
    let Err(stopped) = ending else {
        rec.status = Status::Provisioned;
        rec.error = None;
        rec.refusal = None;
        return news(Event::Provisioned);
    };
    let quiet = |lock| Settled {
        lock,
        event: None,
        durable: false,
    };
    match &stopped.outcome {
        Outcome::Busy(_) => {
            // Not an attempt of ours.
            rec.attempts = rec.attempts.saturating_sub(1);
            rec.status = was.unwrap_or(Status::Failed);
            quiet(LockAfter::Keep)
        }
        Outcome::NotExpected(msg) | Outcome::Refused(msg) => {
            let not_expected = matches!(stopped.outcome, Outcome::NotExpected(_));
            rec.status = Status::Refused;
            rec.attempts = rec.attempts.saturating_sub(1);
            rec.error = Some(msg.clone());
            rec.refusal = Some(if not_expected {
                Refusal::NotExpected
            } else {
                Refusal::Never
            });
            let wait = if not_expected {
                cfg.interval
            } else {
                cfg.max_backoff
            };
            rec.retry_at_ms = now + millis(wait);
            // Locked out: no one else provisions it meanwhile.
            let lock = LockAfter::Renew(cfg.max_backoff.max(cfg.lock_expiry));
            if was == Some(Status::Refused) {
                quiet(lock)
            } else {
                Settled {
                    lock,
                    ..news(Event::Refused)
                }
            }
        }
        Outcome::Interrupted => {
            // Not a failure of the node's: the next start takes it up again.
            rec.attempts = rec.attempts.saturating_sub(1);
            rec.status = Status::InProgress;
            Settled {
                lock: LockAfter::Keep,
                event: None,
                durable: true,
            }
        }
        Outcome::Waiting(msg) => {
            rec.status = Status::Waiting;
            rec.attempts = rec.attempts.saturating_sub(1);
            rec.error = Some(msg.clone());
            if was == Some(Status::Waiting) {
                quiet(LockAfter::Release)
            } else {
                Settled {
                    lock: LockAfter::Release,
                    ..news(Event::Waiting)
                }
            }
        }
        Outcome::Failed(msg) => {
            rec.error = Some(format!("{}: {msg}", stopped.step));
            rec.refusal = None;
            if rec.attempts >= cfg.retries {
                rec.status = Status::GaveUp;
                news(Event::GaveUp)
            } else {
                let delay = cfg.delay_after(rec.attempts);
                rec.status = Status::Failed;
                rec.retry_at_ms = now + millis(delay);
                Settled {
                    // Free exactly when due: the lock ends with the backoff.
                    lock: LockAfter::Renew(delay.max(Duration::from_secs(1))),
                    ..news(Event::Failed)
                }
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[path = "step_tests.rs"]
mod tests;

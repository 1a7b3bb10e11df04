//! One attempt at one node: the lock first, then the steps, then the
//! ending applied to its record (`step::settle`), its lock, the counters
//! and the notifiers.

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::notify::Notice;
use crate::service::{now, Provisioner};
use crate::state::{Record, Refusal, Status};
use crate::step::{settle, Event, Fail, LockAfter, Outcome, Step, Stopped};

impl Provisioner {
    /// One attempt at one node, start to finish.
    pub(crate) async fn work(self: &Arc<Self>, node: &str, facts: Option<Map<String, Value>>) {
        let started = Instant::now();
        let previous = self
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .cloned();
        let mut rec = previous.clone().unwrap_or_else(|| Record::new(now()));
        // (A node expected by its address needs its facts: no shortcut then.)
        if rec.status == Status::Refused
            && rec.refusal == Some(Refusal::NotExpected)
            && self.cfg.expected.networks.is_empty()
        {
            // Still locked out by us: only the expected check can change.
            if let Err(outcome) = self.check_expected(node, None).await {
                rec.retry_at_ms = now() + self.cfg.interval.as_millis() as u64;
                if let Outcome::NotExpected(msg) | Outcome::Failed(msg) = outcome {
                    rec.error = Some(msg);
                }
                let _ = self.save(node, &rec, false).await;
                return;
            }
        }
        if rec.status == Status::Provisioned {
            // Back in the provisioning collective: re-imaged. Start over,
            // keeping the certificate in case the key is the same.
            rec.attempts = 0;
        }
        // The lock comes first: a node someone else holds is not ours to count.
        let lock = self.lock(node, self.cfg.lock_expiry).await;
        if let Err(Fail::Locked { by, .. }) = &lock {
            debug!(node, "skipped: locked by {by}");
            Metrics::bump(&self.metrics.busy);
            return;
        }
        Metrics::bump_gauge(&self.metrics.in_progress, 1);
        rec.attempts += 1;
        rec.status = Status::InProgress;
        rec.error = None;
        rec.step = None;
        rec.updated_ms = now();
        let ending = match lock {
            Err(f) => Err(Stopped::at(Step::Lock, f)),
            Ok(()) => match self.save(node, &rec, false).await {
                Err(e) => Err(Stopped::at(Step::Journal, Outcome::Failed(e))),
                Ok(()) => self.steps(node, facts, &mut rec).await,
            },
        };
        Metrics::bump_gauge(&self.metrics.in_progress, -1);
        let took = started.elapsed();
        let was = previous.map(|p| p.status);
        let settled = settle(&mut rec, was, ending.as_ref().map(|_| ()), &self.cfg, now());
        let result = match settled.lock {
            LockAfter::Keep => Ok(()),
            LockAfter::Renew(d) => self.lock(node, d).await,
            LockAfter::Release => self.unlock(node).await,
        };
        if let Err(e) = result {
            debug!(node, "lock not changed after the attempt: {e}");
        }
        let (step, error) = match &ending {
            Ok(()) => (None, None),
            Err(s) => (Some(s.step), message(&s.outcome)),
        };
        let Some(event) = settled.event else {
            if let Err(Stopped {
                step,
                outcome: Outcome::Busy(msg),
            }) = &ending
            {
                debug!(node, %step, "left to another provisioner: {msg}");
            }
            let _ = self.save(node, &rec, settled.durable).await;
            return;
        };
        match event {
            Event::Provisioned => {
                Metrics::bump(&self.metrics.provisioned);
                info!(node, master = ?rec.master, ms = took.as_millis() as u64, "provisioned");
            }
            Event::Refused => {
                Metrics::bump(&self.metrics.refused);
                warn!(node, "refused: {}", error.as_deref().unwrap_or_default());
            }
            Event::Waiting => warn!(node, "waiting: {}", error.as_deref().unwrap_or_default()),
            Event::Failed | Event::GaveUp => {
                Metrics::bump(&self.metrics.failed);
                warn!(
                    node,
                    step = ?step.map(Step::name),
                    attempts = rec.attempts,
                    "{}: {}",
                    if event == Event::GaveUp { "gave up" } else { "failed" },
                    error.as_deref().unwrap_or_default()
                );
            }
        }
        if let Err(e) = self.save(node, &rec, settled.durable).await {
            warn!(node, "{e}");
        }
        self.refresh_waiting_gauge();
        self.notify(Notice {
            node: node.to_string(),
            outcome: event,
            master: rec.master.clone(),
            step,
            error,
            duration_ms: took.as_millis() as u64,
            attempts: rec.attempts,
            time_ms: now(),
        })
        .await;
    }

    /// Tells every notifier; one that fails is logged.
    pub(crate) async fn notify(&self, ev: Notice) {
        for n in &self.cfg.notify {
            if let Err(e) = n.send(&ev).await {
                warn!(node = %ev.node, "notifier failed: {e}");
            }
        }
    }

    /// Nodes a killed provisioner had already restarted are no longer in
    /// the provisioning collective; those that answer in the main one are
    /// recorded as provisioned.
    pub(crate) fn confirm_restarted(self: &Arc<Self>) {
        let restarted: Vec<(String, Record)> = {
            let j = self.journal.lock().unwrap_or_else(|e| e.into_inner());
            j.all()
                .iter()
                .filter(|(_, r)| r.status == Status::InProgress && r.step == Some(Step::Restart))
                .map(|(n, r)| (n.clone(), r.clone()))
                .collect()
        };
        for (node, mut rec) in restarted {
            let me = self.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                if me.confirm(&node).await.is_err() {
                    // Still restarting or back in provisioning: discovery decides.
                    return;
                }
                rec.status = Status::Provisioned;
                rec.step = Some(Step::Confirm);
                rec.updated_ms = now();
                if let Err(e) = me.save(&node, &rec, true).await {
                    warn!(node, "{e}");
                }
                Metrics::bump(&me.metrics.provisioned);
                info!(node, "provisioned (confirmed after a restart)");
                me.notify(Notice {
                    node: node.clone(),
                    outcome: Event::Provisioned,
                    master: rec.master.clone(),
                    step: None,
                    error: None,
                    duration_ms: t.elapsed().as_millis() as u64,
                    attempts: rec.attempts,
                    time_ms: now(),
                })
                .await;
            });
        }
    }

    fn refresh_waiting_gauge(&self) {
        let j = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        let waiting = j
            .all()
            .values()
            .filter(|r| r.status == Status::Waiting)
            .count();
        self.metrics
            .waiting
            .store(waiting as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The words an ending leaves for the operator.
fn message(o: &Outcome) -> Option<String> {
    match o {
        Outcome::Busy(m)
        | Outcome::NotExpected(m)
        | Outcome::Refused(m)
        | Outcome::Waiting(m)
        | Outcome::Failed(m) => Some(m.clone()),
        Outcome::Interrupted => Some("interrupted by shutdown".into()),
    }
}

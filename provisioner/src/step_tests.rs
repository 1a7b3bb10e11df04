//! Tests of the step machine's rules: which steps run, when a node is due,
//! and what each ending leaves in its record.

use std::path::Path;
use std::time::Duration;

use super::*;

fn cfg(extra: &str) -> ProvisionerConfig {
    let backoff = if extra.contains("backoff") {
        ""
    } else {
        "backoff = \"2s\"\n"
    };
    let text = format!(
        "main_config = \"main.toml\"\nprovisioning_config = \"prov.toml\"\n\
         retries = 3\n{backoff}max_backoff = \"60s\"\nlock_expiry = \"30s\"\n\
         interval = \"10s\"\n{extra}\n[expected]\nidentities = [\"*\"]\n[ca]\nidentity = \"ca\"\n[masters]\nidentities = [\"puppet-*\"]\n"
    );
    ProvisionerConfig::from_toml(Path::new("/p.toml"), &text).expect("a valid config")
}

fn record(status: Status, attempts: u32) -> Record {
    let mut r = Record::new(1_000);
    r.status = status;
    r.attempts = attempts;
    r
}

fn stopped(step: Step, outcome: Outcome) -> Stopped {
    Stopped::at(step, outcome)
}

const NOW: u64 = 1_000_000;

#[test]
fn the_plan_follows_the_steps_switched_on() {
    let all = cfg("[steps]\nfinal_run = true\n");
    assert_eq!(
        Step::plan(&all.steps),
        vec![
            Step::Inventory,
            Step::Expected,
            Step::PickMaster,
            Step::SetMaster,
            Step::Sign,
            Step::Configure,
            Step::Bootstrap,
            Step::FinalRun,
            Step::Restart,
            Step::Confirm,
        ]
    );
    let some = cfg("[steps]\nbootstrap = false\nset_master = false\n");
    assert_eq!(
        Step::plan(&some.steps),
        vec![
            Step::Inventory,
            Step::Expected,
            Step::PickMaster,
            Step::Sign,
            Step::Configure,
            Step::Restart,
            Step::Confirm,
        ]
    );
}

#[test]
fn step_names_round_trip_through_the_journal_form() {
    for s in [
        Step::Lock,
        Step::Journal,
        Step::Inventory,
        Step::Expected,
        Step::PickMaster,
        Step::SetMaster,
        Step::Sign,
        Step::Signing,
        Step::Configure,
        Step::Bootstrap,
        Step::FinalRun,
        Step::Restart,
        Step::Confirm,
    ] {
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, format!("\"{}\"", s.name()));
        assert_eq!(serde_json::from_str::<Step>(&json).unwrap(), s);
    }
}

#[test]
fn a_new_node_is_due_and_one_given_up_is_not() {
    assert!(due(None, 0, NOW));
    assert!(!due(Some(&record(Status::GaveUp, 3)), NOW, NOW));
    assert!(due(Some(&record(Status::Waiting, 0)), 0, NOW));
    assert!(due(Some(&record(Status::InProgress, 1)), 0, NOW));
}

#[test]
fn a_failed_or_refused_node_is_due_only_at_its_retry_time() {
    for status in [Status::Failed, Status::Refused] {
        let mut r = record(status, 1);
        r.retry_at_ms = NOW + 1;
        assert!(!due(Some(&r), NOW, NOW), "{status:?}");
        assert!(due(Some(&r), NOW, NOW + 1), "{status:?}");
    }
}

#[test]
fn a_provisioned_node_is_due_again_only_when_seen_after_its_provisioning() {
    let mut r = record(Status::Provisioned, 1);
    r.updated_ms = NOW;
    // A replayed announcement or a discovery from before: not re-imaged.
    assert!(!due(Some(&r), NOW - 1, NOW + 10));
    assert!(!due(Some(&r), NOW, NOW + 10));
    // Seen in provisioning after it was provisioned: re-imaged.
    assert!(due(Some(&r), NOW + 1, NOW + 10));
}

#[test]
fn success_clears_the_error_and_is_news() {
    let c = cfg("");
    let mut r = record(Status::InProgress, 1);
    r.error = Some("old".into());
    r.refusal = Some(Refusal::NotExpected);
    let s = settle(&mut r, Some(Status::Failed), Ok(()), &c, NOW);
    assert_eq!(r.status, Status::Provisioned);
    assert_eq!(r.error, None);
    assert_eq!(r.refusal, None);
    assert_eq!(r.updated_ms, NOW);
    assert_eq!(s.event, Some(Event::Provisioned));
    assert!(s.durable);
    assert_eq!(s.lock, LockAfter::Keep);
}

#[test]
fn a_busy_node_is_not_counted_and_keeps_its_status() {
    let c = cfg("");
    let mut r = record(Status::InProgress, 2);
    let st = stopped(Step::Lock, Outcome::Busy("locked by user:bob".into()));
    let s = settle(&mut r, Some(Status::Failed), Err(&st), &c, NOW);
    assert_eq!(r.attempts, 1);
    assert_eq!(r.status, Status::Failed);
    assert_eq!(s.event, None);
    assert!(!s.durable);
    assert_eq!(s.lock, LockAfter::Keep);
    // A node never seen before that is busy is due again at once.
    let mut r = record(Status::InProgress, 1);
    settle(&mut r, None, Err(&st), &c, NOW);
    assert_eq!(
        (r.status, r.attempts, r.retry_at_ms),
        (Status::Failed, 0, 0)
    );
}

#[test]
fn a_lock_refusal_is_busy_and_any_other_failure_is_a_failure() {
    let locked = Fail::Locked {
        by: "user:bob".into(),
        message: "locked by user:bob until 5".into(),
    };
    assert_eq!(
        Outcome::from(locked),
        Outcome::Busy("locked by user:bob until 5".into())
    );
    // A message that merely mentions a lock is not a lock refusal.
    assert_eq!(
        Outcome::from(Fail::Status("locked by nobody".into())),
        Outcome::Failed("locked by nobody".into())
    );
    assert_eq!(
        Outcome::from(Fail::NoReply("no reply".into())),
        Outcome::Failed("no reply".into())
    );
    // The CA refusing a name for good is a refusal, never retried as a failure.
    assert_eq!(
        Outcome::from(Fail::Refused(
            "\"bob\" is the name of a user certificate".into()
        )),
        Outcome::Refused("\"bob\" is the name of a user certificate".into())
    );
}

#[test]
fn not_expected_is_looked_at_each_interval_and_reported_once() {
    let c = cfg("");
    let mut r = record(Status::InProgress, 1);
    let st = stopped(Step::Expected, Outcome::NotExpected("not expected".into()));
    let s = settle(&mut r, None, Err(&st), &c, NOW);
    assert_eq!(r.status, Status::Refused);
    assert_eq!(r.refusal, Some(Refusal::NotExpected));
    assert_eq!(r.attempts, 0);
    assert_eq!(r.retry_at_ms, NOW + 10_000);
    assert_eq!(s.event, Some(Event::Refused));
    assert!(s.durable);
    // Locked out for the longer of the backoff and the lock expiry.
    assert_eq!(s.lock, LockAfter::Renew(Duration::from_secs(60)));
    // Still not expected next time: no second event.
    let s = settle(&mut r, Some(Status::Refused), Err(&st), &c, NOW + 10_000);
    assert_eq!(s.event, None);
    assert_eq!(r.retry_at_ms, NOW + 20_000);
}

#[test]
fn a_refused_csr_waits_for_the_longest_backoff() {
    let c = cfg("");
    let mut r = record(Status::InProgress, 1);
    let st = stopped(Step::Sign, Outcome::Refused("its CSR asks for x".into()));
    let s = settle(&mut r, Some(Status::Failed), Err(&st), &c, NOW);
    assert_eq!(r.status, Status::Refused);
    assert_eq!(r.refusal, Some(Refusal::Never));
    assert_eq!(r.retry_at_ms, NOW + 60_000);
    assert_eq!(s.event, Some(Event::Refused));
}

#[test]
fn a_waiting_node_is_released_and_reported_once() {
    let c = cfg("");
    let mut r = record(Status::InProgress, 1);
    let st = stopped(Step::PickMaster, Outcome::Waiting("no master".into()));
    let s = settle(&mut r, None, Err(&st), &c, NOW);
    assert_eq!(r.status, Status::Waiting);
    assert_eq!(r.attempts, 0);
    assert_eq!(s.lock, LockAfter::Release);
    assert_eq!(s.event, Some(Event::Waiting));
    let s = settle(&mut r, Some(Status::Waiting), Err(&st), &c, NOW);
    assert_eq!(s.event, None);
    assert_eq!(s.lock, LockAfter::Release);
}

#[test]
fn failures_back_off_and_give_up_after_the_retries() {
    let c = cfg("");
    let st = stopped(Step::Configure, Outcome::Failed("no reply".into()));
    let mut r = record(Status::InProgress, 1);
    let s = settle(&mut r, None, Err(&st), &c, NOW);
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.error.as_deref(), Some("configure: no reply"));
    assert_eq!(r.retry_at_ms, NOW + 2_000);
    assert_eq!(s.lock, LockAfter::Renew(Duration::from_secs(2)));
    assert_eq!(s.event, Some(Event::Failed));
    r.attempts = 2;
    settle(&mut r, Some(Status::Failed), Err(&st), &c, NOW);
    assert_eq!(r.retry_at_ms, NOW + 4_000);
    r.attempts = 3;
    let s = settle(&mut r, Some(Status::Failed), Err(&st), &c, NOW);
    assert_eq!(r.status, Status::GaveUp);
    assert_eq!(s.event, Some(Event::GaveUp));
    assert_eq!(s.lock, LockAfter::Keep);
    assert!(!due(Some(&r), NOW, NOW + 1_000_000));
}

#[test]
fn a_backoff_under_a_second_still_locks_for_a_second() {
    let c = cfg("backoff = \"100ms\"");
    let st = stopped(Step::Sign, Outcome::Failed("x".into()));
    let mut r = record(Status::InProgress, 1);
    let s = settle(&mut r, None, Err(&st), &c, NOW);
    assert_eq!(r.retry_at_ms, NOW + 100);
    assert_eq!(s.lock, LockAfter::Renew(Duration::from_secs(1)));
}

#[test]
fn an_attempt_cut_short_by_shutdown_is_resumed_and_not_counted() {
    let c = cfg("");
    let mut r = record(Status::InProgress, 2);
    r.step = Some(Step::Configure);
    let st = stopped(Step::Bootstrap, Outcome::Interrupted);
    let s = settle(&mut r, Some(Status::Failed), Err(&st), &c, NOW);
    assert_eq!(r.status, Status::InProgress);
    assert_eq!(r.attempts, 1);
    assert_eq!(r.step, Some(Step::Configure));
    assert_eq!(s.event, None);
    assert!(s.durable, "the journal holds where it stopped");
    assert!(due(Some(&r), 0, NOW));
}

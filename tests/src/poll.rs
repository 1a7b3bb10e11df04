//! Poll-until-true helpers: tests wait for a condition with a deadline, never for a fixed time.

use std::future::Future;
use std::panic::Location;
use std::time::{Duration, Instant};

/// How often [`eventually`] and [`eventually_async`] retry their condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Calls `f` every [`POLL_INTERVAL`] until it returns `true`.
///
/// # Panics
///
/// If `f` has not returned `true` within `timeout`; the message names `what` was awaited and
/// where `eventually` was called.
#[track_caller]
pub fn eventually(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let caller = Location::caller();
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            panic!("timed out after {timeout:?} waiting for {what} (at {caller})");
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

/// Awaits `f()` every [`POLL_INTERVAL`] until it yields `true`.
///
/// Time is tokio's, so under a paused clock the deadline is virtual too. Each call of `f` is itself
/// bounded by the deadline: a condition that hangs fails the same way as one that stays false.
///
/// # Panics
///
/// If no call of `f` has yielded `true` within `timeout`; the message names `what` was awaited and
/// where `eventually_async` was called.
#[track_caller]
pub fn eventually_async<F, Fut>(
    timeout: Duration,
    what: &str,
    mut f: F,
) -> impl Future<Output = ()> + use<'_, F, Fut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let caller = Location::caller();
    async move {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(true) = tokio::time::timeout_at(deadline, f()).await {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {what} (at {caller})");
            }
            tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + POLL_INTERVAL))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::catch_unwind;

    #[test]
    fn returns_once_true() {
        let mut calls = 0;
        eventually(Duration::from_secs(5), "third call", || {
            calls += 1;
            calls == 3
        });
        assert_eq!(calls, 3);
    }

    #[test]
    fn panics_naming_what_on_timeout() {
        let err = catch_unwind(|| eventually(Duration::from_millis(50), "the moon", || false))
            .expect_err("must time out");
        let msg = err.downcast_ref::<String>().expect("a formatted message");
        assert!(msg.contains("waiting for the moon"), "{msg}");
        assert!(msg.contains("poll.rs"), "names the caller: {msg}");
    }

    #[tokio::test(start_paused = true)]
    async fn async_version_uses_tokio_time() {
        let start = tokio::time::Instant::now();
        let mut calls = 0;
        eventually_async(Duration::from_secs(3600), "tenth call", || {
            calls += 1;
            std::future::ready(calls == 10)
        })
        .await;
        assert_eq!(calls, 10);
        assert_eq!(start.elapsed(), POLL_INTERVAL * 9);
    }

    #[tokio::test(start_paused = true)]
    async fn async_version_bounds_a_hanging_condition() {
        let res = tokio::spawn(eventually_async(
            Duration::from_secs(1),
            "a hanging check",
            std::future::pending::<bool>,
        ))
        .await;
        let err = res.expect_err("must panic").into_panic();
        let msg = err.downcast_ref::<String>().expect("a formatted message");
        assert!(msg.contains("waiting for a hanging check"), "{msg}");
    }
}

//! What the provisioner takes from announcements, and how many nodes it
//! holds at once: bounds on what a holder of the bootstrap token can make it
//! do by announcing.

/// Largest facts an announcement may bring along (encoded as JSON); larger
/// ones are dropped and the node's facts are asked for when it is worked on.
pub const ANNOUNCED_FACTS_MAX: usize = 64 * 1024;

/// How old an announcement may be, by its signed time, to count as a sighting.
const ANNOUNCEMENT_MAX_AGE_MS: u64 = 60_000;

/// When an announcement signed at `time_ms` counts as seen: its own signed
/// time, if it is at most [`ANNOUNCEMENT_MAX_AGE_MS`] old and at most
/// [`MAX_FUTURE_SKEW_MS`](mco_core::limits::MAX_FUTURE_SKEW_MS) ahead of `now_ms`.
/// An old announcement replayed is no sighting, and a fresh one still
/// predates a provisioning that came after it, so neither makes a
/// provisioned node look re-imaged.
pub fn announced_at(time_ms: u64, now_ms: u64) -> Option<u64> {
    let fresh = time_ms.saturating_add(ANNOUNCEMENT_MAX_AGE_MS) >= now_ms
        && time_ms <= now_ms.saturating_add(mco_core::limits::MAX_FUTURE_SKEW_MS);
    fresh.then_some(time_ms.min(now_ms))
}

/// Most nodes waiting for or holding a worker at once.
pub fn pending_max(workers: usize) -> usize {
    workers.saturating_mul(4).max(256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_fresh_announcement_is_a_sighting_and_at_its_own_time() {
        let now = 1_000_000_000;
        assert_eq!(announced_at(now - 5_000, now), Some(now - 5_000));
        assert_eq!(
            announced_at(now - ANNOUNCEMENT_MAX_AGE_MS, now),
            Some(now - ANNOUNCEMENT_MAX_AGE_MS)
        );
        assert_eq!(announced_at(now - ANNOUNCEMENT_MAX_AGE_MS - 1, now), None);
        assert_eq!(announced_at(0, now), None);
        // From a little ahead: counted as now, never as later than now.
        assert_eq!(announced_at(now + 10_000, now), Some(now));
        assert_eq!(announced_at(now + 31_000, now), None);
        assert_eq!(announced_at(u64::MAX, now), None);
    }

    #[test]
    fn pending_nodes_are_bounded_by_the_workers() {
        assert_eq!(pending_max(1), 256);
        assert_eq!(pending_max(200), 800);
        assert_eq!(pending_max(usize::MAX), usize::MAX);
    }
}

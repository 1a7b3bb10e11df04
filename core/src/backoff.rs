//! Jittered exponential backoff for reconnects.
//!
//! Many nodes losing the same broker at once must not come back in lock-step,
//! so every delay is spread by ±20% around its exponential value.

use std::time::Duration;

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based), with jitter drawn
    /// from `seed` (any value that differs between nodes and attempts).
    pub fn delay(&self, attempt: usize, seed: u64) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.min(16) as u32)
            .min(self.max);
        // A fraction in [0.8, 1.2) from a splitmix64 step of the seed.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15 ^ attempt as u64);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let frac = 0.8 + 0.4 * ((z >> 11) as f64 / (1u64 << 53) as f64);
        exp.mul_f64(frac).min(self.max)
    }

    /// The pause before connection attempt `attempts` as async-nats counts them (1 is the first
    /// attempt to each server of the list, on start or after losing one): none for a client,
    /// which a person waits for (`spread_first = false`); up to `initial` for one of many nodes,
    /// spread by `seed` so that a fleet losing a server does not reconnect in one burst. Later
    /// attempts back off as [`delay`](Self::delay) does.
    pub fn reconnect_delay(&self, attempts: usize, seed: u64, spread_first: bool) -> Duration {
        if attempts <= 1 {
            if !spread_first {
                return Duration::ZERO;
            }
            // [0, initial): the same splitmix64 draw as `delay`, scaled from zero.
            let frac = (self.delay(0, seed).as_secs_f64() / self.initial.as_secs_f64() - 0.8) / 0.4;
            return self.initial.mul_f64(frac.clamp(0.0, 1.0));
        }
        self.delay(attempts - 2, seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_with_bounded_jitter() {
        let b = Backoff::default();
        for seed in [0u64, 1, 42, u64::MAX] {
            let d0 = b.delay(0, seed);
            assert!(
                d0 >= Duration::from_millis(80) && d0 < Duration::from_millis(120),
                "{d0:?}"
            );
            let d3 = b.delay(3, seed);
            assert!(
                d3 >= Duration::from_millis(640) && d3 < Duration::from_millis(960),
                "{d3:?}"
            );
            assert!(b.delay(30, seed) <= b.max);
        }
        let spread: std::collections::HashSet<_> = (0..20u64).map(|s| b.delay(2, s)).collect();
        assert!(spread.len() > 10, "jitter spreads nodes apart");
    }

    #[test]
    fn a_first_attempt_waits_nothing_for_a_client_and_a_spread_moment_for_a_node() {
        let b = Backoff::default();
        for seed in [0u64, 7, u64::MAX] {
            assert_eq!(b.reconnect_delay(1, seed, false), Duration::ZERO);
            assert!(b.reconnect_delay(1, seed, true) <= b.initial);
            assert_eq!(b.reconnect_delay(2, seed, false), b.delay(0, seed));
            assert_eq!(b.reconnect_delay(5, seed, true), b.delay(3, seed));
        }
        let firsts: std::collections::HashSet<_> =
            (0..20u64).map(|s| b.reconnect_delay(1, s, true)).collect();
        assert!(firsts.len() > 10, "a fleet's first attempts are spread");
    }
}

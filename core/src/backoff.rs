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
}

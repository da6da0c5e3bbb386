//! Exponential backoff with jitter: how long a failed message waits before
//! its next attempt.

use std::time::Duration;

/// `base * 2^(attempt - 1)`, capped, plus up to `jitter` of itself at random,
/// so that many consumers failing together do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay after the first failure.
    pub base: Duration,
    /// The longest delay.
    pub cap: Duration,
    /// The random share added on top, 0.0 to 1.0 (0.1 = up to 10 %).
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { base: Duration::from_millis(200), cap: Duration::from_secs(30), jitter: 0.1 }
    }
}

impl Backoff {
    /// The delay after failed attempt number `attempt` (1-based), given a
    /// random `unit` in `[0, 1)` for the jitter.
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        let delay = self.base.saturating_mul(1u32 << exponent).min(self.cap);
        delay + delay.mul_f64(self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0))
    }

    /// The delay after failed attempt number `attempt`, with fresh jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_from_the_base_until_the_cap() {
        let backoff = Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(1), jitter: 0.0 };
        let delays: Vec<u128> = (1..=6).map(|a| backoff.delay_with(a, 0.5).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_adds_at_most_its_share() {
        let backoff = Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(1), jitter: 0.1 };
        assert_eq!(backoff.delay_with(1, 0.0), Duration::from_millis(100));
        assert_eq!(backoff.delay_with(1, 0.999_999).as_millis(), 109);
    }

    proptest! {
        #[test]
        fn never_exceeds_cap_plus_jitter_nor_overflows(attempt in 0u32..10_000, unit in 0.0f64..1.0) {
            let backoff = Backoff::default();
            let delay = backoff.delay_with(attempt, unit);
            prop_assert!(delay >= backoff.base.min(backoff.cap));
            prop_assert!(delay <= backoff.cap.mul_f64(1.0 + backoff.jitter));
        }
    }
}

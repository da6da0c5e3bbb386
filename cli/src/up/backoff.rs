//! How long the supervisor waits before restarting a process that exited:
//! 0.5 s, doubling on every crash up to 30 s, and back to 0.5 s once a
//! process has stayed up for a minute (it was healthy; the next crash is news).

use std::time::Duration;

/// The first delay.
pub const INITIAL: Duration = Duration::from_millis(500);
/// The longest delay.
pub const MAX: Duration = Duration::from_secs(30);
/// Uptime after which a crash counts as the first one again.
pub const RESET_AFTER: Duration = Duration::from_secs(60);

/// The restart schedule of one process.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: INITIAL }
    }
}

impl Backoff {
    /// The delay before restarting a process that ran for `uptime`, advancing the schedule.
    pub fn after_exit(&mut self, uptime: Duration) -> Duration {
        if uptime >= RESET_AFTER {
            self.next = INITIAL;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn delays_double_from_half_a_second_up_to_thirty() {
        let mut backoff = Backoff::default();
        let delays: Vec<f64> = (0..9).map(|_| backoff.after_exit(Duration::from_secs(1)).as_secs_f64()).collect();
        assert_eq!(delays, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
    }

    #[test]
    fn a_minute_of_uptime_resets_the_schedule() {
        let mut backoff = Backoff::default();
        for _ in 0..5 {
            backoff.after_exit(Duration::ZERO);
        }
        assert_eq!(backoff.after_exit(Duration::from_secs(59)), Duration::from_secs(16));
        assert_eq!(backoff.after_exit(RESET_AFTER), INITIAL);
        assert_eq!(backoff.after_exit(Duration::ZERO), Duration::from_secs(1));
    }

    proptest! {
        #[test]
        fn delays_stay_within_bounds_and_never_shrink_without_a_long_uptime(
            uptimes in proptest::collection::vec(0u64..120, 1..40)
        ) {
            let mut backoff = Backoff::default();
            let mut previous = Duration::ZERO;
            for secs in uptimes {
                let uptime = Duration::from_secs(secs);
                let delay = backoff.after_exit(uptime);
                prop_assert!(delay >= INITIAL && delay <= MAX);
                if uptime < RESET_AFTER {
                    prop_assert!(delay >= previous);
                }
                previous = delay;
            }
        }
    }
}

//! Monotonic time as the gateway's building blocks see it.
//!
//! The rate limiter, the response cache and the upstream ejection logic never read
//! the clock themselves: the caller passes a [`Nanos`] reading in. The server takes
//! it from one [`MonotonicClock`]; tests build readings by hand and advance time
//! without sleeping.

use std::ops::Add;
use std::time::{Duration, Instant};

/// A point on a monotonic timeline, in nanoseconds since an origin the caller chose.
///
/// Readings from different origins must not be mixed; one process uses one
/// [`MonotonicClock`]. A `u64` of nanoseconds covers about 584 years.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(u64);

impl Nanos {
    /// The origin of the timeline.
    pub const ZERO: Nanos = Nanos(0);

    /// A reading `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Nanos(nanos)
    }

    /// A reading `secs` seconds after the origin (saturating at the far end).
    pub const fn from_secs(secs: u64) -> Self {
        Nanos(secs.saturating_mul(1_000_000_000))
    }

    /// A reading `millis` milliseconds after the origin (saturating at the far end).
    pub const fn from_millis(millis: u64) -> Self {
        Nanos(millis.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Nanos) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// This reading moved `duration` later, saturating at the far end of the timeline.
    pub fn saturating_add(self, duration: Duration) -> Nanos {
        Nanos(self.0.saturating_add(duration_to_nanos(duration)))
    }
}

impl Add<Duration> for Nanos {
    type Output = Nanos;

    fn add(self, rhs: Duration) -> Nanos {
        self.saturating_add(rhs)
    }
}

/// A duration in whole nanoseconds, saturating instead of wrapping for durations
/// longer than `u64` can hold.
pub(crate) fn duration_to_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Whole seconds in `duration`, rounded up, so a client told to wait never comes
/// back a fraction of a second too early.
pub(crate) fn ceil_secs(duration: Duration) -> u64 {
    let secs = duration.as_secs();
    if duration.subsec_nanos() > 0 { secs.saturating_add(1) } else { secs }
}

/// The process's source of [`Nanos`] readings: nanoseconds since it was created.
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        MonotonicClock { origin: Instant::now() }
    }

    /// The current reading.
    pub fn now(&self) -> Nanos {
        Nanos(duration_to_nanos(self.origin.elapsed()))
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_duration_moves_the_reading_later() {
        let t = Nanos::from_secs(1) + Duration::from_millis(250);
        assert_eq!(t.as_nanos(), 1_250_000_000);
        assert_eq!(t.saturating_duration_since(Nanos::from_secs(1)), Duration::from_millis(250));
    }

    #[test]
    fn duration_since_a_later_reading_is_zero() {
        assert_eq!(Nanos::ZERO.saturating_duration_since(Nanos::from_secs(3)), Duration::ZERO);
    }

    #[test]
    fn adding_saturates_at_the_far_end() {
        let far = Nanos::from_nanos(u64::MAX - 1) + Duration::from_secs(10);
        assert_eq!(far.as_nanos(), u64::MAX);
    }

    #[test]
    fn ceil_secs_rounds_partial_seconds_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn monotonic_clock_never_goes_backwards() {
        let clock = MonotonicClock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
    }
}

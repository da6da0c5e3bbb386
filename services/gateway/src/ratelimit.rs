//! Per-client rate limiting at the edge: token buckets kept as GCRA state.
//!
//! Each client key owns one `AtomicU64` holding its "theoretical arrival time" (TAT)
//! in [`Nanos`]: the moment at which its bucket would be full again. A request is
//! admitted when moving the TAT one emission interval later keeps it within
//! `burst` intervals of now. This is exactly a token bucket of `burst` tokens
//! refilled at `rate_per_sec`, but it needs one integer per client and one
//! compare-and-swap per request.
//!
//! Buckets live in a sharded map. For a key that already has a bucket, a check
//! takes one shard's shared read lock and does a CAS loop on the atomic: no
//! exclusive lock and no allocation. Only a first request from a new key takes a
//! shard's write lock to insert.
//!
//! Decisions render the headers of draft-ietf-httpapi-ratelimit-headers
//! (`RateLimit: "default";r=..;t=..` and `RateLimit-Policy: "default";q=..;w=..`)
//! plus `Retry-After` on refusals.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use uuid::Uuid;

use crate::clock::{Nanos, ceil_secs};

/// The `RateLimit` response header of draft-ietf-httpapi-ratelimit-headers.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// The `RateLimit-Policy` response header of draft-ietf-httpapi-ratelimit-headers.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The policy name used in both headers; the gateway advertises one policy per response.
const POLICY_NAME: &str = "default";

/// How many buckets one limiter keeps before it sweeps idle ones and, if all are
/// still busy, refuses new keys.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A quota that cannot be enforced was asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// The refill rate was zero.
    #[error("the rate must be at least one request per second")]
    ZeroRate,
    /// The burst was zero, which would refuse every request.
    #[error("the burst must be at least one request")]
    ZeroBurst,
}

/// How many requests a client may make: `rate_per_sec` sustained, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    rate_per_sec: u32,
    burst: u32,
}

impl Quota {
    /// A quota refilling `rate_per_sec` tokens a second into a bucket of `burst` tokens.
    pub fn new(rate_per_sec: u32, burst: u32) -> Result<Self, QuotaError> {
        if rate_per_sec == 0 {
            return Err(QuotaError::ZeroRate);
        }
        if burst == 0 {
            return Err(QuotaError::ZeroBurst);
        }
        Ok(Quota { rate_per_sec, burst })
    }

    /// The default for anonymous callers, keyed by IP: 100 a second, burst 200.
    pub const fn anonymous_default() -> Self {
        Quota { rate_per_sec: 100, burst: 200 }
    }

    /// The default for signed-in callers, keyed by user: 50 a second, burst 100.
    pub const fn user_default() -> Self {
        Quota { rate_per_sec: 50, burst: 100 }
    }

    /// Tokens added to the bucket per second.
    pub const fn rate_per_sec(&self) -> u32 {
        self.rate_per_sec
    }

    /// The bucket's size: how many requests may arrive at once.
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// The window advertised in `RateLimit-Policy`: the whole seconds an empty
    /// bucket takes to refill, at least one.
    pub fn window_secs(&self) -> u64 {
        u64::from(self.burst).div_ceil(u64::from(self.rate_per_sec)).max(1)
    }

    /// Nanoseconds per token, rounded up so the limiter never admits more than the rate.
    fn emission_interval_nanos(&self) -> u64 {
        NANOS_PER_SEC.div_ceil(u64::from(self.rate_per_sec))
    }
}

/// Whom a bucket belongs to: a signed-in user, or an anonymous caller's IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// A caller with a verified token, keyed by the token's subject.
    User(Uuid),
    /// A caller without a token, keyed by its address.
    Ip(IpAddr),
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientKey::User(id) => write!(f, "user:{id}"),
            ClientKey::Ip(ip) => write!(f, "ip:{ip}"),
        }
    }
}

/// The outcome of one check, carrying what the response headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The request may proceed.
    Allowed {
        /// Requests the client may still make right now.
        remaining: u32,
        /// Time until the bucket is full again.
        reset_after: Duration,
        /// The quota that was applied.
        quota: Quota,
    },
    /// The request must be refused with 429.
    Limited {
        /// Time until one request would be admitted again.
        retry_after: Duration,
        /// Time until the bucket is full again.
        reset_after: Duration,
        /// The quota that was applied.
        quota: Quota,
    },
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// Requests the client may still make right now (zero when limited).
    pub fn remaining(&self) -> u32 {
        match self {
            Decision::Allowed { remaining, .. } => *remaining,
            Decision::Limited { .. } => 0,
        }
    }

    /// How long a limited client must wait, or `None` when the request was allowed.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Decision::Allowed { .. } => None,
            Decision::Limited { retry_after, .. } => Some(*retry_after),
        }
    }

    /// The seconds to put in `Retry-After`: rounded up and at least one, because a
    /// zero would invite an immediate retry that is still refused.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after().map(|d| ceil_secs(d).max(1))
    }

    /// The quota that was applied.
    pub fn quota(&self) -> Quota {
        match self {
            Decision::Allowed { quota, .. } | Decision::Limited { quota, .. } => *quota,
        }
    }

    fn reset_after(&self) -> Duration {
        match self {
            Decision::Allowed { reset_after, .. } | Decision::Limited { reset_after, .. } => *reset_after,
        }
    }

    /// The `RateLimit` and `RateLimit-Policy` headers, plus `Retry-After` when limited.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let quota = self.quota();
        let mut headers = Vec::with_capacity(3);
        let state = format!("\"{POLICY_NAME}\";r={};t={}", self.remaining(), ceil_secs(self.reset_after()));
        let policy = format!("\"{POLICY_NAME}\";q={};w={}", quota.burst(), quota.window_secs());
        // Both strings are built from digits and ASCII punctuation only, so the
        // conversions cannot fail; skipping a header is the harmless fallback.
        if let Ok(value) = HeaderValue::try_from(state) {
            headers.push((RATELIMIT, value));
        }
        if let Ok(value) = HeaderValue::try_from(policy) {
            headers.push((RATELIMIT_POLICY, value));
        }
        if let Some(secs) = self.retry_after_secs() {
            headers.push((RETRY_AFTER, HeaderValue::from(secs)));
        }
        headers
    }
}

/// A token-bucket limiter for one quota, with one bucket per client key.
#[derive(Debug)]
pub struct RateLimiter {
    quota: Quota,
    emission_nanos: u64,
    /// `burst` emission intervals: how far ahead of now a TAT may run.
    limit_nanos: u64,
    max_entries: usize,
    buckets: DashMap<ClientKey, AtomicU64>,
}

impl RateLimiter {
    /// A limiter enforcing `quota`, keeping at most [`DEFAULT_MAX_ENTRIES`] buckets.
    pub fn new(quota: Quota) -> Self {
        Self::with_max_entries(quota, DEFAULT_MAX_ENTRIES)
    }

    /// A limiter enforcing `quota`, keeping at most `max_entries` buckets (at least one).
    pub fn with_max_entries(quota: Quota, max_entries: usize) -> Self {
        let emission_nanos = quota.emission_interval_nanos();
        RateLimiter {
            quota,
            emission_nanos,
            limit_nanos: emission_nanos.saturating_mul(u64::from(quota.burst)),
            max_entries: max_entries.max(1),
            buckets: DashMap::new(),
        }
    }

    /// The quota this limiter enforces.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// How many buckets are held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Takes one token from `key`'s bucket at time `now`, or says how long to wait.
    ///
    /// When the table is at its cap, idle buckets are swept first; if every bucket
    /// is still refilling, a key without a bucket is refused rather than letting
    /// memory grow without bound. Clients that already have a bucket are unaffected.
    pub fn check(&self, key: &ClientKey, now: Nanos) -> Decision {
        if let Some(bucket) = self.buckets.get(key) {
            return self.take(&bucket, now.as_nanos());
        }
        if self.buckets.len() >= self.max_entries {
            self.sweep(now);
            if self.buckets.len() >= self.max_entries {
                let wait = Duration::from_nanos(self.emission_nanos);
                return Decision::Limited { retry_after: wait, reset_after: wait, quota: self.quota };
            }
        }
        let bucket = self.buckets.entry(*key).or_insert_with(|| AtomicU64::new(0));
        self.take(&bucket, now.as_nanos())
    }

    /// Drops every bucket that has refilled completely by `now`, returning how many
    /// were dropped. A full bucket behaves exactly like a missing one, so this
    /// forgets nothing a later check would need.
    pub fn sweep(&self, now: Nanos) -> usize {
        let before = self.buckets.len();
        let now = now.as_nanos();
        self.buckets.retain(|_, tat| tat.load(Ordering::Acquire) > now);
        before.saturating_sub(self.buckets.len())
    }

    /// The GCRA step: admit and advance the TAT, or report the wait.
    fn take(&self, tat_cell: &AtomicU64, now: u64) -> Decision {
        let mut tat = tat_cell.load(Ordering::Acquire);
        loop {
            let new_tat = tat.max(now).saturating_add(self.emission_nanos);
            let ahead = new_tat - now;
            if ahead > self.limit_nanos {
                return Decision::Limited {
                    retry_after: Duration::from_nanos(ahead - self.limit_nanos),
                    reset_after: Duration::from_nanos(tat.saturating_sub(now)),
                    quota: self.quota,
                };
            }
            match tat_cell.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let tokens_left = (self.limit_nanos - ahead) / self.emission_nanos;
                    return Decision::Allowed {
                        remaining: u32::try_from(tokens_left).unwrap_or(u32::MAX),
                        reset_after: Duration::from_nanos(ahead),
                        quota: self.quota,
                    };
                }
                Err(current) => tat = current,
            }
        }
    }
}

/// The gateway's two limiters: anonymous callers by IP, signed-in callers by user.
#[derive(Debug)]
pub struct ClientLimits {
    /// Applied to [`ClientKey::Ip`].
    pub anonymous: RateLimiter,
    /// Applied to [`ClientKey::User`].
    pub user: RateLimiter,
}

impl ClientLimits {
    /// Limits with the given quotas for anonymous and signed-in callers.
    pub fn new(anonymous: Quota, user: Quota) -> Self {
        ClientLimits { anonymous: RateLimiter::new(anonymous), user: RateLimiter::new(user) }
    }

    /// Checks `key` against the limiter its kind belongs to.
    pub fn check(&self, key: &ClientKey, now: Nanos) -> Decision {
        match key {
            ClientKey::User(_) => self.user.check(key, now),
            ClientKey::Ip(_) => self.anonymous.check(key, now),
        }
    }

    /// Sweeps idle buckets from both limiters, returning how many were dropped.
    pub fn sweep(&self, now: Nanos) -> usize {
        self.anonymous.sweep(now) + self.user.sweep(now)
    }
}

impl Default for ClientLimits {
    /// 100/s burst 200 per IP for anonymous calls, 50/s burst 100 per user.
    fn default() -> Self {
        Self::new(Quota::anonymous_default(), Quota::user_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU32;

    fn ip(last: u8) -> ClientKey {
        ClientKey::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
    }

    fn quota(rate: u32, burst: u32) -> Quota {
        Quota::new(rate, burst).unwrap()
    }

    fn header<'a>(headers: &'a [(HeaderName, HeaderValue)], name: &HeaderName) -> Option<&'a str> {
        headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn rejects_zero_rate_or_burst() {
        assert_eq!(Quota::new(0, 5), Err(QuotaError::ZeroRate));
        assert_eq!(Quota::new(5, 0), Err(QuotaError::ZeroBurst));
    }

    #[test]
    fn admits_a_full_burst_then_limits() {
        let limiter = RateLimiter::new(quota(10, 5));
        let now = Nanos::from_secs(100);
        for expected_remaining in (0..5).rev() {
            let decision = limiter.check(&ip(1), now);
            assert_eq!(decision.remaining(), expected_remaining);
            assert!(decision.is_allowed());
        }
        assert!(!limiter.check(&ip(1), now).is_allowed());
    }

    #[test]
    fn refills_one_token_per_emission_interval() {
        let limiter = RateLimiter::new(quota(10, 2));
        let t0 = Nanos::from_secs(1);
        assert!(limiter.check(&ip(1), t0).is_allowed());
        assert!(limiter.check(&ip(1), t0).is_allowed());
        assert!(!limiter.check(&ip(1), t0).is_allowed());

        let almost = t0 + Duration::from_millis(99);
        assert!(!limiter.check(&ip(1), almost).is_allowed());
        let later = t0 + Duration::from_millis(100);
        assert!(limiter.check(&ip(1), later).is_allowed());
        assert!(!limiter.check(&ip(1), later).is_allowed());

        let much_later = t0 + Duration::from_secs(10);
        assert_eq!(limiter.check(&ip(1), much_later).remaining(), 1);
    }

    #[test]
    fn keys_do_not_share_buckets() {
        let limiter = RateLimiter::new(quota(1, 1));
        let now = Nanos::from_secs(5);
        assert!(limiter.check(&ip(1), now).is_allowed());
        assert!(!limiter.check(&ip(1), now).is_allowed());
        assert!(limiter.check(&ip(2), now).is_allowed());
        let user = ClientKey::User(Uuid::from_u128(7));
        assert!(limiter.check(&user, now).is_allowed());
    }

    #[test]
    fn retry_after_is_the_time_until_the_next_token() {
        let limiter = RateLimiter::new(quota(4, 1));
        let t0 = Nanos::from_secs(1);
        assert!(limiter.check(&ip(1), t0).is_allowed());

        let t1 = t0 + Duration::from_millis(100);
        let decision = limiter.check(&ip(1), t1);
        assert_eq!(decision.retry_after(), Some(Duration::from_millis(150)));
        assert_eq!(decision.retry_after_secs(), Some(1));

        let t2 = t1 + Duration::from_millis(150);
        assert!(limiter.check(&ip(1), t2).is_allowed());
    }

    #[test]
    fn retry_after_seconds_round_up() {
        let limiter = RateLimiter::new(quota(1, 1));
        let t0 = Nanos::from_secs(1);
        assert!(limiter.check(&ip(1), t0).is_allowed());
        let decision = limiter.check(&ip(1), t0 + Duration::from_millis(1));
        assert_eq!(decision.retry_after(), Some(Duration::from_millis(999)));
        assert_eq!(decision.retry_after_secs(), Some(1));
    }

    #[test]
    fn headers_follow_the_ietf_draft_syntax() {
        let limiter = RateLimiter::new(quota(100, 200));
        let now = Nanos::from_secs(1);
        let allowed = limiter.check(&ip(1), now);
        let headers = allowed.headers();
        assert_eq!(header(&headers, &RATELIMIT), Some("\"default\";r=199;t=1"));
        assert_eq!(header(&headers, &RATELIMIT_POLICY), Some("\"default\";q=200;w=2"));
        assert_eq!(header(&headers, &RETRY_AFTER), None);

        for _ in 0..199 {
            limiter.check(&ip(1), now);
        }
        let limited = limiter.check(&ip(1), now);
        let headers = limited.headers();
        assert_eq!(header(&headers, &RATELIMIT), Some("\"default\";r=0;t=2"));
        assert_eq!(header(&headers, &RETRY_AFTER), Some("1"));
    }

    #[test]
    fn concurrent_callers_never_exceed_the_burst_at_one_instant() {
        let limiter = Arc::new(RateLimiter::new(quota(50, 100)));
        let admitted = Arc::new(AtomicU32::new(0));
        let now = Nanos::from_secs(42);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                let admitted = Arc::clone(&admitted);
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        if limiter.check(&ip(9), now).is_allowed() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn concurrent_callers_never_exceed_burst_plus_refill() {
        let limiter = Arc::new(RateLimiter::new(quota(1000, 10)));
        let admitted = Arc::new(AtomicU32::new(0));
        let start = Nanos::from_secs(1);
        // Each thread walks the same 50 ms of time in 1 ms steps.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                let admitted = Arc::clone(&admitted);
                std::thread::spawn(move || {
                    for ms in 0..=50 {
                        let now = start + Duration::from_millis(ms);
                        for _ in 0..5 {
                            if limiter.check(&ip(3), now).is_allowed() {
                                admitted.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // burst + elapsed * rate = 10 + 0.050 s * 1000/s
        assert!(admitted.load(Ordering::Relaxed) <= 60);
    }

    #[test]
    fn sweep_drops_only_buckets_that_have_refilled() {
        let limiter = RateLimiter::new(quota(10, 10));
        let t0 = Nanos::from_secs(1);
        limiter.check(&ip(1), t0);
        let t1 = t0 + Duration::from_millis(500);
        limiter.check(&ip(2), t1);
        // ip 1 is full again after 100 ms, ip 2 not until t1 + 100 ms.
        assert_eq!(limiter.sweep(t0 + Duration::from_millis(550)), 1);
        assert_eq!(limiter.len(), 1);
        assert_eq!(limiter.sweep(t1 + Duration::from_millis(100)), 1);
        assert!(limiter.is_empty());
    }

    #[test]
    fn a_swept_key_starts_again_with_a_full_bucket() {
        let limiter = RateLimiter::new(quota(1, 3));
        let t0 = Nanos::from_secs(1);
        for _ in 0..3 {
            limiter.check(&ip(1), t0);
        }
        let later = t0 + Duration::from_secs(3);
        limiter.sweep(later);
        assert_eq!(limiter.check(&ip(1), later).remaining(), 2);
    }

    #[test]
    fn a_full_table_sweeps_idle_buckets_to_make_room() {
        let limiter = RateLimiter::with_max_entries(quota(10, 1), 2);
        let t0 = Nanos::from_secs(1);
        limiter.check(&ip(1), t0);
        limiter.check(&ip(2), t0);
        let later = t0 + Duration::from_secs(1);
        assert!(limiter.check(&ip(3), later).is_allowed());
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn a_full_table_of_busy_buckets_refuses_new_keys_but_not_known_ones() {
        let limiter = RateLimiter::with_max_entries(quota(1, 5), 2);
        let t0 = Nanos::from_secs(1);
        limiter.check(&ip(1), t0);
        limiter.check(&ip(2), t0);
        let decision = limiter.check(&ip(3), t0);
        assert!(!decision.is_allowed());
        assert!(decision.retry_after_secs() >= Some(1));
        assert!(limiter.check(&ip(1), t0).is_allowed());
        assert_eq!(limiter.len(), 2);
    }

    #[test]
    fn client_limits_apply_the_quota_of_the_key_kind() {
        let limits = ClientLimits::new(quota(1, 1), quota(1, 3));
        let now = Nanos::from_secs(1);
        let user = ClientKey::User(Uuid::from_u128(1));
        assert_eq!(limits.check(&user, now).quota().burst(), 3);
        assert_eq!(limits.check(&ip(1), now).quota().burst(), 1);
        assert!(!limits.check(&ip(1), now).is_allowed());
        assert!(limits.check(&user, now).is_allowed());
    }

    #[test]
    fn default_limits_match_the_architecture() {
        let limits = ClientLimits::default();
        assert_eq!(limits.anonymous.quota(), quota(100, 200));
        assert_eq!(limits.user.quota(), quota(50, 100));
    }

    #[test]
    fn client_keys_display_their_kind() {
        assert_eq!(ip(4).to_string(), "ip:10.0.0.4");
        assert_eq!(ClientKey::User(Uuid::nil()).to_string(), "user:00000000-0000-0000-0000-000000000000");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_admits_more_than_burst_plus_refill(
                rate in 1u32..2000,
                burst in 1u32..300,
                gaps_ms in proptest::collection::vec(0u64..50, 1..400),
            ) {
                let q = quota(rate, burst);
                let limiter = RateLimiter::new(q);
                let start = Nanos::from_secs(10);
                let mut now = start;
                let mut admitted = 0u64;
                for gap in gaps_ms {
                    now = now + Duration::from_millis(gap);
                    if limiter.check(&ip(1), now).is_allowed() {
                        admitted += 1;
                    }
                }
                let elapsed = now.saturating_duration_since(start).as_secs_f64();
                let bound = f64::from(burst) + elapsed * f64::from(rate);
                prop_assert!(admitted as f64 <= bound + 1e-9);
            }

            #[test]
            fn retry_after_is_always_at_least_one_second(rate in 1u32..5000, burst in 1u32..50) {
                let limiter = RateLimiter::new(quota(rate, burst));
                let now = Nanos::from_secs(1);
                for _ in 0..burst {
                    limiter.check(&ip(1), now);
                }
                let limited = limiter.check(&ip(1), now);
                prop_assert!(!limited.is_allowed());
                prop_assert!(limited.retry_after_secs().unwrap() >= 1);
            }
        }
    }
}

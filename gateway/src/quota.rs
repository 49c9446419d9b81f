//! Per-user submission rate: `gateway.submits_per_user_per_sec`, with a
//! burst of `gateway.submit_burst_per_user`, counted per gateway process
//! with governor's keyed GCRA limiter. A refused submission is answered
//! `rate_limited` with how long to wait (`retry_after_ms`, HTTP 429 with
//! `Retry-After`), and nothing is recorded.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Checks between two prunings of users idle long enough to be forgotten.
const PRUNE_EVERY: u64 = 10_000;

/// The per-user submission limiter; off when the rate is 0.
pub struct SubmitQuota {
    limiter: Option<DefaultKeyedRateLimiter<Arc<str>>>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl SubmitQuota {
    /// `per_sec` submissions per second per user (0: no limit), `burst`
    /// at once.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_sec).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            limiter,
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one submission of `user`: `Err(wait)` if it is over the
    /// quota, with how long until the next one is allowed.
    pub fn check(&self, user: &Arc<str>) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            // A user whose bucket is full again carries no state.
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter
            .check_key(user)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// `wait` in whole milliseconds, at least 1 (a client told "0" would retry
/// in a busy loop).
pub fn retry_after_ms(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_past_the_burst_waits_and_others_do_not() {
        let quota = SubmitQuota::new(10, 3);
        let alice: Arc<str> = Arc::from("alice");
        let bob: Arc<str> = Arc::from("bob");
        for _ in 0..3 {
            quota.check(&alice).unwrap();
        }
        let wait = quota.check(&alice).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(retry_after_ms(wait) >= 1);
        quota.check(&bob).unwrap();
    }

    #[test]
    fn a_rate_of_zero_is_no_limit() {
        let quota = SubmitQuota::new(0, 0);
        let user: Arc<str> = Arc::from("u");
        for _ in 0..10_000 {
            quota.check(&user).unwrap();
        }
    }
}

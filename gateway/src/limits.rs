//! Flood protection at the door: a token bucket of new connections per
//! client address.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use dashmap::DashMap;

/// Connections per second per address, with a burst; `rate == 0` is off.
pub struct ConnectLimiter {
    rate: f64,
    burst: f64,
    /// address -> (tokens left, when last refilled). Pruned now and then.
    buckets: DashMap<IpAddr, (f64, Instant)>,
    checks: AtomicU64,
}

/// Checks between two prunings of idle buckets.
const PRUNE_EVERY: u64 = 10_000;

impl ConnectLimiter {
    /// A limiter of `rate` connections/s and `burst` per address.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: DashMap::new(),
            checks: AtomicU64::new(0),
        }
    }

    /// Whether `addr` may open a connection now (and counts it if so).
    pub fn allow(&self, addr: IpAddr) -> bool {
        self.allow_at(addr, Instant::now())
    }

    fn allow_at(&self, addr: IpAddr, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            // A bucket idle long enough to be full again carries no state.
            let full_after = self.burst / self.rate;
            self.buckets
                .retain(|_, (_, last)| now.duration_since(*last).as_secs_f64() < full_after);
        }
        let mut bucket = self.buckets.entry(addr).or_insert((self.burst, now));
        let (tokens, last) = *bucket;
        let refilled =
            (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
        if refilled >= 1.0 {
            *bucket = (refilled - 1.0, now);
            true
        } else {
            *bucket = (refilled, now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate_per_address() {
        let limiter = ConnectLimiter::new(10, 3);
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.allow_at(a, t0)));
        assert!(!limiter.allow_at(a, t0), "burst used up");
        assert!(limiter.allow_at(b, t0), "other addresses are not affected");
        assert!(
            limiter.allow_at(a, t0 + Duration::from_millis(110)),
            "refilled at 10/s"
        );
        assert!(!limiter.allow_at(a, t0 + Duration::from_millis(120)));
    }

    #[test]
    fn zero_rate_is_off() {
        let limiter = ConnectLimiter::new(0, 1);
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        assert!((0..1000).all(|_| limiter.allow(a)));
    }
}

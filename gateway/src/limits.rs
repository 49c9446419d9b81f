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

/// Sockets upgraded but not yet past `hello`, counted per process and per
/// client address, so that clients who never authenticate cannot hold an
/// unbounded number of them (each lives up to `hello_timeout_ms`).
pub struct Unauthenticated {
    max_total: usize,
    max_per_address: usize,
    total: std::sync::atomic::AtomicUsize,
    by_address: DashMap<IpAddr, usize>,
}

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooMany {
    /// This process holds `gateway.max_unauthenticated` such sockets.
    Process,
    /// This address holds `gateway.max_unauthenticated_per_address`.
    Address,
}

impl Unauthenticated {
    /// A counter with these caps.
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        Self {
            max_total,
            max_per_address,
            total: std::sync::atomic::AtomicUsize::new(0),
            by_address: DashMap::new(),
        }
    }

    /// Takes a place for a new socket from `addr`, held until the slot is
    /// dropped (at `hello`, or when the socket ends before it).
    pub fn enter(self: &std::sync::Arc<Self>, addr: IpAddr) -> Result<Slot, TooMany> {
        let taken = self
            .total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_total).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(TooMany::Process);
        }
        let mut held = self.by_address.entry(addr).or_insert(0);
        // With max_per_address >= 1 (validated) a refused address has
        // sockets, so no empty entry is left behind.
        if *held >= self.max_per_address {
            drop(held);
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(TooMany::Address);
        }
        *held += 1;
        Ok(Slot {
            owner: self.clone(),
            addr,
        })
    }

    /// Unauthenticated sockets held now.
    pub fn count(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// One unauthenticated socket's place; gives it back when dropped.
pub struct Slot {
    owner: std::sync::Arc<Unauthenticated>,
    addr: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.owner.total.fetch_sub(1, Ordering::Relaxed);
        // The entry goes with its last socket, so the map holds only
        // addresses with sockets before hello right now.
        self.owner.by_address.remove_if_mut(&self.addr, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

#[cfg(test)]
mod unauthenticated_tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn caps_per_address_and_per_process_and_places_come_back() {
        let caps = Arc::new(Unauthenticated::new(3, 2));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = caps.enter(a).unwrap();
        let a2 = caps.enter(a).unwrap();
        assert_eq!(caps.enter(a).err(), Some(TooMany::Address));
        assert_eq!(caps.count(), 2, "a refusal takes no place");
        let _b1 = caps.enter(b).unwrap();
        assert_eq!(caps.enter(b).err(), Some(TooMany::Process));
        drop(a1);
        assert_eq!(caps.count(), 2);
        let _b2 = caps.enter(b).unwrap();
        drop(a2);
        assert_eq!(caps.enter(b).err(), Some(TooMany::Address));
    }

    #[test]
    fn an_address_without_sockets_leaves_no_entry() {
        let caps = Arc::new(Unauthenticated::new(10, 10));
        let a: IpAddr = [10, 0, 0, 1].into();
        drop(caps.enter(a).unwrap());
        assert!(caps.by_address.is_empty());
        assert_eq!(caps.count(), 0);
    }
}

//! Who is connected here: live sessions indexed by user, so an event is
//! handed to every session of its user on this instance and to no one else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use sluice_proto::EventHead;
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub use crate::mailbox::Mailbox;
use crate::mailbox::{self, Refused};

/// An event on its way to a session: its head for ordering, and the frame
/// bytes shared by every recipient (encoded once, cloned by refcount).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event's seq, job and status, read without decoding the rest.
    pub head: EventHead,
    /// The exact frame text to send.
    pub frame: Utf8Bytes,
    /// When the runner published it (ms since the epoch); 0 when read back
    /// from the event log. For the delivery latency metric.
    pub published_ms: u64,
}

/// One session's mailbox in the registry.
struct Slot {
    id: u64,
    tx: mailbox::Sender,
}

/// How much one session's mailbox may hold before it is evicted.
#[derive(Debug, Clone, Copy)]
pub struct MailboxLimits {
    /// Most frames waiting for one session.
    pub frames: usize,
    /// Most bytes waiting for one session.
    pub bytes: usize,
}

/// The user already holds the most sessions allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many sessions for this user")]
pub struct TooManySessions;

/// Sessions by user. A shard lock is held only to push into bounded
/// queues, never across an await.
pub struct Registry {
    /// user id -> that user's sessions on this instance.
    users: DashMap<Arc<str>, Vec<Slot>>,
    /// Session ids, unique within this process.
    next_id: AtomicU64,
    /// Open sessions, for readiness, metrics and drain.
    sessions: AtomicUsize,
    /// Sessions evicted because their queue was full (closed with 1013).
    evicted: AtomicU64,
    /// Mailbox bounds every session gets.
    limits: MailboxLimits,
    /// Sessions one user may hold here.
    max_per_user: usize,
}

/// A session's membership; dropping it leaves the registry.
pub struct Registration {
    id: u64,
    user: Arc<str>,
    registry: Arc<Registry>,
}

impl Registry {
    /// An empty registry whose sessions get `limits`, at most
    /// `max_per_user` sessions per user.
    pub fn new(limits: MailboxLimits, max_per_user: usize) -> Self {
        Self {
            users: DashMap::new(),
            next_id: AtomicU64::new(0),
            sessions: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
            limits,
            max_per_user,
        }
    }

    /// Adds a session for `user`. When its mailbox passes its frame or byte
    /// bound the registry closes it and forgets it: the session sees its
    /// mailbox end and closes itself with 1013 (too slow).
    pub fn register(
        self: &Arc<Self>,
        user: Arc<str>,
    ) -> Result<(Registration, Mailbox), TooManySessions> {
        let (tx, rx) = mailbox::bounded(self.limits.frames, self.limits.bytes);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut slots = self.users.entry(user.clone()).or_default();
            if slots.len() >= self.max_per_user {
                return Err(TooManySessions);
            }
            slots.push(Slot { id, tx });
        }
        self.sessions.fetch_add(1, Ordering::Relaxed);
        let registration = Registration {
            id,
            user,
            registry: self.clone(),
        };
        Ok((registration, rx))
    }

    /// Hands `delivery` to every session of `user`; returns how many got it.
    pub fn deliver(&self, user: &str, delivery: &Delivery) -> usize {
        let Some(mut slots) = self.users.get_mut(user) else {
            return 0;
        };
        let mut reached = 0;
        slots.retain(|slot| {
            let bound = match slot.tx.push(delivery.clone()) {
                Ok(()) => {
                    reached += 1;
                    return true;
                }
                Err(Refused::Closed) => return false,
                Err(Refused::Frames) => "frames",
                Err(Refused::Bytes) => "bytes",
            };
            slot.tx.close();
            self.evicted.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                session = slot.id,
                bound,
                "session queue full: evicting slow session"
            );
            false
        });
        reached
    }

    /// Open sessions on this instance.
    pub fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Sessions evicted as too slow since start.
    pub fn evicted_count(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    fn leave(&self, user: &str, id: u64) {
        self.users.remove_if_mut(user, |_, slots| {
            slots.retain(|s| s.id != id);
            slots.is_empty()
        });
        self.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Registration {
    /// This session's id.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.leave(&self.user, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::EventStatus;
    use uuid::Uuid;

    fn delivery(seq: u64) -> Delivery {
        Delivery {
            head: EventHead {
                seq,
                job_id: Some(Uuid::nil()),
                status: Some(EventStatus::Done),
            },
            frame: Utf8Bytes::from_static("{}"),
            published_ms: 0,
        }
    }

    fn registry(frames: usize, bytes: usize, per_user: usize) -> Arc<Registry> {
        Arc::new(Registry::new(MailboxLimits { frames, bytes }, per_user))
    }

    #[tokio::test]
    async fn delivers_to_every_session_of_the_user_only() {
        let registry = registry(4, 1 << 20, 10);
        let (_a1, mut rx_a1) = registry.register("a".into()).unwrap();
        let (_a2, mut rx_a2) = registry.register("a".into()).unwrap();
        let (_b, mut rx_b) = registry.register("b".into()).unwrap();
        assert_eq!(registry.deliver("a", &delivery(1)), 2);
        assert_eq!(rx_a1.recv().await.unwrap().head.seq, 1);
        assert_eq!(rx_a2.recv().await.unwrap().head.seq, 1);
        assert!(rx_b.try_recv().is_none());
        assert_eq!(registry.deliver("nobody", &delivery(2)), 0);
    }

    #[tokio::test]
    async fn a_byte_bound_evicts_before_the_frame_bound() {
        let registry = registry(100, 5, 10);
        let (_reg, mut rx) = registry.register("a".into()).unwrap();
        assert_eq!(registry.deliver("a", &delivery(1)), 1, "2 bytes queued");
        assert_eq!(rx.recv().await.unwrap().head.seq, 1);
        assert_eq!(
            registry.deliver("a", &delivery(2)),
            1,
            "taken bytes are given back"
        );
        assert_eq!(registry.deliver("a", &delivery(3)), 1);
        assert_eq!(
            registry.deliver("a", &delivery(4)),
            0,
            "6 bytes > 5: evicted"
        );
        assert_eq!(registry.evicted_count(), 1);
    }

    #[test]
    fn sessions_per_user_are_capped() {
        let registry = registry(4, 1 << 20, 2);
        let _a1 = registry.register("a".into()).unwrap();
        let _a2 = registry.register("a".into()).unwrap();
        assert!(registry.register("a".into()).is_err());
        assert!(registry.register("b".into()).is_ok());
    }

    #[tokio::test]
    async fn full_mailbox_evicts_and_drop_leaves() {
        let registry = registry(1, 1 << 20, 10);
        let (reg, mut rx) = registry.register("a".into()).unwrap();
        assert_eq!(registry.deliver("a", &delivery(1)), 1);
        assert_eq!(registry.deliver("a", &delivery(2)), 0);
        assert_eq!(registry.evicted_count(), 1);
        assert_eq!(rx.recv().await.unwrap().head.seq, 1);
        assert!(
            rx.recv().await.is_none(),
            "evicted mailbox closes after draining"
        );
        assert_eq!(registry.session_count(), 1);
        drop(reg);
        assert_eq!(registry.session_count(), 0);
        assert!(registry.users.is_empty());
    }
}

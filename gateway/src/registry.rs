//! Who is connected here: live sessions indexed by user, so an event is
//! handed to every session of its user on this instance and to no one else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use sluice_proto::EventHead;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// An event on its way to a session: its head for ordering, and the frame
/// bytes shared by every recipient (encoded once, cloned by refcount).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub head: EventHead,
    pub frame: Utf8Bytes,
    /// When the runner published it (ms since the epoch); 0 when read back
    /// from the event log. For the delivery latency metric.
    pub published_ms: u64,
}

/// One session's mailbox in the registry.
struct Slot {
    id: u64,
    tx: mpsc::Sender<Delivery>,
}

/// Sessions by user. A shard lock is held only to push into bounded
/// queues, never across an await.
#[derive(Default)]
pub struct Registry {
    /// user id -> that user's sessions on this instance.
    users: DashMap<Arc<str>, Vec<Slot>>,
    /// Session ids, unique within this process.
    next_id: AtomicU64,
    /// Open sessions, for readiness, metrics and drain.
    sessions: AtomicUsize,
    /// Sessions evicted because their queue was full (closed with 1013).
    evicted: AtomicU64,
}

/// A session's membership; dropping it leaves the registry.
pub struct Registration {
    id: u64,
    user: Arc<str>,
    registry: Arc<Registry>,
}

impl Registry {
    /// Adds a session for `user` with a mailbox of `capacity` events. When
    /// the mailbox is full the registry drops its sender: the session sees
    /// its mailbox close and ends itself with 1013 (too slow).
    pub fn register(
        self: &Arc<Self>,
        user: Arc<str>,
        capacity: usize,
    ) -> (Registration, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(capacity);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.users
            .entry(user.clone())
            .or_default()
            .push(Slot { id, tx });
        self.sessions.fetch_add(1, Ordering::Relaxed);
        let registration = Registration {
            id,
            user,
            registry: self.clone(),
        };
        (registration, rx)
    }

    /// Hands `delivery` to every session of `user`; returns how many got it.
    pub fn deliver(&self, user: &str, delivery: &Delivery) -> usize {
        let Some(mut slots) = self.users.get_mut(user) else {
            return 0;
        };
        let mut reached = 0;
        slots.retain(|slot| match slot.tx.try_send(delivery.clone()) {
            Ok(()) => {
                reached += 1;
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.evicted.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    session = slot.id,
                    "session queue full: evicting slow session"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
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
                job_id: Uuid::nil(),
                status: EventStatus::Done,
            },
            frame: Utf8Bytes::from_static("{}"),
            published_ms: 0,
        }
    }

    #[tokio::test]
    async fn delivers_to_every_session_of_the_user_only() {
        let registry = Arc::new(Registry::default());
        let (_a1, mut rx_a1) = registry.register("a".into(), 4);
        let (_a2, mut rx_a2) = registry.register("a".into(), 4);
        let (_b, mut rx_b) = registry.register("b".into(), 4);
        assert_eq!(registry.deliver("a", &delivery(1)), 2);
        assert_eq!(rx_a1.recv().await.unwrap().head.seq, 1);
        assert_eq!(rx_a2.recv().await.unwrap().head.seq, 1);
        assert!(rx_b.try_recv().is_err());
        assert_eq!(registry.deliver("nobody", &delivery(2)), 0);
    }

    #[tokio::test]
    async fn full_mailbox_evicts_and_drop_leaves() {
        let registry = Arc::new(Registry::default());
        let (reg, mut rx) = registry.register("a".into(), 1);
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

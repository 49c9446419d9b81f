//! A session's event mailbox: a bounded queue from the broker consumer to
//! one session, sized in frames and in bytes.
//!
//! Hand-made rather than a `tokio::sync::mpsc` channel because of memory:
//! an mpsc channel allocates a block of 32 slots up front (about 2.5 KiB
//! for a `Delivery`), and a gateway holds one mailbox per idle session.
//! This one is a `VecDeque` that allocates only while events wait, behind a
//! mutex held for a push or a pop, with a `Notify` to wake the session.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::registry::Delivery;

/// A queue that grew past this many slots is given back when it empties,
/// so that one burst does not pin its memory for the session's life.
const KEEP_CAPACITY: usize = 8;

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its most frames.
    Frames,
    /// The queued frames would pass the byte bound.
    Bytes,
    /// The session is gone or the mailbox was closed.
    Closed,
}

/// What waits, and its size in frame bytes.
#[derive(Default)]
struct Queue {
    items: VecDeque<Delivery>,
    bytes: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    /// No more pushes: evicted by the registry, or the session is gone.
    closed: AtomicBool,
    /// Wakes the session when something was pushed or the mailbox closed.
    wake: Notify,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A push or pop cannot leave the queue half-changed; a panic
        // elsewhere while holding the lock does not make it unusable.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The registry's end: pushes deliveries and closes on eviction.
pub struct Sender {
    shared: Arc<Shared>,
    max_frames: usize,
    max_bytes: usize,
}

/// The session's end: takes deliveries in order.
pub struct Mailbox {
    shared: Arc<Shared>,
}

/// A new mailbox holding at most `max_frames` frames and `max_bytes` bytes.
pub fn bounded(max_frames: usize, max_bytes: usize) -> (Sender, Mailbox) {
    let shared = Arc::new(Shared {
        queue: Mutex::default(),
        closed: AtomicBool::new(false),
        wake: Notify::new(),
    });
    let sender = Sender {
        shared: shared.clone(),
        max_frames,
        max_bytes,
    };
    (sender, Mailbox { shared })
}

impl Sender {
    /// Queues `delivery`, or says which bound refused it. A refused push
    /// changes nothing; the caller decides whether to [`close`](Self::close).
    pub fn push(&self, delivery: Delivery) -> Result<(), Refused> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        let len = delivery.frame.len();
        {
            let mut queue = self.shared.queue();
            if queue.items.len() >= self.max_frames {
                return Err(Refused::Frames);
            }
            if queue.bytes + len > self.max_bytes {
                return Err(Refused::Bytes);
            }
            queue.bytes += len;
            queue.items.push_back(delivery);
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Closes the mailbox: the session takes what is queued, then sees `None`.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

impl Mailbox {
    /// The next delivery; `None` once the mailbox was closed and everything
    /// queued before has been taken. Cancel-safe: nothing is taken unless
    /// it is returned.
    pub async fn recv(&mut self) -> Option<Delivery> {
        loop {
            if let Some(delivery) = self.try_recv() {
                return Some(delivery);
            }
            if self.shared.closed.load(Ordering::Acquire) {
                // A push racing the close may have landed after the check.
                return self.try_recv();
            }
            // `notify_one` stores a permit when no one waits, so a push
            // between the checks above and this await is not missed.
            self.shared.wake.notified().await;
        }
    }

    /// The next delivery if one is queued.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        let mut queue = self.shared.queue();
        let delivery = queue.items.pop_front()?;
        queue.bytes -= delivery.frame.len();
        if queue.items.is_empty() && queue.items.capacity() > KEEP_CAPACITY {
            queue.items = VecDeque::new();
        }
        Some(delivery)
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::{EventHead, EventStatus};
    use tokio_tungstenite::tungstenite::Utf8Bytes;
    use uuid::Uuid;

    fn delivery(seq: u64, frame: &'static str) -> Delivery {
        Delivery {
            head: EventHead {
                seq,
                job_id: Some(Uuid::nil()),
                status: Some(EventStatus::Done),
            },
            frame: Utf8Bytes::from_static(frame),
            published_ms: 0,
        }
    }

    #[tokio::test]
    async fn keeps_order_and_wakes_a_waiting_session() {
        let (tx, mut rx) = bounded(10, 1000);
        let waiter = tokio::spawn(async move {
            let mut seqs = Vec::new();
            while let Some(d) = rx.recv().await {
                seqs.push(d.head.seq);
            }
            seqs
        });
        tokio::task::yield_now().await;
        for seq in 1..=5 {
            tx.push(delivery(seq, "{}")).unwrap();
            tokio::task::yield_now().await;
        }
        tx.close();
        assert_eq!(waiter.await.unwrap(), vec![1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn bounds_refuse_without_changing_the_queue() {
        let (tx, mut rx) = bounded(2, 5);
        tx.push(delivery(1, "ab")).unwrap();
        assert_eq!(tx.push(delivery(2, "abcd")), Err(Refused::Bytes));
        tx.push(delivery(3, "abc")).unwrap();
        assert_eq!(tx.push(delivery(4, "")), Err(Refused::Frames));
        assert_eq!(rx.recv().await.unwrap().head.seq, 1);
        tx.push(delivery(5, "")).unwrap();
        assert_eq!(rx.recv().await.unwrap().head.seq, 3);
        assert_eq!(rx.recv().await.unwrap().head.seq, 5);
        assert!(rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn a_closed_mailbox_drains_then_ends_and_refuses_pushes() {
        let (tx, mut rx) = bounded(10, 1000);
        tx.push(delivery(1, "{}")).unwrap();
        tx.close();
        assert_eq!(tx.push(delivery(2, "{}")), Err(Refused::Closed));
        assert_eq!(rx.recv().await.unwrap().head.seq, 1);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_dropped_session_refuses_pushes() {
        let (tx, rx) = bounded(10, 1000);
        drop(rx);
        assert_eq!(tx.push(delivery(1, "{}")), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn a_burst_gives_its_memory_back_once_taken() {
        let (tx, mut rx) = bounded(1000, 1 << 20);
        for seq in 0..100 {
            tx.push(delivery(seq, "{}")).unwrap();
        }
        while rx.try_recv().is_some() {}
        assert_eq!(rx.shared.queue().items.capacity(), 0);
        assert_eq!(rx.shared.queue().bytes, 0);
    }
}

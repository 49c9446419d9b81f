//! The order in which one session sees its user's events.
//!
//! Three promises meet here:
//! - stored events go out in strictly increasing `seq`, with no gaps, so a
//!   client that resumes "after the last seq I saw" misses nothing (two
//!   runners may publish seq 6 before seq 5; a relay may publish late);
//! - `accepted` for a job goes out before any event of that job, even when
//!   the runner is faster than the broker's confirm;
//! - `progress` events (seq 0) are advisory: sent when they cannot break the
//!   two promises above, dropped otherwise.
//!
//! Pure state, no I/O: the session feeds it and writes what it returns.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::registry::Delivery;

/// A missing range of seqs, `after < seq <= upto`, to read from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The last seq the session sent.
    pub after: u64,
    /// The newest seq to read up to.
    pub upto: u64,
}

/// Per-session ordering state.
#[derive(Debug, Default)]
pub struct Sequencer {
    /// The next stored seq this session may send.
    next: u64,
    /// Stored events that arrived ahead of `next`, or are blocked by a
    /// pending submit, by seq.
    held: BTreeMap<u64, Delivery>,
    /// Jobs submitted on this session whose `accepted`/`error` is not sent yet.
    pending: Vec<Uuid>,
}

impl Sequencer {
    /// Starts after `last_seq`, the newest seq the client already has (or
    /// that was replayed to it).
    pub fn new(last_seq: u64) -> Self {
        Self {
            // Saturating here and below: seqs come from the database and
            // from broker messages, which anyone with broker credentials can
            // publish; u64::MAX must not wrap the session back to 0.
            next: last_seq.saturating_add(1),
            ..Default::default()
        }
    }

    /// The newest stored seq sent (or skipped) so far.
    pub fn last_sent(&self) -> u64 {
        self.next.saturating_sub(1)
    }

    /// Takes an event (live or read back from the database) and appends to
    /// `out` every frame that may now be sent, in order.
    pub fn push(&mut self, delivery: Delivery, out: &mut Vec<Delivery>) {
        if delivery.head.is_progress() {
            if self.held.is_empty() && !waits(&self.pending, delivery.head.job_id) {
                out.push(delivery);
            }
            return;
        }
        if delivery.head.seq < self.next {
            return; // already sent: a duplicate from the relay or a replay
        }
        self.held.insert(delivery.head.seq, delivery);
        self.drain(out);
    }

    /// Notes a submit whose answer is not sent yet; its events wait.
    pub fn begin_submit(&mut self, job_id: Uuid) {
        self.pending.push(job_id);
    }

    /// The submit's answer was just written: release what waited for it.
    pub fn end_submit(&mut self, job_id: Uuid, out: &mut Vec<Delivery>) {
        self.pending.retain(|j| *j != job_id);
        self.drain(out);
    }

    /// The seqs missing before the first held event, if any are missing.
    pub fn gap(&self) -> Option<Gap> {
        let (&first, _) = self.held.first_key_value()?;
        (first > self.next).then(|| Gap {
            after: self.next.saturating_sub(1),
            upto: first.saturating_sub(1),
        })
    }

    /// Gives up on seqs before `seq` (they are no longer retained), then
    /// releases what follows.
    pub fn skip_to(&mut self, seq: u64, out: &mut Vec<Delivery>) {
        if seq > self.next {
            self.next = seq;
        }
        self.drain(out);
    }

    fn drain(&mut self, out: &mut Vec<Delivery>) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() != self.next || waits(&self.pending, entry.get().head.job_id) {
                return;
            }
            out.push(entry.remove());
            self.next = self.next.saturating_add(1);
        }
    }
}

/// Whether `job` (none for a message) waits for its submit's answer.
fn waits(pending: &[Uuid], job: Option<Uuid>) -> bool {
    job.is_some_and(|job| pending.contains(&job))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::{EventHead, EventStatus};
    use tokio_tungstenite::tungstenite::Utf8Bytes;

    fn ev(seq: u64, job: u128, status: EventStatus) -> Delivery {
        Delivery {
            head: EventHead {
                seq,
                job_id: Some(Uuid::from_u128(job)),
                status: Some(status),
            },
            frame: Utf8Bytes::from(format!("{seq}")),
            published_ms: 0,
        }
    }

    fn message(seq: u64) -> Delivery {
        Delivery {
            head: EventHead {
                seq,
                job_id: None,
                status: None,
            },
            frame: Utf8Bytes::from(format!("m{seq}")),
            published_ms: 0,
        }
    }

    #[test]
    fn messages_share_the_seq_order_and_wait_only_for_it() {
        let mut s = Sequencer::new(0);
        let mut out = vec![];
        s.begin_submit(Uuid::from_u128(9));
        s.push(message(2), &mut out);
        assert!(out.is_empty(), "seq 1 is missing");
        s.push(ev(1, 1, EventStatus::Done), &mut out);
        s.push(message(3), &mut out);
        s.push(message(3), &mut out);
        assert_eq!(
            seqs(&out),
            [1, 2, 3],
            "a pending submit of another job holds no message"
        );
        s.push(ev(4, 9, EventStatus::Running), &mut out);
        s.push(message(5), &mut out);
        assert_eq!(
            seqs(&out),
            [1, 2, 3],
            "the held event of the pending job holds what follows"
        );
        s.end_submit(Uuid::from_u128(9), &mut out);
        assert_eq!(seqs(&out), [1, 2, 3, 4, 5]);
    }

    fn seqs(out: &[Delivery]) -> Vec<u64> {
        out.iter().map(|d| d.head.seq).collect()
    }

    #[test]
    fn in_order_events_pass_and_duplicates_drop() {
        let mut s = Sequencer::new(10);
        let mut out = vec![];
        s.push(ev(9, 1, EventStatus::Done), &mut out);
        s.push(ev(11, 1, EventStatus::Running), &mut out);
        s.push(ev(11, 1, EventStatus::Running), &mut out);
        s.push(ev(12, 1, EventStatus::Done), &mut out);
        assert_eq!(seqs(&out), [11, 12]);
        assert_eq!(s.last_sent(), 12);
    }

    #[test]
    fn the_largest_seq_from_the_broker_neither_panics_nor_wraps() {
        let mut s = Sequencer::new(u64::MAX - 1);
        let mut out = vec![];
        s.push(ev(u64::MAX, 1, EventStatus::Done), &mut out);
        assert_eq!(seqs(&out), [u64::MAX]);
        assert_eq!(s.last_sent(), u64::MAX - 1, "saturated, not wrapped to 0");
        out.clear();
        s.push(ev(5, 1, EventStatus::Done), &mut out);
        assert!(out.is_empty(), "an old seq is not sent again");

        let mut fresh = Sequencer::new(0);
        fresh.push(ev(u64::MAX, 1, EventStatus::Done), &mut out);
        assert_eq!(
            fresh.gap(),
            Some(Gap {
                after: 0,
                upto: u64::MAX - 1
            })
        );
        let mut at_end = Sequencer::new(u64::MAX);
        at_end.push(ev(u64::MAX, 1, EventStatus::Done), &mut out);
    }

    #[test]
    fn out_of_order_events_wait_for_the_gap() {
        let mut s = Sequencer::new(0);
        let mut out = vec![];
        s.push(ev(2, 1, EventStatus::Running), &mut out);
        s.push(ev(3, 1, EventStatus::Done), &mut out);
        assert!(out.is_empty());
        assert_eq!(s.gap(), Some(Gap { after: 0, upto: 1 }));
        s.push(ev(1, 2, EventStatus::Running), &mut out);
        assert_eq!(seqs(&out), [1, 2, 3]);
        assert_eq!(s.gap(), None);
    }

    #[test]
    fn events_of_a_pending_submit_wait_for_accepted() {
        let mut s = Sequencer::new(0);
        let job = Uuid::from_u128(5);
        s.begin_submit(job);
        let mut out = vec![];
        s.push(ev(1, 5, EventStatus::Running), &mut out);
        s.push(ev(0, 5, EventStatus::Progress), &mut out);
        s.push(ev(2, 6, EventStatus::Done), &mut out);
        assert!(
            out.is_empty(),
            "nothing may overtake the pending job's events"
        );
        assert_eq!(s.gap(), None, "blocked is not missing");
        s.end_submit(job, &mut out);
        assert_eq!(seqs(&out), [1, 2]);
    }

    #[test]
    fn progress_passes_when_nothing_is_held() {
        let mut s = Sequencer::new(0);
        let mut out = vec![];
        s.push(ev(0, 1, EventStatus::Progress), &mut out);
        assert_eq!(out.len(), 1);
        s.push(ev(2, 1, EventStatus::Done), &mut out);
        s.push(ev(0, 1, EventStatus::Progress), &mut out);
        assert_eq!(out.len(), 1, "progress behind a gap is dropped");
    }

    #[test]
    fn skip_to_releases_after_an_unfillable_gap() {
        let mut s = Sequencer::new(0);
        let mut out = vec![];
        s.push(ev(4, 1, EventStatus::Done), &mut out);
        s.skip_to(4, &mut out);
        assert_eq!(seqs(&out), [4]);
        assert_eq!(s.last_sent(), 4);
    }
}

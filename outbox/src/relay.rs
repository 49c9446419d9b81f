//! The outbox relay: publishes what was committed but never published (the
//! process died between commit and publish, or the broker was away).
//!
//! Jobs: entries are locked with `SKIP LOCKED`, so several runners share
//! the backlog and none publishes a job another is publishing. An entry is
//! only taken once it is older than the submitting process's own publish
//! could take, so a submission still waiting for its confirm is left alone.
//!
//! Events: taken the same way, with `SKIP LOCKED`, and marked published in
//! the relay's transaction; a duplicate that still reaches a session (the
//! writer's own publish racing the relay) is dropped there by seq.
//!
//! A row the broker refuses for a reason of its own (a routing key AMQP
//! cannot carry, a message over the broker's size limit) does not block
//! the rows behind it: the round goes on past it, and it is blamed only if
//! a later row of the same round got through (so a broker outage blames
//! nothing). After [`sluice_store::outbox::SET_ASIDE_AFTER`] such rounds it
//! is set aside and counted in [`Round::events_set_aside`] /
//! [`Round::jobs_set_aside`].

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use sluice_store::outbox;
use tokio_util::sync::CancellationToken;

use crate::publisher::Publisher;

/// Events younger than this are left to the process that is publishing them.
const EVENT_MIN_AGE: Duration = Duration::from_secs(2);
/// Added to the publish timeout: a job entry younger than that is still the
/// submitting process's to publish or withdraw.
const JOB_MIN_AGE_SLACK: Duration = Duration::from_secs(2);
/// Rows relayed per round.
const BATCH: i64 = 500;
/// Failures in a row after which a round stops: the broker is away.
const FAILURES_IN_A_ROW: usize = 3;

/// Which failed rows of a round are to blame: those followed by a success.
#[derive(Debug)]
struct Blame<K> {
    sent: usize,
    since_success: Vec<K>,
    blamed: Vec<K>,
}

impl<K> Blame<K> {
    fn new() -> Self {
        Self {
            sent: 0,
            since_success: Vec::new(),
            blamed: Vec::new(),
        }
    }

    fn sent(&mut self) {
        self.sent += 1;
        self.blamed.append(&mut self.since_success);
    }

    /// Records a failure; `false` once the round should stop.
    fn failed(&mut self, key: K) -> bool {
        self.since_success.push(key);
        self.since_success.len() < FAILURES_IN_A_ROW
    }
}

/// Why a relay round stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// No pooled connection.
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Reading or updating the outbox failed.
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
}

/// What one round did and what is left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Events published this round.
    pub events_sent: usize,
    /// Jobs published this round.
    pub jobs_sent: usize,
    /// Unpublished events left after the round (set-aside ones not counted).
    pub events_left: i64,
    /// Job outbox entries left after the round (set-aside ones not counted).
    pub jobs_left: i64,
    /// Events set aside: they failed while the broker took their neighbours.
    pub events_set_aside: i64,
    /// Job entries set aside the same way.
    pub jobs_set_aside: i64,
}

/// Runs until `shutdown`, one round every `interval`; `report` sees every
/// round that completed (the runner turns it into its backlog gauges).
pub async fn run(
    pool: Pool,
    publisher: Arc<Publisher>,
    interval: Duration,
    publish_timeout: Duration,
    shutdown: CancellationToken,
    report: impl Fn(&Round) + Send,
) {
    let job_min_age = publish_timeout.saturating_add(JOB_MIN_AGE_SLACK);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        match round(&pool, &publisher, job_min_age).await {
            Ok(done) => {
                if done.events_sent + done.jobs_sent > 0 {
                    tracing::info!(
                        events = done.events_sent,
                        jobs = done.jobs_sent,
                        "relayed unpublished events and jobs"
                    );
                }
                report(&done);
            }
            Err(e) => tracing::warn!(error = %e, "outbox relay round failed"),
        }
    }
}

/// One round: publishes the oldest unpublished events and jobs.
pub async fn round(
    pool: &Pool,
    publisher: &Publisher,
    job_min_age: Duration,
) -> Result<Round, RelayError> {
    let mut client = pool.get().await?;
    let mut done = Round::default();

    let tx = client.transaction().await?;
    let mut blame = Blame::new();
    for event in outbox::take_unpublished(&*tx, EVENT_MIN_AGE, BATCH).await? {
        // Marked published in this transaction, whose commit ends the round.
        if publisher.publish_stored(&*tx, &event).await {
            blame.sent();
        } else if !blame.failed((event.user, event.seq)) {
            break;
        }
    }
    done.events_sent = blame.sent;
    for (user, seq) in &blame.blamed {
        tracing::warn!(%user, seq, "an event the broker refused while it took others; counting it");
        outbox::count_event_failure(&*tx, user, *seq).await?;
    }
    tx.commit().await?;

    let tx = client.transaction().await?;
    let mut blame = Blame::new();
    for job in outbox::take_pending_jobs(&*tx, job_min_age, BATCH).await? {
        if !job.still_queued {
            // A runner has its message already; the entry is only stale.
            outbox::mark_job_published(&*tx, job.job_id).await?;
            continue;
        }
        match publisher.publish_job(&*tx, job.job_id, &job.body).await {
            Ok(()) => blame.sent(),
            Err(e) => {
                tracing::warn!(job_id = %job.job_id, error = %e, "relaying a job failed; a later round retries");
                if !blame.failed(job.job_id) {
                    break;
                }
            }
        }
    }
    done.jobs_sent = blame.sent;
    for job_id in &blame.blamed {
        outbox::count_job_failure(&*tx, *job_id).await?;
    }
    tx.commit().await?;

    let backlog = outbox::backlog(&**client).await?;
    done.events_left = backlog.events;
    done.jobs_left = backlog.jobs;
    done.events_set_aside = backlog.events_set_aside;
    done.jobs_set_aside = backlog.jobs_set_aside;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_followed_by_a_success_is_blamed() {
        let mut blame = Blame::new();
        blame.sent();
        assert!(blame.failed("bad"));
        blame.sent();
        blame.sent();
        assert_eq!((blame.sent, blame.blamed), (3, vec!["bad"]));
    }

    #[test]
    fn failures_after_the_last_success_are_not_blamed_and_stop_the_round() {
        let mut blame = Blame::new();
        blame.sent();
        assert!(blame.failed(1));
        assert!(blame.failed(2));
        assert!(!blame.failed(3), "three in a row: the broker is away");
        assert!(blame.blamed.is_empty());
    }

    #[test]
    fn a_round_where_nothing_got_through_blames_nothing() {
        let mut blame = Blame::<u8>::new();
        assert!(blame.failed(1));
        assert_eq!(blame.sent, 0);
        assert!(blame.blamed.is_empty());
    }
}

//! The outbox relay: publishes what was committed but never published (the
//! process died between commit and publish, or the broker was away).
//!
//! Jobs: entries are locked with `SKIP LOCKED`, so several runners share
//! the backlog and none publishes a job another is publishing. An entry is
//! only taken once it is older than the submitting process's own publish
//! could take, so a submission still waiting for its confirm is left alone.
//!
//! Events: several runners may relay the same event at once; sessions drop
//! the duplicate by seq.

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
    /// Unpublished events left after the round.
    pub events_left: i64,
    /// Job outbox entries left after the round.
    pub jobs_left: i64,
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
    let pending = outbox::unpublished(&**client, EVENT_MIN_AGE, BATCH).await?;
    for event in &pending {
        if publisher.publish_stored(&**client, event).await {
            done.events_sent += 1;
        } else {
            break;
        }
    }
    let tx = client.transaction().await?;
    for job in outbox::take_pending_jobs(&*tx, job_min_age, BATCH).await? {
        if !job.still_queued {
            // A runner has its message already; the entry is only stale.
            outbox::mark_job_published(&*tx, job.job_id).await?;
            continue;
        }
        match publisher.publish_job(&*tx, job.job_id, &job.body).await {
            Ok(()) => done.jobs_sent += 1,
            Err(e) => {
                tracing::warn!(job_id = %job.job_id, error = %e, "relaying a job failed; next round retries");
                break;
            }
        }
    }
    tx.commit().await?;
    (done.events_left, done.jobs_left) = outbox::backlog(&**client).await?;
    Ok(done)
}

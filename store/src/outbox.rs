//! The outbox: what was committed but has not reached the broker yet.
//! Events are appended with `published = false` and marked once the broker
//! confirmed them; the relay publishes whatever a crash or an outage left.

use std::time::Duration;

use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;

use crate::events::StoredEvent;

/// Records that an event reached the broker, taking it out of the outbox.
pub async fn mark_published<C: GenericClient>(
    client: &C,
    user: &str,
    seq: u64,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute_typed(
            "UPDATE events SET published = true WHERE user_id = $1 AND seq = $2",
            &[(&user, Type::TEXT), (&(seq as i64), Type::INT8)],
        )
        .await?;
    Ok(())
}

/// Committed events not yet published and older than `min_age` (younger
/// ones are most likely being published by the runner that wrote them).
pub async fn unpublished<C: GenericClient>(
    client: &C,
    min_age: Duration,
    limit: i64,
) -> Result<Vec<StoredEvent>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT user_id, seq, job_id, frame FROM events
             WHERE NOT published AND created_at < now() - make_interval(secs => $1)
             ORDER BY created_at, user_id, seq LIMIT $2",
            &[&min_age.as_secs_f64(), &limit],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| StoredEvent {
            user: r.get(0),
            seq: r.get::<_, i64>(1) as u64,
            job_id: r.get(2),
            frame: r.get(3),
        })
        .collect())
}

/// A job whose outbox entry is still there.
#[derive(Debug, Clone)]
pub struct PendingJob {
    /// The job.
    pub job_id: uuid::Uuid,
    /// The encoded envelope to publish.
    pub body: Vec<u8>,
    /// Whether the job is still waiting to be claimed. When it is not, a
    /// runner already has its message, and the entry only needs deleting.
    pub still_queued: bool,
}

/// Takes the job outbox's entries older than `min_age`, oldest first, at
/// most `limit`, locking them until the caller's commit. Entries another
/// relay has locked are skipped, so several runners share the backlog
/// instead of publishing the same jobs twice.
pub async fn take_pending_jobs<C: GenericClient>(
    tx: &C,
    min_age: Duration,
    limit: i64,
) -> Result<Vec<PendingJob>, tokio_postgres::Error> {
    let rows = tx
        .query_typed(
            "SELECT o.job_id, o.body, j.status = 'queued' AND j.attempts = 0
             FROM job_outbox o JOIN jobs j ON j.id = o.job_id
             WHERE o.created_at < now() - make_interval(secs => $1)
             ORDER BY o.created_at LIMIT $2
             FOR UPDATE OF o SKIP LOCKED",
            &[(&min_age.as_secs_f64(), Type::FLOAT8), (&limit, Type::INT8)],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| PendingJob {
            job_id: r.get(0),
            body: r.get(1),
            still_queued: r.get(2),
        })
        .collect())
}

/// Records that a job's message reached the broker, taking it out of the
/// job outbox.
pub async fn mark_job_published<C: GenericClient>(
    client: &C,
    job_id: uuid::Uuid,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute_typed(
            "DELETE FROM job_outbox WHERE job_id = $1",
            &[(&job_id, Type::UUID)],
        )
        .await?;
    Ok(())
}

/// How much the outbox holds: (unpublished events, unpublished jobs).
pub async fn backlog<C: GenericClient>(client: &C) -> Result<(i64, i64), tokio_postgres::Error> {
    let row = client
        .query_typed_one(
            "SELECT (SELECT count(*) FROM events WHERE NOT published),
                    (SELECT count(*) FROM job_outbox)",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

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

/// Rounds in which a row failed while the broker took others, after which
/// the relay sets it aside (leaves it for operators, counted in the
/// backlog's `set_aside`). The event stays in the log for resume.
pub const SET_ASIDE_AFTER: i16 = 5;

/// Takes committed events not yet published and older than `min_age`
/// (younger ones are most likely being published by the runner that wrote
/// them), oldest first, at most `limit`, locking them until the caller's
/// commit. Events another relay has locked, and events set aside, are
/// skipped, so several runners share the backlog.
pub async fn take_unpublished<C: GenericClient>(
    tx: &C,
    min_age: Duration,
    limit: i64,
) -> Result<Vec<StoredEvent>, tokio_postgres::Error> {
    let rows = tx
        .query_typed(
            "SELECT user_id, seq, job_id, frame FROM events
             WHERE NOT published AND created_at < now() - make_interval(secs => $1)
               AND relay_failures < $3
             ORDER BY created_at, user_id, seq LIMIT $2
             FOR UPDATE SKIP LOCKED",
            &[
                (&min_age.as_secs_f64(), Type::FLOAT8),
                (&limit, Type::INT8),
                (&SET_ASIDE_AFTER, Type::INT2),
            ],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| StoredEvent {
            user: r.get(0),
            // Written by Sluice from a u64 counter; never negative.
            seq: u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
            job_id: r.get(2),
            frame: r.get(3),
        })
        .collect())
}

/// Takes committed messages (backends' publications) not yet published,
/// whatever their age: nothing else publishes them, so the message relay
/// sends them as soon as it is woken. Oldest first, at most `limit`,
/// locked until the caller's commit, skipping those another relay holds.
pub async fn take_unpublished_messages<C: GenericClient>(
    tx: &C,
    limit: i64,
) -> Result<Vec<StoredEvent>, tokio_postgres::Error> {
    let rows = tx
        .query_typed(
            "SELECT user_id, seq, frame FROM events
             WHERE NOT published AND message_id IS NOT NULL AND relay_failures < $2
             ORDER BY created_at, user_id, seq LIMIT $1
             FOR UPDATE SKIP LOCKED",
            &[(&limit, Type::INT8), (&SET_ASIDE_AFTER, Type::INT2)],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| StoredEvent {
            user: r.get(0),
            seq: u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
            job_id: None,
            frame: r.get(2),
        })
        .collect())
}

/// [`mark_published`] for many events in one statement.
pub async fn mark_all_published<C: GenericClient>(
    client: &C,
    events: &[&StoredEvent],
) -> Result<(), tokio_postgres::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let users: Vec<&str> = events.iter().map(|e| e.user.as_str()).collect();
    let seqs: Vec<i64> = events
        .iter()
        .map(|e| i64::try_from(e.seq).unwrap_or(i64::MAX))
        .collect();
    client
        .execute_typed(
            "UPDATE events SET published = true
             FROM unnest($1::text[], $2::int8[]) AS p(user_id, seq)
             WHERE events.user_id = p.user_id AND events.seq = p.seq",
            &[(&users, Type::TEXT_ARRAY), (&seqs, Type::INT8_ARRAY)],
        )
        .await?;
    Ok(())
}

/// Counts a failed relay of an event whose neighbours got through.
pub async fn count_event_failure<C: GenericClient>(
    client: &C,
    user: &str,
    seq: u64,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute_typed(
            "UPDATE events SET relay_failures = relay_failures + 1
             WHERE user_id = $1 AND seq = $2",
            &[
                (&user, Type::TEXT),
                (&i64::try_from(seq).unwrap_or(i64::MAX), Type::INT8),
            ],
        )
        .await?;
    Ok(())
}

/// Counts a failed relay of a job entry whose neighbours got through.
pub async fn count_job_failure<C: GenericClient>(
    client: &C,
    job_id: uuid::Uuid,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute_typed(
            "UPDATE job_outbox SET relay_failures = relay_failures + 1 WHERE job_id = $1",
            &[(&job_id, Type::UUID)],
        )
        .await?;
    Ok(())
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
               AND o.relay_failures < $3
             ORDER BY o.created_at LIMIT $2
             FOR UPDATE OF o SKIP LOCKED",
            &[
                (&min_age.as_secs_f64(), Type::FLOAT8),
                (&limit, Type::INT8),
                (&SET_ASIDE_AFTER, Type::INT2),
            ],
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

/// How much the outbox holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Unpublished events the relay still tries.
    pub events: i64,
    /// Job entries the relay still tries.
    pub jobs: i64,
    /// Events set aside after [`SET_ASIDE_AFTER`] failed rounds.
    pub events_set_aside: i64,
    /// Job entries set aside after [`SET_ASIDE_AFTER`] failed rounds.
    pub jobs_set_aside: i64,
}

/// The outbox's size, in one round trip.
pub async fn backlog<C: GenericClient>(client: &C) -> Result<Backlog, tokio_postgres::Error> {
    let row = client
        .query_typed_one(
            "SELECT count(*) FILTER (WHERE relay_failures < $1),
                    count(*) FILTER (WHERE relay_failures >= $1),
                    (SELECT count(*) FILTER (WHERE relay_failures < $1) FROM job_outbox),
                    (SELECT count(*) FILTER (WHERE relay_failures >= $1) FROM job_outbox)
             FROM events WHERE NOT published",
            &[(&SET_ASIDE_AFTER, Type::INT2)],
        )
        .await?;
    Ok(Backlog {
        events: row.get(0),
        events_set_aside: row.get(1),
        jobs: row.get(2),
        jobs_set_aside: row.get(3),
    })
}

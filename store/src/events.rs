//! The event log: per-user sequence numbers and stored event frames (for
//! resume). Unpublished events form the outbox (`outbox.rs`); old ones are
//! pruned by `retention.rs`.
//!
//! An event is appended inside the same transaction as the data change and
//! job status it reports. The `user_seq` row lock taken by [`append`] makes a
//! user's events commit in `seq` order, which is what lets a resuming client
//! ask for "everything after N" without gaps.

use sluice_proto::{EventFrame, EventStatus, JobError, ServerFrame};
use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;
use uuid::Uuid;

/// One stored event, with the exact text clients receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The user whose log holds it (the routing key of its message).
    pub user: String,
    /// Its place in the user's log.
    pub seq: u64,
    /// The job it reports on; `None` for a backend's message.
    pub job_id: Option<Uuid>,
    /// The encoded `event` (or `message`) frame.
    pub frame: String,
}

/// What an event reports; `seq` is assigned by [`append`].
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The job it reports on.
    pub job_id: Uuid,
    /// What happened.
    pub status: EventStatus,
    /// The result of a `done` job.
    pub result: Option<serde_json::Value>,
    /// The error of a `failed` job.
    pub error: Option<JobError>,
}

/// Appends an event for `user` inside the caller's transaction and returns
/// it with its seq. Blocks other appends for this user until commit.
pub async fn append<C: GenericClient>(
    tx: &C,
    user: &str,
    event: NewEvent,
) -> Result<StoredEvent, tokio_postgres::Error> {
    // Typed statements: one round trip each instead of prepare + execute.
    let row = tx
        .query_typed_one(
            "INSERT INTO user_seq (user_id, last_seq) VALUES ($1, 1)
             ON CONFLICT (user_id) DO UPDATE SET last_seq = user_seq.last_seq + 1
             RETURNING last_seq",
            &[(&user, Type::TEXT)],
        )
        .await?;
    let seq: i64 = row.get(0);
    let frame = ServerFrame::Event(EventFrame {
        seq: seq as u64,
        job_id: event.job_id,
        status: event.status,
        progress: None,
        result: event.result,
        error: event.error,
    })
    .encode();
    tx.execute_typed(
        "INSERT INTO events (user_id, seq, job_id, status, frame) VALUES ($1, $2, $3, $4, $5)",
        &[
            (&user, Type::TEXT),
            (&seq, Type::INT8),
            (&event.job_id, Type::UUID),
            (&event.status.as_str(), Type::TEXT),
            (&frame, Type::TEXT),
        ],
    )
    .await?;
    Ok(StoredEvent {
        user: user.to_owned(),
        seq: seq as u64,
        job_id: Some(event.job_id),
        frame,
    })
}

/// The user's newest stored seq (0 when the user has none).
pub async fn last_seq<C: GenericClient>(
    client: &C,
    user: &str,
) -> Result<u64, tokio_postgres::Error> {
    let row = client
        .query_opt("SELECT last_seq FROM user_seq WHERE user_id = $1", &[&user])
        .await?;
    Ok(row.map(|r| r.get::<_, i64>(0) as u64).unwrap_or(0))
}

/// The user's oldest retained seq, if any event is retained.
pub async fn oldest_seq<C: GenericClient>(
    client: &C,
    user: &str,
) -> Result<Option<u64>, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT min(seq) FROM events WHERE user_id = $1", &[&user])
        .await?;
    Ok(row.get::<_, Option<i64>>(0).map(|s| s as u64))
}

/// Stored frames with `after < seq <= upto`, oldest first, at most `limit`.
pub async fn read_range<C: GenericClient>(
    client: &C,
    user: &str,
    after: u64,
    upto: u64,
    limit: i64,
) -> Result<Vec<(u64, String)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT seq, frame FROM events
             WHERE user_id = $1 AND seq > $2 AND seq <= $3
             ORDER BY seq LIMIT $4",
            &[&user, &(after as i64), &(upto as i64), &limit],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1)))
        .collect())
}

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

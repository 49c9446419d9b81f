//! Retention: how far back a client can resume, and how long an ended
//! job stays readable.
//!
//! An event's `created_at` is its transaction's start, so a long
//! transaction can commit an old-looking event above younger ones. Pruning
//! by age alone would then delete it and keep the seqs below it: a hole
//! that a resuming client could not detect. So pruning removes, per user,
//! the whole prefix of the log up to the newest seq past the retention:
//! what remains is always one unbroken range ending at the newest seq, and
//! "the oldest retained seq" tells a resume exactly what is gone.

use std::time::Duration;

use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;

/// Deletes, for every user, each event at or below the newest seq that is
/// older than `retention`; returns how many.
pub async fn prune<C: GenericClient>(
    client: &C,
    retention: Duration,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute_typed(
            "DELETE FROM events e
             USING (SELECT user_id, max(seq) AS upto FROM events
                    WHERE created_at < now() - make_interval(secs => $1)
                    GROUP BY user_id) old
             WHERE e.user_id = old.user_id AND e.seq <= old.upto",
            &[(&retention.as_secs_f64(), Type::FLOAT8)],
        )
        .await
}

/// Ended jobs deleted per statement by [`prune_jobs`], so that no one
/// statement holds many row locks or runs long.
pub const JOB_PRUNE_BATCH: i64 = 5_000;

/// Deletes jobs that ended (`done`, `failed`, `cancelled`) longer than
/// `retention` ago, in batches of [`JOB_PRUNE_BATCH`]; returns how many.
/// Their events stay until the event retention takes them.
pub async fn prune_jobs<C: GenericClient>(
    client: &C,
    retention: Duration,
) -> Result<u64, tokio_postgres::Error> {
    let mut pruned = 0;
    loop {
        // Served by the partial index jobs_ended.
        let deleted = client
            .execute_typed(
                "DELETE FROM jobs WHERE id IN (
                     SELECT id FROM jobs
                     WHERE status IN ('done', 'failed', 'cancelled')
                       AND updated_at < now() - make_interval(secs => $1)
                     LIMIT $2)",
                &[
                    (&retention.as_secs_f64(), Type::FLOAT8),
                    (&JOB_PRUNE_BATCH, Type::INT8),
                ],
            )
            .await?;
        pruned += deleted;
        if deleted < JOB_PRUNE_BATCH as u64 {
            return Ok(pruned);
        }
    }
}

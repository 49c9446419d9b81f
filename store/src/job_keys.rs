//! Idempotency keys of `POST /v1/jobs`: a key is claimed in the same
//! transaction that records its job, so a repeat (even a concurrent one,
//! which waits on the claim) finds the first job instead of making another.

use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;

use crate::status::JobStatus;

/// A request's key and the body it came with.
#[derive(Debug, Clone, Copy)]
pub struct JobKey<'a> {
    /// The `Idempotency-Key` header (checked by [`crate::publish::valid_key`]).
    pub key: &'a str,
    /// The request body; repeats must have the same bytes.
    pub body: &'a [u8],
}

/// What an earlier request with the same key made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Earlier {
    /// The same body: this job, now in this status.
    Same {
        /// The first request's job.
        job_id: uuid::Uuid,
        /// Its status now.
        status: JobStatus,
    },
    /// Another body under the same key.
    Different,
}

/// Claims `key` for `job_id` inside the caller's transaction: `true` if it
/// was free (or its 24 hours had passed). `false` means a live earlier
/// request holds it; [`earlier`] says what it made.
pub async fn claim<C: GenericClient>(
    tx: &C,
    user: &str,
    key: JobKey<'_>,
    job_id: uuid::Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let claimed = tx
        .execute_typed(
            "INSERT INTO job_keys (user_id, idempotency_key, job_id, body_hash)
             VALUES ($1, $2, $3, sha256($4))
             ON CONFLICT (user_id, idempotency_key) DO UPDATE
                 SET job_id = EXCLUDED.job_id, body_hash = EXCLUDED.body_hash, created_at = now()
                 WHERE job_keys.created_at <= now() - interval '24 hours'",
            &[
                (&user, Type::TEXT),
                (&key.key, Type::TEXT),
                (&job_id, Type::UUID),
                (&key.body, Type::BYTEA),
            ],
        )
        .await?;
    Ok(claimed == 1)
}

/// What the live earlier request with `key` made, if one did.
pub async fn earlier<C: GenericClient>(
    client: &C,
    user: &str,
    key: JobKey<'_>,
) -> Result<Option<Earlier>, tokio_postgres::Error> {
    let row = client
        .query_typed_opt(
            "SELECT k.job_id, k.body_hash = sha256($3), j.status
             FROM job_keys k JOIN jobs j ON j.id = k.job_id
             WHERE k.user_id = $1 AND k.idempotency_key = $2
               AND k.created_at > now() - interval '24 hours'",
            &[
                (&user, Type::TEXT),
                (&key.key, Type::TEXT),
                (&key.body, Type::BYTEA),
            ],
        )
        .await?;
    Ok(row.map(|row| {
        if row.get::<_, bool>(1) {
            Earlier::Same {
                job_id: row.get(0),
                status: JobStatus::parse(row.get(2)).unwrap_or(JobStatus::Queued),
            }
        } else {
            Earlier::Different
        }
    }))
}

/// Deletes keys past their 24 hours; returns how many.
pub async fn prune<C: GenericClient>(client: &C) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM job_keys WHERE created_at < now() - interval '24 hours'",
            &[],
        )
        .await
}

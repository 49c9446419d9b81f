//! The job repository: every read of a job row and every change of its
//! status, each change inside the caller's transaction together with the
//! event that reports it. The gateway creates, reads, lists, cancels and
//! hides jobs; the runner claims and finishes them. This is the one place a
//! status changes.

use crate::events::{self, NewEvent, StoredEvent};
use crate::status::JobStatus;
use sluice_proto::{ErrorCode, EventStatus, JobError, OwnedJobEnvelope};
use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;

/// What claiming a delivered job found.
#[derive(Debug)]
pub enum Claim {
    /// Run it. `running` is the event to publish after commit, absent when
    /// the job was already running (a redelivery after a crash).
    Run {
        /// This attempt's number, counting from 1.
        attempt: i32,
        /// The `running` event appended by this claim.
        running: Option<StoredEvent>,
    },
    /// Already ended (done, failed or cancelled): acknowledge and skip.
    Finished,
    /// Another attempt holds the job's lease: it is executing right now, in
    /// this runner or another. Run nothing and count no attempt; look again
    /// later, when the holder has ended it or died.
    Busy,
    /// No queued job of that id and user: its submission was refused and
    /// withdrawn (the broker took the message after all), or it was put
    /// back to `created`. Acknowledge and skip; it must never run.
    NotQueued,
    /// Delivered more often than `max_attempts`: fail it and dead-letter it.
    Exhausted {
        /// Deliveries it had.
        attempts: i32,
        /// The last transient error recorded for it.
        last_error: Option<String>,
    },
    /// Cancellation was requested while it was running (the runner that had
    /// it died): record it as cancelled.
    CancelRequested,
}

/// A job row locked by [`lock_and_lease`].
struct Locked {
    status: JobStatus,
    attempts: i32,
    cancel_requested: bool,
    last_error: Option<String>,
    /// Whether this connection now holds the job's lease.
    leased: bool,
}

/// Locks the user's job row until commit and, if the job is still queued
/// or running, tries to take its lease on this connection (see
/// [`crate::lease`]); `None` when there is no such job. The one place a
/// lease is taken.
async fn lock_and_lease<C: GenericClient>(
    tx: &C,
    job_id: uuid::Uuid,
    user: &str,
) -> Result<Option<Locked>, tokio_postgres::Error> {
    // Typed: one round trip (no separate prepare), which matters when the
    // database's CPUs are busy with the batches themselves. The row is
    // locked in a materialized CTE so the lock function runs exactly once,
    // after the row lock: a session lock taken twice would need two
    // unlocks. CASE, unlike AND, fixes the order of evaluation.
    let row = tx
        .query_typed_opt(
            "WITH job AS MATERIALIZED (
                 SELECT status, attempts, cancel_requested, last_error FROM jobs
                 WHERE id = $1 AND user_id = $2 FOR UPDATE
             )
             SELECT status, attempts, cancel_requested, last_error,
                    CASE WHEN status IN ('queued', 'running')
                         THEN pg_try_advisory_lock($3, $4) ELSE false END
             FROM job",
            &[
                (&job_id, Type::UUID),
                (&user, Type::TEXT),
                (&crate::lease::LEASE_CLASS, Type::INT4),
                (&crate::lease::lease_key(job_id), Type::INT4),
            ],
        )
        .await?;
    Ok(row.map(|row| Locked {
        status: status_of(&row, 0),
        attempts: row.get(1),
        cancel_requested: row.get(2),
        last_error: row.get(3),
        leased: row.get(4),
    }))
}

impl Claim {
    /// Whether this claim left the job's lease held by its connection.
    pub fn holds_lease(&self) -> bool {
        matches!(
            self,
            Claim::Run { .. } | Claim::Exhausted { .. } | Claim::CancelRequested
        )
    }
}

/// Takes the job's lease (see [`crate::lease`]) on this connection, marks
/// a delivered job running and counts the attempt. Locks the job row until
/// commit. A message whose job row is missing or not queued (a submission
/// that was refused and withdrawn, or a job put back to `created`) is not
/// run: every runnable job is recorded before its message is published.
///
/// The lease is taken only for a job still queued or running, and it stays
/// held after this transaction ends, whatever its end: the caller releases
/// it (through [`crate::lease::Leased`]) once the attempt's outcome is
/// committed. Every claim but [`Claim::Busy`], [`Claim::Finished`] and
/// [`Claim::NotQueued`] holds it.
pub async fn claim<C: GenericClient>(
    tx: &C,
    job: &OwnedJobEnvelope,
    max_attempts: u32,
) -> Result<Claim, tokio_postgres::Error> {
    let Some(row) = lock_and_lease(tx, job.job_id, &job.user).await? else {
        return Ok(Claim::NotQueued);
    };
    let Locked {
        status,
        attempts,
        cancel_requested,
        last_error,
        leased,
    } = row;
    let attempts = attempts.saturating_add(1);
    if status.is_terminal() {
        return Ok(Claim::Finished);
    }
    if status == JobStatus::Created {
        return Ok(Claim::NotQueued);
    }
    if !leased {
        return Ok(Claim::Busy);
    }
    if cancel_requested {
        return Ok(Claim::CancelRequested);
    }
    tx.execute_typed(
        "UPDATE jobs SET status = 'running', attempts = $2, updated_at = now() WHERE id = $1",
        &[(&job.job_id, Type::UUID), (&attempts, Type::INT4)],
    )
    .await?;
    if attempts as u32 > max_attempts {
        return Ok(Claim::Exhausted {
            attempts: attempts - 1,
            last_error,
        });
    }
    let running = if status == JobStatus::Running {
        None
    } else {
        Some(
            events::append(
                tx,
                &job.user,
                NewEvent {
                    job_id: job.job_id,
                    status: EventStatus::Running,
                    result: None,
                    error: None,
                },
            )
            .await?,
        )
    };
    Ok(Claim::Run {
        attempt: attempts,
        running,
    })
}

/// What [`abandon`] found.
#[derive(Debug)]
pub enum Abandon {
    /// No such job of that user: nothing to do.
    NotFound,
    /// The job had ended already: nothing to do.
    Ended,
    /// Another attempt holds the job's lease: it is alive and will record
    /// the outcome itself.
    Busy,
    /// The lease was taken and the job failed (or `cancelled`, if a cancel
    /// was requested): publish the event after commit, then release the
    /// lease. `None` only if the outcome was refused after all.
    Recorded(Option<StoredEvent>),
}

/// Fails a job the broker gave up on (dead-lettered at its delivery limit)
/// unless an attempt holds it, so no job stays `queued` or `running`
/// forever. Takes the job's lease on this connection as [`claim`] does; the
/// caller releases it (through [`crate::lease::Leased`]) after commit.
pub async fn abandon<C: GenericClient>(
    tx: &C,
    job_id: uuid::Uuid,
    user: &str,
    error: JobError,
) -> Result<Abandon, tokio_postgres::Error> {
    let Some(Locked { status, leased, .. }) = lock_and_lease(tx, job_id, user).await? else {
        return Ok(Abandon::NotFound);
    };
    if status.is_terminal() || status == JobStatus::Created {
        return Ok(Abandon::Ended);
    }
    if !leased {
        return Ok(Abandon::Busy);
    }
    Ok(Abandon::Recorded(
        finish_or_cancel(tx, job_id, user, Outcome::Failed(error))
            .await?
            .map(|(_, event)| event),
    ))
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It worked; the handler's result.
    Done(serde_json::Value),
    /// It failed for good.
    Failed(JobError),
    /// It was cancelled before it ended.
    Cancelled,
}

/// What recording a job's end did.
#[derive(Debug)]
pub enum Finish {
    /// The outcome is recorded and its terminal event appended: publish it
    /// after commit.
    Recorded(StoredEvent),
    /// The job had already ended (or is gone): nothing was written. A job
    /// has exactly one terminal event, and this is how a second outcome is
    /// refused.
    AlreadyEnded,
    /// A cancel was requested and the outcome was not `cancelled`: nothing
    /// was written. Roll back any work done for the outcome and record
    /// [`Outcome::Cancelled`] instead.
    CancelRequested,
}

/// Records the job's end and appends its terminal event, unless it has
/// ended already or a cancel was requested (see [`Finish`]).
pub async fn finish<C: GenericClient>(
    tx: &C,
    job: &OwnedJobEnvelope,
    outcome: Outcome,
) -> Result<Finish, tokio_postgres::Error> {
    finish_job(tx, job.job_id, &job.user, outcome).await
}

/// [`finish`] by id and user, for callers without the envelope.
pub async fn finish_job<C: GenericClient>(
    tx: &C,
    job_id: uuid::Uuid,
    user: &str,
    outcome: Outcome,
) -> Result<Finish, tokio_postgres::Error> {
    let (status, result, error) = match outcome {
        Outcome::Done(result) => (EventStatus::Done, Some(result), None),
        // The one writer of job errors bounds them: a message can quote a
        // client's input, and it is stored twice and sent to every session.
        Outcome::Failed(error) => (
            EventStatus::Failed,
            None,
            Some(JobError {
                code: error.code,
                message: sluice_proto::bounded_message(error.message),
            }),
        ),
        Outcome::Cancelled => (EventStatus::Cancelled, None, None),
    };
    let error_json = error
        .as_ref()
        .map(|e| serde_json::to_value(e).unwrap_or_default());
    // The row lock this UPDATE takes orders it against a concurrent cancel
    // request: whichever commits first decides.
    let changed = tx
        .execute_typed(
            "UPDATE jobs SET status = $2, result = $3, error = $4, updated_at = now()
             WHERE id = $1 AND status NOT IN ('done', 'failed', 'cancelled')
               AND ($2 = 'cancelled' OR NOT cancel_requested)",
            &[
                (&job_id, Type::UUID),
                (&status.as_str(), Type::TEXT),
                (&result, Type::JSONB),
                (&error_json, Type::JSONB),
            ],
        )
        .await?;
    if changed == 0 {
        // The rare path: say why nothing changed.
        let row = tx
            .query_typed_opt(
                "SELECT status FROM jobs WHERE id = $1",
                &[(&job_id, Type::UUID)],
            )
            .await?;
        return Ok(match row {
            Some(row) if !status_of(&row, 0).is_terminal() => Finish::CancelRequested,
            _ => Finish::AlreadyEnded,
        });
    }
    let event = events::append(
        tx,
        user,
        NewEvent {
            job_id,
            status,
            result,
            error,
        },
    )
    .await?;
    Ok(Finish::Recorded(event))
}

/// Records `outcome`, or `cancelled` when a cancel was requested (nothing
/// was written for the refused outcome, so the same transaction records
/// the cancel). Returns what was recorded with its event; `None` if the job
/// had already ended and nothing was written. For outcomes recorded apart
/// from the work (which must be rolled back first when it is `done`).
pub async fn finish_or_cancel<C: GenericClient>(
    tx: &C,
    job_id: uuid::Uuid,
    user: &str,
    outcome: Outcome,
) -> Result<Option<(Outcome, StoredEvent)>, tokio_postgres::Error> {
    let (outcome, finished) = match finish_job(tx, job_id, user, outcome.clone()).await? {
        Finish::CancelRequested => (
            Outcome::Cancelled,
            finish_job(tx, job_id, user, Outcome::Cancelled).await?,
        ),
        finished => (outcome, finished),
    };
    Ok(match finished {
        Finish::Recorded(event) => Some((outcome, event)),
        Finish::AlreadyEnded | Finish::CancelRequested => None,
    })
}

/// Which of `job_ids` have a cancel request recorded and have not ended:
/// the runner asks this of the jobs it holds, so a cancel whose wake-up
/// message was lost still stops its job within one poll.
pub async fn cancels_requested<C: GenericClient>(
    client: &C,
    job_ids: &[uuid::Uuid],
) -> Result<Vec<uuid::Uuid>, tokio_postgres::Error> {
    let rows = client
        .query_typed(
            "SELECT id FROM jobs WHERE id = ANY($1) AND cancel_requested
               AND status NOT IN ('done', 'failed', 'cancelled')",
            &[(&job_ids, Type::UUID_ARRAY)],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// The failure recorded for a job that used up its attempts.
pub fn exhausted_error(attempts: i32, last: Option<&str>) -> JobError {
    JobError {
        code: ErrorCode::Internal,
        message: match last {
            Some(last) => format!("gave up after {attempts} attempts: {last}"),
            None => format!("gave up after {attempts} attempts"),
        },
    }
}

/// A job row as its owner may read it.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// The job id (UUIDv7).
    pub id: uuid::Uuid,
    /// Its kind, as submitted.
    pub kind: String,
    /// Where it is in its life.
    pub status: JobStatus,
    /// Last reported progress, if any.
    pub progress: Option<serde_json::Value>,
    /// The result of a `done` job.
    pub result: Option<serde_json::Value>,
    /// The error of a `failed` job.
    pub error: Option<serde_json::Value>,
    /// When it was recorded.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When its row last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

const VIEW_COLUMNS: &str = "id, kind, status, progress, result, error, created_at, updated_at";

impl JobRecord {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            id: row.get(0),
            kind: row.get(1),
            status: status_of(row, 2),
            progress: row.get(3),
            result: row.get(4),
            error: row.get(5),
            created_at: row.get(6),
            updated_at: row.get(7),
        }
    }
}

/// The status in column `idx`. The column's CHECK constraint allows only
/// the spellings of [`JobStatus`], so the fallback is never taken.
fn status_of(row: &tokio_postgres::Row, idx: usize) -> JobStatus {
    JobStatus::parse(row.get::<_, &str>(idx)).unwrap_or(JobStatus::Failed)
}

/// What the user may have stored at once, checked by the statement that
/// records a job, so that one user cannot fill every runner slot or the
/// database. Under concurrent submissions of one user the counts can be
/// passed by the submissions under way (bounded by the submission rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserQuota {
    /// Jobs `queued` or `running` at once.
    pub max_active: i64,
    /// Bytes of args kept by `created` jobs (as stored, `pg_column_size`).
    pub max_created_bytes: i64,
}

/// Whether a job was recorded, or which quota refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Recorded.
    Recorded,
    /// The user has [`UserQuota::max_active`] jobs queued or running.
    TooManyActive,
    /// The user's `created` jobs keep [`UserQuota::max_created_bytes`].
    TooMuchStored,
}

/// Records a submitted job as `queued` with its outbox entry (the message
/// `body`), in one statement, unless the user already has
/// `quota.max_active` jobs queued or running.
pub async fn record_queued<C: GenericClient>(
    client: &C,
    job_id: uuid::Uuid,
    user: &str,
    kind: &sluice_proto::KindName,
    body: &[u8],
    quota: UserQuota,
) -> Result<Admission, tokio_postgres::Error> {
    // Typed: one round trip on every submit, no separate prepare. The count
    // is served by the partial index jobs_user_active.
    let recorded = client
        .execute_typed(
            "WITH job AS (
                 INSERT INTO jobs (id, user_id, kind, status)
                 SELECT $1, $2, $3, 'queued'
                 WHERE (SELECT count(*) FROM jobs
                        WHERE user_id = $2 AND status IN ('queued', 'running')) < $5
                 RETURNING id
             )
             INSERT INTO job_outbox (job_id, body) SELECT id, $4 FROM job",
            &[
                (&job_id, Type::UUID),
                (&user, Type::TEXT),
                (&kind.as_str(), Type::TEXT),
                (&body, Type::BYTEA),
                (&quota.max_active, Type::INT8),
            ],
        )
        .await?;
    Ok(if recorded == 1 {
        Admission::Recorded
    } else {
        Admission::TooManyActive
    })
}

/// Records a job to be run later (`created`), keeping its args, unless the
/// user's `created` jobs would then keep more than
/// `quota.max_created_bytes` of args.
pub async fn record_created<C: GenericClient>(
    client: &C,
    job_id: uuid::Uuid,
    user: &str,
    kind: &sluice_proto::KindName,
    args: &str,
    quota: UserQuota,
) -> Result<Admission, tokio_postgres::Error> {
    // Served by the partial index jobs_user_created.
    let recorded = client
        .execute_typed(
            "INSERT INTO jobs (id, user_id, kind, status, args)
             SELECT $1, $2, $3, 'created', $4::text::jsonb
             WHERE (SELECT coalesce(sum(pg_column_size(args)), 0) FROM jobs
                    WHERE user_id = $2 AND status = 'created') + octet_length($4) <= $5",
            &[
                (&job_id, Type::UUID),
                (&user, Type::TEXT),
                (&kind.as_str(), Type::TEXT),
                (&args, Type::TEXT),
                (&quota.max_created_bytes, Type::INT8),
            ],
        )
        .await?;
    Ok(if recorded == 1 {
        Admission::Recorded
    } else {
        Admission::TooMuchStored
    })
}

/// Withdraws a submission the broker did not confirm: deletes the job row
/// (and its outbox entry) if no runner has claimed it. Returns whether it
/// did; `false` means a runner already holds the job (the broker had the
/// message after all), so the submission stands.
///
/// The claim locks the row and moves it out of `queued`, so a withdrawn job
/// can never run: a late delivery finds no row.
pub async fn withdraw<C: GenericClient>(
    client: &C,
    job_id: uuid::Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let deleted = client
        .execute_typed(
            "DELETE FROM jobs WHERE id = $1 AND status = 'queued' AND attempts = 0",
            &[(&job_id, Type::UUID)],
        )
        .await?;
    Ok(deleted == 1)
}

/// The user's visible job `job_id`; another user's job is simply not found.
pub async fn get<C: GenericClient>(
    client: &C,
    user: &str,
    job_id: uuid::Uuid,
) -> Result<Option<JobRecord>, tokio_postgres::Error> {
    let sql =
        format!("SELECT {VIEW_COLUMNS} FROM jobs WHERE id = $1 AND user_id = $2 AND NOT hidden");
    Ok(client
        .query_opt(&sql, &[&job_id, &user])
        .await?
        .as_ref()
        .map(JobRecord::from_row))
}

/// The user's visible jobs, newest first, optionally of one status.
pub async fn list<C: GenericClient>(
    client: &C,
    user: &str,
    status: Option<JobStatus>,
    limit: i64,
) -> Result<Vec<JobRecord>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM jobs
         WHERE user_id = $1 AND NOT hidden AND ($2::text IS NULL OR status = $2)
         ORDER BY created_at DESC, id DESC LIMIT $3"
    );
    let status = status.map(JobStatus::as_str);
    let rows = client.query(&sql, &[&user, &status, &limit]).await?;
    Ok(rows.iter().map(JobRecord::from_row).collect())
}

/// What a cancel request found.
#[derive(Debug)]
pub enum CancelOutcome {
    /// No such job for this user (or it was deleted).
    NotFound,
    /// The job had already ended with this status; nothing changed.
    AlreadyEnded(JobStatus),
    /// The job had not ended (it had this status): the request is recorded
    /// and a runner ends it as `cancelled`.
    Requested(JobStatus),
}

/// Records a cancel of the user's job if it has not ended. Run in a
/// transaction. A hidden job counts as not found unless `hidden_too` (a
/// repeated `DELETE`, which must answer as the first did: a proxy may
/// resend it).
///
/// Only the request is written, whether the job runs or waits: its outcome
/// and event are a runner's to write (the gateway's database role may not),
/// the one holding it, or for a job no runner holds, any runner, through
/// [`cancel_unstarted`].
pub async fn request_cancel<C: GenericClient>(
    tx: &C,
    user: &str,
    job_id: uuid::Uuid,
    hidden_too: bool,
) -> Result<CancelOutcome, tokio_postgres::Error> {
    let Some(row) = tx
        .query_opt(
            "SELECT status FROM jobs WHERE id = $1 AND user_id = $2 AND (NOT hidden OR $3)
             FOR UPDATE",
            &[&job_id, &user, &hidden_too],
        )
        .await?
    else {
        return Ok(CancelOutcome::NotFound);
    };
    match status_of(&row, 0) {
        status if status.is_terminal() => Ok(CancelOutcome::AlreadyEnded(status)),
        status => {
            tx.execute(
                "UPDATE jobs SET cancel_requested = true, updated_at = now() WHERE id = $1",
                &[&job_id],
            )
            .await?;
            Ok(CancelOutcome::Requested(status))
        }
    }
}

/// Ends as `cancelled` a job whose cancel was requested before any runner
/// took it (`created`, or `queued` with its message not yet delivered).
/// Run in a transaction; `None` if the job is not such a job any more (a
/// runner took it, or it ended), else its event, to publish after commit.
pub async fn cancel_unstarted<C: GenericClient>(
    tx: &C,
    job_id: uuid::Uuid,
) -> Result<Option<StoredEvent>, tokio_postgres::Error> {
    let Some(row) = tx
        .query_typed_opt(
            "SELECT user_id FROM jobs
             WHERE id = $1 AND cancel_requested AND status IN ('created', 'queued')
             FOR UPDATE SKIP LOCKED",
            &[(&job_id, Type::UUID)],
        )
        .await?
    else {
        return Ok(None);
    };
    let user: String = row.get(0);
    Ok(
        match finish_job(tx, job_id, &user, Outcome::Cancelled).await? {
            Finish::Recorded(event) => Some(event),
            Finish::AlreadyEnded | Finish::CancelRequested => None,
        },
    )
}

/// Up to `limit` jobs whose cancel was requested before a runner took them,
/// oldest request first, for [`cancel_unstarted`]: what a runner sweeps
/// when the control message that should have ended them was lost.
pub async fn unstarted_cancels<C: GenericClient>(
    client: &C,
    limit: i64,
) -> Result<Vec<uuid::Uuid>, tokio_postgres::Error> {
    let rows = client
        .query_typed(
            "SELECT id FROM jobs WHERE cancel_requested AND status IN ('created', 'queued')
             ORDER BY updated_at LIMIT $1",
            &[(&limit, Type::INT8)],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Hides the user's job from reads and listings (`DELETE /v1/jobs/{id}`).
pub async fn hide<C: GenericClient>(
    client: &C,
    user: &str,
    job_id: uuid::Uuid,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE jobs SET hidden = true, updated_at = now() WHERE id = $1 AND user_id = $2",
            &[&job_id, &user],
        )
        .await?;
    Ok(())
}

/// What `POST /v1/jobs/{id}/run` found.
#[derive(Debug)]
pub enum RunCheck {
    /// No such job for this user.
    NotFound,
    /// Not in `created` any more; carries the current status.
    Conflict(JobStatus),
    /// Ready to publish; the row is locked until the caller's commit.
    Ready {
        /// Its kind.
        kind: sluice_proto::KindName,
        /// Its args, as submitted.
        args: String,
    },
}

/// Locks a `created` job of the user for publishing. Run in a transaction.
pub async fn check_run<C: GenericClient>(
    tx: &C,
    user: &str,
    job_id: uuid::Uuid,
) -> Result<RunCheck, tokio_postgres::Error> {
    let Some(row) = tx
        .query_opt(
            "SELECT status, kind, args::text, cancel_requested FROM jobs
             WHERE id = $1 AND user_id = $2 AND NOT hidden FOR UPDATE",
            &[&job_id, &user],
        )
        .await?
    else {
        return Ok(RunCheck::NotFound);
    };
    let status = status_of(&row, 0);
    let kind = sluice_proto::KindName::parse(row.get::<_, &str>(1)).ok();
    let args: Option<String> = row.get(2);
    if row.get::<_, bool>(3) {
        // Cancelled by the user; a runner is ending it.
        return Ok(RunCheck::Conflict(JobStatus::Cancelled));
    }
    match (status, kind, args) {
        (JobStatus::Created, Some(kind), Some(args)) => Ok(RunCheck::Ready { kind, args }),
        _ => Ok(RunCheck::Conflict(status)),
    }
}

/// Queues a `created` job (its row, locked by [`check_run`], and its
/// outbox entry), unless the user already has `quota.max_active` jobs
/// queued or running. Through the owner's function `queue_created`
/// (migration V8): the gateway's role may not change a status itself.
pub async fn queue_created<C: GenericClient>(
    tx: &C,
    job_id: uuid::Uuid,
    user: &str,
    body: &[u8],
    quota: UserQuota,
) -> Result<Admission, tokio_postgres::Error> {
    let queued: bool = tx
        .query_typed_one(
            "SELECT queue_created($1, $2, $3, $4)",
            &[
                (&job_id, Type::UUID),
                (&user, Type::TEXT),
                (&body, Type::BYTEA),
                (&quota.max_active, Type::INT8),
            ],
        )
        .await?
        .get(0);
    Ok(if queued {
        Admission::Recorded
    } else {
        Admission::TooManyActive
    })
}

/// Puts a queued job the broker did not confirm back to `created` (and
/// drops its outbox entry), if no runner has claimed it. Returns whether it
/// did; `false` means a runner already holds it. Through the owner's
/// function `unqueue`, as [`queue_created`].
pub async fn unqueue<C: GenericClient>(
    client: &C,
    job_id: uuid::Uuid,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_typed_one("SELECT unqueue($1)", &[(&job_id, Type::UUID)])
        .await?
        .get(0))
}

/// Records a transient failure of an attempt (best effort, for operators
/// and the dead-letter record).
pub async fn record_transient<C: GenericClient>(
    client: &C,
    job_id: uuid::Uuid,
    error: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE jobs SET last_error = $2, updated_at = now() WHERE id = $1",
            &[&job_id, &error],
        )
        .await?;
    Ok(())
}

/// Makes a failed job runnable again (replay from the dead-letter queue):
/// `queued`, attempts and errors cleared. Returns false if the job is not
/// `failed` (or does not exist), in which case nothing changed.
pub async fn reset_for_replay<C: GenericClient>(
    client: &C,
    job_id: uuid::Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let changed = client
        .execute(
            "UPDATE jobs SET status = 'queued', attempts = 0, error = NULL, last_error = NULL,
                    result = NULL, cancel_requested = false, updated_at = now()
             WHERE id = $1 AND status = 'failed'",
            &[&job_id],
        )
        .await?;
    Ok(changed == 1)
}

//! The job commands both front doors share, WebSocket and HTTP: submit,
//! run a created job, cancel. Each runs in a spawned task or an HTTP
//! handler, never in a session's loop.

use crate::metrics as m;
use serde_json::value::RawValue;
use sluice_broker::PublishError;
use sluice_proto::{JobEnvelope, KindName};
use sluice_store::JobStatus;
use sluice_store::job_keys::{self, Earlier, JobKey};
use sluice_store::jobs::{self as lifecycle, Admission, CancelOutcome, RunCheck};
use sluice_store::outbox;
use uuid::Uuid;

use crate::state::AppState;

/// Why a command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The job is not the user's, or does not exist.
    #[error("job not found")]
    NotFound,
    /// The job is not in a state that allows this (carries its status).
    #[error("job is {0}")]
    Conflict(JobStatus),
    /// The database could not be reached or failed.
    #[error("database unavailable: {0}")]
    Database(String),
    /// The broker did not confirm the message.
    #[error("broker unavailable: {0}")]
    Broker(#[from] PublishError),
    /// A per-user quota refused the job (nothing was recorded).
    #[error("{}", quota_message(*.0))]
    OverQuota(Admission),
    /// The `Idempotency-Key` was used in the last 24 hours with another
    /// body (nothing was recorded).
    #[error("this Idempotency-Key was used with a different request in the last 24 hours")]
    IdempotencyMismatch,
    /// The kind is not served, or the args do not fit its schema (nothing
    /// was recorded).
    #[error(transparent)]
    Refused(#[from] crate::kinds::Refusal),
}

/// How long a client refused by a quota is told to wait: an active job
/// usually ends within seconds; stored `created` jobs go only when the user
/// runs or deletes them.
pub fn quota_retry_after_ms(refusal: Admission) -> u64 {
    match refusal {
        Admission::TooMuchStored => 60_000,
        _ => 1_000,
    }
}

fn quota_message(refusal: Admission) -> &'static str {
    match refusal {
        Admission::TooMuchStored => {
            "too much stored in jobs not yet run (gateway.max_created_bytes_per_user); run or delete some"
        }
        _ => "too many jobs queued or running (gateway.max_active_jobs_per_user)",
    }
}

impl From<tokio_postgres::Error> for CommandError {
    fn from(e: tokio_postgres::Error) -> Self {
        CommandError::Database(e.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for CommandError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        CommandError::Database(e.to_string())
    }
}

/// Records the job (`queued`, with its outbox entry, in one statement) and
/// publishes it; `Ok` once the job is sure to run.
///
/// One writer per fact: the job row and its outbox entry are written
/// together before anything is published. If the broker does not confirm,
/// the submission is withdrawn (the row deleted unless a runner already
/// claimed it) and the client is told `unavailable`: a withdrawn job can
/// never run, because a runner skips a message without a queued row. If
/// the withdrawal itself fails, the outbox entry stands and the relay will
/// publish it, so the submission is accepted. No pooled connection is held
/// while the broker is waited on. See docs/architecture.md.
pub async fn submit(
    state: &AppState,
    job_id: Uuid,
    user: &str,
    kind: &KindName,
    args: &RawValue,
    key: Option<JobKey<'_>>,
) -> Result<Recorded, CommandError> {
    // A kind or args refused count as rejected, not as submitted (as a
    // frame refused by the decoder).
    if let Err(refusal) = state.kinds.admit(&state.pool, kind, args).await {
        count_rejected(refusal_code(&refusal).as_str());
        return Err(refusal.into());
    }
    metrics::counter!(m::JOBS_SUBMITTED).increment(1);
    let outcome = async {
        let body = envelope(job_id, user, kind, args)?;
        let what = Record::Queued { kind, body: &body };
        if let Recorded::Earlier { job_id, status } = record(state, job_id, user, what, key).await? {
            return Ok(Recorded::Earlier { job_id, status });
        }
        let Err(refused) = state.outbox.send_job(&body).await else {
            take_out_of_outbox(state, job_id).await;
            return Ok(Recorded::New);
        };
        let withdrawn = async {
            let client = state.pool.get().await?;
            Ok::<_, CommandError>(lifecycle::withdraw(&**client, job_id).await?)
        };
        match withdrawn.await {
            Ok(true) => Err(CommandError::Broker(refused)),
            Ok(false) => {
                tracing::info!(%job_id, error = %refused, "no confirm, but a runner already has the job");
                Ok(Recorded::New)
            }
            Err(e) => {
                tracing::warn!(%job_id, publish = %refused, error = %e,
                    "could not withdraw an unconfirmed job; the outbox relay will publish it");
                Ok(Recorded::New)
            }
        }
    }
    .await;
    match &outcome {
        Ok(Recorded::New) => metrics::counter!(m::JOBS_ACCEPTED).increment(1),
        Ok(Recorded::Earlier { .. }) => {}
        Err(CommandError::OverQuota(_)) => count_rejected("rate_limited"),
        Err(CommandError::IdempotencyMismatch) => count_rejected("idempotency_mismatch"),
        Err(_) => count_rejected("unavailable"),
    }
    outcome
}

/// Takes a job the broker confirmed out of the job outbox, on a connection
/// of its own. If that fails the relay may publish the job again, and the
/// runner's claim skips the second copy.
async fn take_out_of_outbox(state: &AppState, job_id: Uuid) {
    let taken = async {
        let client = state.pool.get().await?;
        Ok::<_, CommandError>(outbox::mark_job_published(&**client, job_id).await?)
    };
    if let Err(e) = taken.await {
        tracing::warn!(%job_id, error = %e, "could not take a published job out of the outbox");
    }
}

/// The error code a client gets for `refusal`.
pub fn refusal_code(refusal: &crate::kinds::Refusal) -> sluice_proto::ErrorCode {
    use crate::kinds::Refusal;
    use sluice_proto::ErrorCode;
    match refusal {
        Refusal::UnknownKind(_) => ErrorCode::UnknownKind,
        Refusal::BadArgs(_) => ErrorCode::BadArgs,
        Refusal::NotLoaded(_) => ErrorCode::Unavailable,
    }
}

/// Counts a refused submission under `reason` (an error code).
pub fn count_rejected(reason: &'static str) {
    metrics::counter!(m::JOBS_REJECTED, "reason" => reason).increment(1);
}

/// Records a job to be run later (`created`), keeping its args.
pub async fn create(
    state: &AppState,
    job_id: Uuid,
    user: &str,
    kind: &KindName,
    args: &RawValue,
    key: Option<JobKey<'_>>,
) -> Result<Recorded, CommandError> {
    if let Err(refusal) = state.kinds.admit(&state.pool, kind, args).await {
        count_rejected(refusal_code(&refusal).as_str());
        return Err(refusal.into());
    }
    let what = Record::Created {
        kind,
        args: args.get(),
    };
    record(state, job_id, user, what, key).await
}

/// What a submission made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A new job (the id the caller chose).
    New,
    /// Nothing: an earlier request with the same `Idempotency-Key` and
    /// body made this job, now in this status.
    Earlier {
        /// The earlier request's job.
        job_id: Uuid,
        /// Its status now.
        status: JobStatus,
    },
}

/// The row a submission records.
enum Record<'a> {
    /// `queued`, with its outbox entry (the message body).
    Queued { kind: &'a KindName, body: &'a [u8] },
    /// `created`, keeping its args.
    Created { kind: &'a KindName, args: &'a str },
}

async fn record_row<C: tokio_postgres::GenericClient>(
    client: &C,
    state: &AppState,
    job_id: Uuid,
    user: &str,
    what: &Record<'_>,
) -> Result<Admission, tokio_postgres::Error> {
    let quota = state.config.gateway.user_quota();
    match *what {
        Record::Queued { kind, body } => {
            lifecycle::record_queued(client, job_id, user, kind, body, quota).await
        }
        Record::Created { kind, args } => {
            lifecycle::record_created(client, job_id, user, kind, args, quota).await
        }
    }
}

/// Records the job; with an idempotency key, claims the key in the same
/// transaction, or answers what the earlier request with it made.
async fn record(
    state: &AppState,
    job_id: Uuid,
    user: &str,
    what: Record<'_>,
    key: Option<JobKey<'_>>,
) -> Result<Recorded, CommandError> {
    let mut client = state.pool.get().await?;
    let Some(key) = key else {
        return match record_row(&**client, state, job_id, user, &what).await? {
            Admission::Recorded => Ok(Recorded::New),
            refused => Err(CommandError::OverQuota(refused)),
        };
    };
    let tx = client.transaction().await?;
    // Waits while a concurrent request holds the same key, then sees it.
    if !job_keys::claim(&*tx, user, key, job_id).await? {
        return match job_keys::earlier(&*tx, user, key).await? {
            Some(Earlier::Same { job_id, status }) => Ok(Recorded::Earlier { job_id, status }),
            Some(Earlier::Different) => Err(CommandError::IdempotencyMismatch),
            // Its job went in between (withdrawn, pruned): try again.
            None => Err(CommandError::Database(
                "the idempotency key was released meanwhile; retry".into(),
            )),
        };
    }
    match record_row(&*tx, state, job_id, user, &what).await? {
        Admission::Recorded => {
            tx.commit().await?;
            Ok(Recorded::New)
        }
        // Rolled back with the key: a retry after the quota frees may use it.
        refused => Err(CommandError::OverQuota(refused)),
    }
}

/// Queues a `created` job of the user (with its outbox entry, in one
/// transaction) and publishes it; `Ok` once it is sure to run. An
/// unconfirmed publish puts it back to `created`, as [`submit`] withdraws.
/// The row lock and the connection are let go before the broker is waited
/// on.
pub async fn run_created(state: &AppState, user: &str, job_id: Uuid) -> Result<(), CommandError> {
    let body = {
        let mut client = state.pool.get().await?;
        let tx = client.transaction().await?;
        let (kind, args) = match lifecycle::check_run(&*tx, user, job_id).await? {
            RunCheck::NotFound => return Err(CommandError::NotFound),
            RunCheck::Conflict(status) => return Err(CommandError::Conflict(status)),
            RunCheck::Ready { kind, args } => (kind, args),
        };
        let args = RawValue::from_string(args)
            .map_err(|e| CommandError::Database(format!("stored args do not parse: {e}")))?;
        let body = envelope(job_id, user, &kind, &args)?;
        let quota = state.config.gateway.user_quota();
        match lifecycle::queue_created(&*tx, job_id, user, &body, quota).await? {
            Admission::Recorded => {}
            refused => return Err(CommandError::OverQuota(refused)),
        }
        tx.commit().await?;
        body
    };
    let Err(refused) = state.outbox.send_job(&body).await else {
        take_out_of_outbox(state, job_id).await;
        return Ok(());
    };
    let unqueued = async {
        let client = state.pool.get().await?;
        Ok::<_, CommandError>(lifecycle::unqueue(&**client, job_id).await?)
    };
    match unqueued.await {
        Ok(true) => Err(CommandError::Broker(refused)),
        Ok(false) => Ok(()),
        Err(e) => {
            tracing::warn!(%job_id, publish = %refused, error = %e,
                "could not put an unconfirmed job back; the outbox relay will publish it");
            Ok(())
        }
    }
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// Not ended (it has this status): recorded, and the runners were told;
    /// the `cancelled` event follows from a runner.
    Requested(JobStatus),
    /// Already ended with this status; nothing changed.
    AlreadyEnded(JobStatus),
}

/// Cancels the user's job if it has not ended; with `hide`, also hides it
/// from reads and listings (`DELETE /v1/jobs/{id}`).
pub async fn cancel(
    state: &AppState,
    user: &str,
    job_id: Uuid,
    hide: bool,
) -> Result<Cancelled, CommandError> {
    let outcome = {
        let mut client = state.pool.get().await?;
        let tx = client.transaction().await?;
        let outcome = lifecycle::request_cancel(&*tx, user, job_id, hide).await?;
        if matches!(outcome, CancelOutcome::NotFound) {
            return Err(CommandError::NotFound);
        }
        if hide {
            lifecycle::hide(&*tx, user, job_id).await?;
        }
        tx.commit().await?;
        outcome
    };
    // The connection is back in the pool before the broker is waited on.
    Ok(match outcome {
        CancelOutcome::NotFound => return Err(CommandError::NotFound),
        CancelOutcome::AlreadyEnded(status) => Cancelled::AlreadyEnded(status),
        CancelOutcome::Requested(status) => {
            // The request is committed. A runner holding the job reads it at
            // its next poll (`runner.cancel_poll_ms`) and at the job's
            // finish; for a job none holds yet, a runner's sweep ends it
            // within the same poll. This message only makes both happen at
            // once, so its failure fails nothing.
            if let Err(e) = state.control.cancel(job_id).await {
                tracing::warn!(%job_id, error = %e,
                    "cancel recorded but its wake-up message failed; the runners' poll finds it");
            }
            Cancelled::Requested(status)
        }
    })
}

/// The job's message body: its envelope, encoded once for the outbox entry
/// and the publish alike.
fn envelope(
    job_id: Uuid,
    user: &str,
    kind: &KindName,
    args: &RawValue,
) -> Result<Vec<u8>, CommandError> {
    let envelope = JobEnvelope {
        job_id,
        user: user.to_owned(),
        kind: kind.clone(),
        args,
        submitted_at_ms: sluice_proto::now_ms(),
    };
    serde_json::to_vec(&envelope).map_err(|e| CommandError::Database(format!("encoding job: {e}")))
}

//! The job commands both front doors share, WebSocket and HTTP: submit,
//! run a created job, cancel. Each runs in a spawned task or an HTTP
//! handler, never in a session's loop.

use crate::metrics as m;
use serde_json::value::RawValue;
use sluice_broker::PublishError;
use sluice_proto::{JobEnvelope, JobKind};
use sluice_store::JobStatus;
use sluice_store::jobs::{self as lifecycle, CancelOutcome, RunCheck};
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

/// Records the job (`queued`) and publishes it; `Ok` once the broker has it.
/// If the publish fails the row is removed again: the job never existed.
pub async fn submit(
    state: &AppState,
    job_id: Uuid,
    user: &str,
    kind: JobKind,
    args: &RawValue,
) -> Result<(), CommandError> {
    metrics::counter!(m::JOBS_SUBMITTED).increment(1);
    let outcome = async {
        let client = state.pool.get().await?;
        lifecycle::create(&**client, job_id, user, kind, JobStatus::Queued, None).await?;
        if let Err(e) = publish(state, job_id, user, kind, args).await {
            if let Err(db) = lifecycle::forget_unpublished(&**client, job_id).await {
                tracing::warn!(%job_id, error = %db, "could not remove an unpublished job");
            }
            return Err(e);
        }
        Ok(())
    }
    .await;
    match &outcome {
        Ok(()) => metrics::counter!(m::JOBS_ACCEPTED).increment(1),
        Err(_) => count_rejected("unavailable"),
    }
    outcome
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
    kind: JobKind,
    args: &RawValue,
) -> Result<(), CommandError> {
    let client = state.pool.get().await?;
    lifecycle::create(
        &**client,
        job_id,
        user,
        kind,
        JobStatus::Created,
        Some(args.get()),
    )
    .await?;
    Ok(())
}

/// Publishes a `created` job of the user and marks it `queued`.
pub async fn run_created(state: &AppState, user: &str, job_id: Uuid) -> Result<(), CommandError> {
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let (kind, args) = match lifecycle::check_run(&*tx, user, job_id).await? {
        RunCheck::NotFound => return Err(CommandError::NotFound),
        RunCheck::Conflict(status) => return Err(CommandError::Conflict(status)),
        RunCheck::Ready { kind, args } => (kind, args),
    };
    let args = RawValue::from_string(args)
        .map_err(|e| CommandError::Database(format!("stored args do not parse: {e}")))?;
    publish(state, job_id, user, kind, &args).await?;
    lifecycle::mark_queued(&*tx, job_id).await?;
    tx.commit().await?;
    Ok(())
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// Not started yet: cancelled now, its `cancelled` event published.
    Now,
    /// Running: its runner was asked to stop; `cancelled` follows.
    Requested,
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
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let outcome = lifecycle::request_cancel(&*tx, user, job_id).await?;
    if matches!(outcome, CancelOutcome::NotFound) {
        return Err(CommandError::NotFound);
    }
    if hide {
        lifecycle::hide(&*tx, user, job_id).await?;
    }
    tx.commit().await?;
    Ok(match outcome {
        CancelOutcome::NotFound => return Err(CommandError::NotFound),
        CancelOutcome::AlreadyEnded(status) => Cancelled::AlreadyEnded(status),
        CancelOutcome::Cancelled(event) => {
            // If this publish fails the outbox relay sends the event later.
            state.events.publish_stored(&**client, &event).await;
            Cancelled::Now
        }
        CancelOutcome::Requested => {
            state.control.cancel(job_id).await?;
            Cancelled::Requested
        }
    })
}

async fn publish(
    state: &AppState,
    job_id: Uuid,
    user: &str,
    kind: JobKind,
    args: &RawValue,
) -> Result<(), CommandError> {
    let envelope = JobEnvelope {
        job_id,
        user: user.to_owned(),
        kind,
        args,
        submitted_at_ms: sluice_proto::now_ms(),
    };
    let body = serde_json::to_vec(&envelope)
        .map_err(|e| CommandError::Database(format!("encoding job: {e}")))?;
    state.jobs.publish(&body).await?;
    Ok(())
}

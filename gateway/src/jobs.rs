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

/// Records the job (`queued`, with its outbox entry, in one statement) and
/// publishes it; `Ok` once the job is sure to run.
///
/// One writer per fact: the job row and its outbox entry are written
/// together before anything is published. If the broker does not confirm,
/// the submission is withdrawn (the row deleted unless a runner already
/// claimed it) and the client is told `unavailable`: a withdrawn job can
/// never run, because a runner skips a message without a queued row. If
/// the withdrawal itself fails, the outbox entry stands and the relay will
/// publish it, so the submission is accepted. See docs/architecture.md.
pub async fn submit(
    state: &AppState,
    job_id: Uuid,
    user: &str,
    kind: JobKind,
    args: &RawValue,
) -> Result<(), CommandError> {
    metrics::counter!(m::JOBS_SUBMITTED).increment(1);
    let outcome = async {
        let body = envelope(job_id, user, kind, args)?;
        let client = state.pool.get().await?;
        lifecycle::record_queued(&**client, job_id, user, kind, &body).await?;
        let Err(refused) = state.outbox.publish_job(&**client, job_id, &body).await else {
            return Ok(());
        };
        match lifecycle::withdraw(&**client, job_id).await {
            Ok(true) => Err(CommandError::Broker(refused)),
            Ok(false) => {
                tracing::info!(%job_id, error = %refused, "no confirm, but a runner already has the job");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(%job_id, publish = %refused, error = %e,
                    "could not withdraw an unconfirmed job; the outbox relay will publish it");
                Ok(())
            }
        }
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
    lifecycle::record_created(&**client, job_id, user, kind, args.get()).await?;
    Ok(())
}

/// Queues a `created` job of the user (with its outbox entry, in one
/// transaction) and publishes it; `Ok` once it is sure to run. An
/// unconfirmed publish puts it back to `created`, as [`submit`] withdraws.
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
    let body = envelope(job_id, user, kind, &args)?;
    lifecycle::queue_created(&*tx, job_id, &body).await?;
    tx.commit().await?;
    let Err(refused) = state.outbox.publish_job(&**client, job_id, &body).await else {
        return Ok(());
    };
    match lifecycle::unqueue(&**client, job_id).await {
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
            state.outbox.publish_stored(&**client, &event).await;
            Cancelled::Now
        }
        CancelOutcome::Requested => {
            // The request is committed and the runner reads it at its next
            // poll (`runner.cancel_poll_ms`) and at the job's finish; this
            // message only wakes it sooner, so its failure fails nothing.
            if let Err(e) = state.control.cancel(job_id).await {
                tracing::warn!(%job_id, error = %e,
                    "cancel recorded but its wake-up message failed; the runner's poll finds it");
            }
            Cancelled::Requested
        }
    })
}

/// The job's message body: its envelope, encoded once for the outbox entry
/// and the publish alike.
fn envelope(
    job_id: Uuid,
    user: &str,
    kind: JobKind,
    args: &RawValue,
) -> Result<Vec<u8>, CommandError> {
    let envelope = JobEnvelope {
        job_id,
        user: user.to_owned(),
        kind,
        args,
        submitted_at_ms: sluice_proto::now_ms(),
    };
    serde_json::to_vec(&envelope).map_err(|e| CommandError::Database(format!("encoding job: {e}")))
}

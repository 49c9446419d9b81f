//! The job row's state transitions, each inside the caller's transaction
//! together with the event that reports it.

use sluice_common::events::{self, NewEvent, StoredEvent};
use sluice_proto::{ErrorCode, EventStatus, JobError, OwnedJobEnvelope};
use tokio_postgres::GenericClient;

/// What claiming a delivered job found.
#[derive(Debug)]
pub enum Claim {
    /// Run it. `running` is the event to publish after commit, absent when
    /// the job was already running (a redelivery after a crash).
    Run {
        attempt: i32,
        running: Option<StoredEvent>,
    },
    /// Already ended (done, failed or cancelled): acknowledge and skip.
    Finished,
    /// Delivered more often than `max_attempts`: fail it.
    Exhausted { attempts: i32 },
}

/// Marks the job running (creating its row on first sight) and counts the
/// attempt. Locks the job row until commit.
pub async fn claim<C: GenericClient>(
    tx: &C,
    job: &OwnedJobEnvelope,
    max_attempts: u32,
) -> Result<Claim, tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO jobs (id, user_id, kind, status) VALUES ($1, $2, $3, 'queued')
         ON CONFLICT (id) DO NOTHING",
        &[&job.job_id, &job.user, &job.kind.as_str()],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT status, attempts FROM jobs WHERE id = $1 FOR UPDATE",
            &[&job.job_id],
        )
        .await?;
    let status: String = row.get(0);
    let attempts: i32 = row.get::<_, i32>(1) + 1;
    if matches!(status.as_str(), "done" | "failed" | "cancelled") {
        return Ok(Claim::Finished);
    }
    tx.execute(
        "UPDATE jobs SET status = 'running', attempts = $2, updated_at = now() WHERE id = $1",
        &[&job.job_id, &attempts],
    )
    .await?;
    if attempts as u32 > max_attempts {
        return Ok(Claim::Exhausted { attempts });
    }
    let running = if status == "running" {
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

/// How a job ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Done(serde_json::Value),
    Failed(JobError),
}

/// Records the job's end and appends its terminal event.
pub async fn finish<C: GenericClient>(
    tx: &C,
    job: &OwnedJobEnvelope,
    outcome: Outcome,
) -> Result<StoredEvent, tokio_postgres::Error> {
    let (status, result, error) = match outcome {
        Outcome::Done(result) => (EventStatus::Done, Some(result), None),
        Outcome::Failed(error) => (EventStatus::Failed, None, Some(error)),
    };
    let error_json = error
        .as_ref()
        .map(|e| serde_json::to_value(e).unwrap_or_default());
    tx.execute(
        "UPDATE jobs SET status = $2, result = $3, error = $4, updated_at = now() WHERE id = $1",
        &[&job.job_id, &status.as_str(), &result, &error_json],
    )
    .await?;
    events::append(
        tx,
        &job.user,
        NewEvent {
            job_id: job.job_id,
            status,
            result,
            error,
        },
    )
    .await
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

//! The jobs consumer: one task per delivery, bounded by the prefetch, each
//! acknowledged only after its outcome is committed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use sluice_common::config::RunnerConfig;
use sluice_proto::{ErrorCode, JobError, OwnedJobEnvelope};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::error::JobFailure;
use crate::handlers::{Handlers, JobContext};
use crate::lifecycle::{self, Claim, Outcome};
use crate::publisher::EventPublisher;

/// Everything a job task needs, shared by all of them.
pub struct Runner {
    pub pool: deadpool_postgres::Pool,
    pub handlers: Handlers,
    pub settings: RunnerConfig,
    pub events: Arc<EventPublisher>,
}

/// Takes deliveries until `shutdown` or until the consumer ends, then waits
/// (up to `grace`) for the jobs in hand. Unacknowledged jobs go back to the
/// queue when the channel closes, so none is lost.
pub async fn consume(
    runner: Arc<Runner>,
    mut consumer: lapin::Consumer,
    shutdown: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let tracker = TaskTracker::new();
    let ended = loop {
        let next = tokio::select! {
            next = consumer.next() => next,
            _ = shutdown.cancelled() => break Ok(()),
        };
        match next {
            Some(Ok(delivery)) => {
                let runner = runner.clone();
                tracker.spawn(async move { handle(&runner, delivery).await });
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "jobs consumer failed");
                break Err(anyhow::anyhow!("jobs consumer failed: {e}"));
            }
            None => break Err(anyhow::anyhow!("jobs consumer was cancelled by the broker")),
        }
    };
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("jobs still running after the grace period; the broker will redeliver them");
    }
    ended
}

async fn handle(runner: &Runner, delivery: Delivery) {
    let job = match OwnedJobEnvelope::decode(&delivery.data) {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(error = %e, bytes = delivery.data.len(), "poison message: dead-lettering it");
            if let Err(e) = delivery.reject(BasicRejectOptions { requeue: false }).await {
                tracing::warn!(error = %e, "could not reject poison message");
            }
            return;
        }
    };
    let span = tracing::info_span!("job", job_id = %job.job_id, kind = job.kind.as_str(), user = %job.user);
    async move {
        match run_job(runner, &job).await {
            Ok(()) => {
                if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                    // The outcome is committed; a redelivery will be skipped.
                    tracing::warn!(error = %e, "ack failed");
                }
            }
            Err(failure) => {
                tracing::warn!(error = %failure, "job attempt failed; handing it back");
                tokio::time::sleep(Duration::from_millis(runner.settings.retry_delay_ms)).await;
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                };
                if let Err(e) = delivery.nack(requeue).await {
                    tracing::warn!(error = %e, "nack failed; the broker redelivers on channel close");
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// One attempt at a job. `Ok` means its outcome is committed (or it had
/// already ended) and the delivery may be acknowledged; `Err` means hand it back.
async fn run_job(runner: &Runner, job: &OwnedJobEnvelope) -> Result<(), JobFailure> {
    let mut client = runner.pool.get().await?;
    let tx = client.transaction().await?;
    let claim = lifecycle::claim(&*tx, job, runner.settings.max_attempts).await?;
    tx.commit().await?;

    let outcome = match claim {
        Claim::Finished => {
            tracing::info!("job already ended; skipping redelivery");
            return Ok(());
        }
        Claim::Exhausted { attempts } => {
            Outcome::Failed(lifecycle::exhausted_error(attempts, None))
        }
        Claim::Run { attempt, running } => {
            if let Some(event) = running {
                runner.events.publish_stored(&**client, &event).await;
            }
            tracing::info!(attempt, "running job");
            let started = std::time::Instant::now();
            let tx = client.transaction().await?;
            let result = match runner.handlers.get(job.kind) {
                Some(handler) => {
                    handler
                        .run(JobContext {
                            tx: &tx,
                            job,
                            settings: &runner.settings,
                            events: &runner.events,
                        })
                        .await
                }
                None => Err(JobFailure::Permanent(JobError {
                    code: ErrorCode::UnknownKind,
                    message: format!("this runner has no handler for `{}`", job.kind.as_str()),
                })),
            };
            match result {
                Ok(value) => {
                    let event = lifecycle::finish(&*tx, job, Outcome::Done(value)).await?;
                    tx.commit().await?;
                    tracing::info!(
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "job done"
                    );
                    runner.events.publish_stored(&**client, &event).await;
                    return Ok(());
                }
                Err(JobFailure::Permanent(error)) => {
                    tx.rollback().await?;
                    tracing::info!(code = error.code.as_str(), message = %error.message, "job failed");
                    Outcome::Failed(error)
                }
                Err(transient) => return Err(transient),
            }
        }
    };
    let tx = client.transaction().await?;
    let event = lifecycle::finish(&*tx, job, outcome).await?;
    tx.commit().await?;
    runner.events.publish_stored(&**client, &event).await;
    Ok(())
}

//! The runners' side of the dead-letter exchange: a job the broker
//! dead-lettered on its own (its delivery limit reached in the jobs queue)
//! is failed with `internal` and its terminal event published, so it never
//! stays `queued` or `running` with no message left to run it.
//!
//! Every dead letter reaches `<p>.jobs.dead.settle` as well as the
//! operators' `<p>.jobs.dead`. Most need nothing here: a job the runner
//! itself dead-lettered (its attempts used up) was failed before, and a
//! poison message has no job. The operators' copy stays for `dead list`
//! and `dead replay` either way.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::Connection;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use sluice_broker::{self as amqp, Topology};
use sluice_outbox::Publisher;
use sluice_proto::{ErrorCode, JobError, OwnedJobEnvelope};
use sluice_store::jobs::{self as lifecycle, Abandon};
use sluice_store::lease::Leased;

use crate::error::JobFailure;

/// How long a dead letter whose job is still executing (its lease held)
/// waits before it is looked at again.
const BUSY_PAUSE: Duration = Duration::from_secs(5);

/// Consumes the settle queue until the connection ends.
pub async fn consume(
    conn: &Connection,
    topology: &Topology,
    pool: deadpool_postgres::Pool,
    events: Arc<Publisher>,
) -> Result<(), lapin::Error> {
    // Declared with the jobs queue when the broker side was set up.
    let channel = conn.create_channel().await?;
    channel.basic_qos(4, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            topology.settle_queue.as_str().into(),
            format!("sluice-jobs-settle-{}", std::process::id()).into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    // One task per dead letter (at most the prefetch of 4 at once), so one
    // whose job is still leased waits its pause without holding up the rest.
    let tasks = tokio_util::task::TaskTracker::new();
    while let Some(next) = consumer.next().await {
        let delivery = next?;
        let (topology, pool, events) = (topology.clone(), pool.clone(), events.clone());
        tasks.spawn(async move { settle(&delivery, &topology, &pool, &events).await });
    }
    Ok(())
}

async fn settle(
    delivery: &Delivery,
    topology: &Topology,
    pool: &deadpool_postgres::Pool,
    events: &Publisher,
) {
    let given_up =
        amqp::last_death(&delivery.properties).filter(|(queue, _)| *queue == topology.jobs_queue);
    let (Some((_, reason)), Ok(job)) = (given_up, OwnedJobEnvelope::decode(&delivery.data)) else {
        // Exhausted by a runner (failed already), or poison (no job).
        ack(delivery).await;
        return;
    };
    let error = JobError {
        code: ErrorCode::Internal,
        message: format!(
            "the broker gave up on the job ({reason}, after {} deliveries)",
            amqp::DELIVERY_LIMIT
        ),
    };
    match fail(pool, events, &job, error).await {
        Ok(true) => ack(delivery).await,
        Ok(false) => {
            // An attempt holds it and will record the outcome; if it dies
            // first, this copy fails the job.
            tokio::time::sleep(BUSY_PAUSE).await;
            requeue(delivery).await;
        }
        Err(e) => {
            tracing::warn!(job_id = %job.job_id, error = %e, "could not settle a dead-lettered job; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            requeue(delivery).await;
        }
    }
}

/// Fails `job` unless it ended or an attempt holds it; `Ok(false)` means
/// an attempt holds it.
async fn fail(
    pool: &deadpool_postgres::Pool,
    events: &Publisher,
    job: &OwnedJobEnvelope,
    error: JobError,
) -> Result<bool, JobFailure> {
    let mut client = Leased::new(pool.get().await?, job.job_id);
    let tx = client.transaction().await?;
    let abandoned = lifecycle::abandon(&*tx, job.job_id, &job.user, error).await?;
    tx.commit().await?;
    let settled = match abandoned {
        Abandon::NotFound | Abandon::Ended => {
            client.not_held();
            true
        }
        Abandon::Busy => {
            client.not_held();
            false
        }
        Abandon::Recorded(event) => {
            tracing::warn!(job_id = %job.job_id, "the broker dead-lettered a job: failed it");
            if let Some(event) = event {
                events.publish_stored(&***client, &event).await;
            }
            true
        }
    };
    client.release().await;
    Ok(settled)
}

async fn ack(delivery: &Delivery) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        tracing::warn!(error = %e, "could not acknowledge a dead letter");
    }
}

async fn requeue(delivery: &Delivery) {
    let requeue = BasicNackOptions {
        requeue: true,
        ..Default::default()
    };
    if let Err(e) = delivery.nack(requeue).await {
        tracing::warn!(error = %e, "could not requeue a dead letter");
    }
}

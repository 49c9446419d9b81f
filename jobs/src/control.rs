//! The runner's control queue: cancel requests broadcast by gateways. A
//! cancel of a job this runner holds stops it; a cancel of a job no runner
//! has taken yet (`created`, or `queued` behind others) is ended here as
//! `cancelled`, since the gateway may only record the request. A sweep on
//! a timer ends those whose message was lost.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use lapin::Connection;
use sluice_broker::{self as amqp, Topology};
use sluice_outbox::Publisher;
use sluice_proto::ControlMessage;
use sluice_store::jobs as lifecycle;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::consumer::InFlight;

/// How many cancels of unstarted jobs may be under way at once: past that
/// a message is left to the sweep, so a flood of cancels cannot grow
/// memory or take every pooled connection.
const CANCEL_TASKS: usize = 16;

/// Most unstarted cancels one sweep ends.
const SWEEP_BATCH: i64 = 100;

/// Consumes this runner's own queue on the control exchange until the
/// connection ends, cancelling the jobs it is asked to, and every
/// `sweep_every` ends the unstarted jobs whose cancel is recorded.
pub async fn consume(
    conn: &Connection,
    topology: &Topology,
    in_flight: Arc<InFlight>,
    pool: Pool,
    publisher: Arc<Publisher>,
    sweep_every: Duration,
) -> Result<(), lapin::Error> {
    let channel = conn.create_channel().await?;
    topology.declare_control(&channel).await?;
    // Named by us, not by the server: lapin re-declares it after a broker
    // restart, and a server-named (`amq.gen-*`) queue may not be re-declared.
    let name = format!(
        "{}.{}",
        topology.control_exchange,
        uuid::Uuid::new_v4().simple()
    );
    let mut consumer = amqp::listen(&channel, &name, &topology.control_exchange, "").await?;
    let tasks = Arc::new(Semaphore::new(CANCEL_TASKS));
    let mut sweep = tokio::time::interval(sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            next = consumer.next() => match next {
                Some(message) => message?,
                None => return Ok(()),
            },
            _ = sweep.tick() => {
                // One sweep at a time, in a task, so that a slow database
                // does not hold up the cancels of running jobs.
                if let Ok(permit) = tasks.clone().try_acquire_owned() {
                    let (pool, publisher) = (pool.clone(), publisher.clone());
                    tokio::spawn(async move {
                        sweep_unstarted(&pool, &publisher).await;
                        drop(permit);
                    });
                }
                continue;
            }
        };
        match serde_json::from_slice::<ControlMessage>(&message.data) {
            Ok(ControlMessage::Cancel { job_id }) => {
                if in_flight.cancel(job_id) {
                    tracing::info!(%job_id, "cancel requested for a job this runner holds");
                    continue;
                }
                let Ok(permit) = tasks.clone().try_acquire_owned() else {
                    continue;
                };
                let (pool, publisher) = (pool.clone(), publisher.clone());
                tokio::spawn(async move {
                    if let Err(e) = end_unstarted(&pool, &publisher, job_id).await {
                        tracing::warn!(%job_id, error = %e,
                            "could not end a cancelled job; the next sweep will");
                    }
                    drop(permit);
                });
            }
            Err(e) => tracing::warn!(error = %e, "ignoring undecodable control message"),
        }
    }
}

/// Why ending a cancelled job failed.
#[derive(Debug, thiserror::Error)]
enum EndError {
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Query(#[from] tokio_postgres::Error),
}

/// Ends `job_id` as `cancelled` if its cancel is recorded and no runner has
/// taken it, and publishes the event (marked published in the same
/// transaction; if the publish fails the relay sends it). Returns whether
/// it ended the job: `false` when another runner did, a runner holds it,
/// or it was not cancelled at all (a cancel of a running job held
/// elsewhere).
async fn end_unstarted(pool: &Pool, publisher: &Publisher, job_id: Uuid) -> Result<bool, EndError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let Some(event) = lifecycle::cancel_unstarted(&*tx, job_id).await? else {
        return Ok(false);
    };
    tx.commit().await?;
    drop(client);
    tracing::info!(%job_id, "cancelled before any runner took it");
    // No pooled connection is held while the broker is waited on.
    if let Err(e) = publisher.send_event(&event).await {
        tracing::warn!(seq = event.seq, error = %e, "event publish failed; the relay will retry");
        return Ok(true);
    }
    let client = pool.get().await?;
    if let Err(e) = sluice_store::outbox::mark_published(&**client, &event.user, event.seq).await {
        // Published but still in the outbox: the relay may send it again,
        // and sessions drop the duplicate by seq.
        tracing::warn!(seq = event.seq, error = %e, "could not mark event published");
    }
    Ok(true)
}

/// Ends every unstarted job whose cancel is recorded (up to
/// [`SWEEP_BATCH`]): what the control message would have done.
async fn sweep_unstarted(pool: &Pool, publisher: &Publisher) {
    let found = async {
        let client = pool.get().await?;
        Ok::<_, EndError>(lifecycle::unstarted_cancels(&**client, SWEEP_BATCH).await?)
    };
    let ids = match found.await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::debug!(error = %e, "cancel sweep failed");
            return;
        }
    };
    for job_id in ids {
        if let Err(e) = end_unstarted(pool, publisher, job_id).await {
            tracing::debug!(%job_id, error = %e, "cancel sweep: could not end a job");
        }
    }
}

//! The runner's control queue: cancel requests broadcast by gateways, and
//! events a gateway committed for a runner to publish.

use std::sync::Arc;

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use lapin::Connection;
use sluice_broker::{self as amqp, Topology};
use sluice_outbox::{Publisher, relay};
use sluice_proto::ControlMessage;

use crate::consumer::InFlight;

/// How many publishes of gateways' events may run at once.
const PUBLISH_TASKS: usize = 16;

/// Consumes this runner's own queue on the control exchange until the
/// connection ends, cancelling the jobs it is asked to and publishing the
/// events it is asked to.
pub async fn consume(
    conn: &Connection,
    topology: &Topology,
    in_flight: Arc<InFlight>,
    pool: Pool,
    publisher: Arc<Publisher>,
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
    let publishing = Arc::new(tokio::sync::Semaphore::new(PUBLISH_TASKS));
    while let Some(next) = consumer.next().await {
        let message = next?;
        match serde_json::from_slice::<ControlMessage>(&message.data) {
            Ok(ControlMessage::Cancel { job_id }) => {
                if in_flight.cancel(job_id) {
                    tracing::info!(%job_id, "cancel requested for a job this runner holds");
                }
            }
            Ok(ControlMessage::PublishEvent { user, seq }) => {
                // Its own task, so a slow database does not hold up cancels;
                // at most PUBLISH_TASKS at once, so a flood of these cannot
                // grow memory: past that the relay's next round publishes it.
                let Ok(permit) = publishing.clone().try_acquire_owned() else {
                    continue;
                };
                let (pool, publisher) = (pool.clone(), publisher.clone());
                tokio::spawn(async move {
                    if let Err(e) = relay::publish_one(&pool, &publisher, &user, seq).await {
                        tracing::warn!(seq, error = %e,
                            "could not publish a gateway's event; the relay's next round will");
                    }
                    drop(permit);
                });
            }
            Err(e) => tracing::warn!(error = %e, "ignoring undecodable control message"),
        }
    }
    Ok(())
}

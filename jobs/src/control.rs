//! The runner's control queue: cancel requests broadcast by gateways.

use std::sync::Arc;

use futures_util::StreamExt;
use lapin::Connection;
use sluice_broker::{self as amqp, Topology};
use sluice_proto::ControlMessage;

use crate::consumer::InFlight;

/// Consumes this runner's own queue on the control exchange until the
/// connection ends, cancelling the jobs it is asked to.
pub async fn consume(
    conn: &Connection,
    topology: &Topology,
    in_flight: Arc<InFlight>,
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
    while let Some(next) = consumer.next().await {
        let message = next?;
        match serde_json::from_slice::<ControlMessage>(&message.data) {
            Ok(ControlMessage::Cancel { job_id }) => {
                if in_flight.cancel(job_id) {
                    tracing::info!(%job_id, "cancel requested for a job this runner holds");
                }
            }
            Err(e) => tracing::warn!(error = %e, "ignoring undecodable control message"),
        }
    }
    Ok(())
}

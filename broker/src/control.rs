//! Control messages to every runner (cancel requests). Transient: a runner
//! that is not listening holds no job that needs them.

use std::time::Duration;

use sluice_proto::ControlMessage;
use uuid::Uuid;

use crate::publish::{ConfirmChannel, Durability, PublishError};
use crate::topology::Topology;

/// Publishes to `<prefix>.control`, which every runner hears on its own queue.
pub struct ControlPublisher {
    channel: ConfirmChannel,
    exchange: String,
    timeout: Duration,
}

impl ControlPublisher {
    /// A publisher on `channel` for `topology`.
    pub fn new(channel: ConfirmChannel, topology: &Topology, timeout: Duration) -> Self {
        Self {
            channel,
            exchange: topology.control_exchange.clone(),
            timeout,
        }
    }

    /// Whether the publishing channel is open (not recovering).
    pub fn is_ready(&self) -> bool {
        self.channel.is_ready()
    }

    /// Asks every runner to cancel `job_id` if it is running it.
    pub async fn cancel(&self, job_id: Uuid) -> Result<(), PublishError> {
        self.send(&ControlMessage::Cancel { job_id }).await
    }

    async fn send(&self, message: &ControlMessage) -> Result<(), PublishError> {
        let body = serde_json::to_vec(message).unwrap_or_default();
        self.channel
            .publish(
                &self.exchange,
                "",
                &body,
                Durability::Transient,
                self.timeout,
            )
            .await
    }
}

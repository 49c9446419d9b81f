//! Publishing job events to the events exchange after their commit.

use std::time::Duration;

use lapin::Channel;
use sluice_common::amqp::{self, Durability};
use sluice_common::events::{self, StoredEvent};
use sluice_proto::{EventFrame, EventStatus, Progress, ServerFrame};
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// Sends events to `<prefix>.events`, routed by user id.
pub struct EventPublisher {
    /// A confirm-mode channel shared by every job task.
    channel: Channel,
    exchange: String,
    timeout: Duration,
}

impl EventPublisher {
    /// A publisher on `channel` (which must be in confirm mode).
    pub fn new(channel: Channel, exchange: String, timeout: Duration) -> Self {
        Self {
            channel,
            exchange,
            timeout,
        }
    }

    /// Publishes a committed event and takes it out of the outbox, using the
    /// caller's connection. On failure the event stays in the outbox and the
    /// relay publishes it later; returns whether it went out now.
    pub async fn publish_stored<C: GenericClient>(&self, client: &C, event: &StoredEvent) -> bool {
        let sent = amqp::publish_confirmed(
            &self.channel,
            &self.exchange,
            &event.user,
            event.frame.as_bytes(),
            Durability::Transient,
            self.timeout,
        )
        .await;
        if let Err(e) = sent {
            tracing::warn!(seq = event.seq, error = %e, "event publish failed; the relay will retry");
            return false;
        }
        if let Err(e) = events::mark_published(client, &event.user, event.seq).await {
            // Published but still in the outbox: the relay may send it again,
            // and sessions drop the duplicate by seq.
            tracing::warn!(seq = event.seq, error = %e, "could not mark event published");
        }
        true
    }

    /// Sends an advisory `progress` event (not stored, `seq` 0). Best effort.
    pub async fn progress(&self, user: &str, job_id: Uuid, done: u64, total: u64) {
        let frame = ServerFrame::Event(EventFrame {
            seq: 0,
            job_id,
            status: EventStatus::Progress,
            progress: Some(Progress { done, total }),
            result: None,
            error: None,
        })
        .encode();
        if let Err(e) = amqp::publish_confirmed(
            &self.channel,
            &self.exchange,
            user,
            frame.as_bytes(),
            Durability::Transient,
            self.timeout,
        )
        .await
        {
            tracing::debug!(error = %e, "progress event dropped");
        }
    }
}

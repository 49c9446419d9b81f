//! Publishing what the store committed: jobs to the jobs queue and stored
//! events to the events exchange, each taken out of the outbox once the
//! broker confirmed it; and advisory progress as it comes.

use std::time::Duration;

use sluice_broker::{ConfirmChannel, Durability, PublishError, Topology};
use sluice_proto::{EventFrame, EventStatus, Progress, ServerFrame};
use sluice_store::StoredEvent;
use sluice_store::outbox;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// Sends jobs to `<prefix>.jobs` and events to `<prefix>.events` (routed by
/// user id). Every job and event any Sluice process publishes goes through
/// one of these.
pub struct Publisher {
    /// Confirm-mode publishing shared by every task of the process.
    channel: ConfirmChannel,
    exchange: String,
    jobs_queue: String,
    timeout: Duration,
}

impl Publisher {
    /// A publisher on `channel` for `topology`.
    pub fn new(channel: ConfirmChannel, topology: &Topology, timeout: Duration) -> Self {
        Self {
            channel,
            exchange: topology.events_exchange.clone(),
            jobs_queue: topology.jobs_queue.clone(),
            timeout,
        }
    }

    /// Whether the publishing channel is open (not recovering).
    pub fn is_ready(&self) -> bool {
        self.channel.is_ready()
    }

    /// Publishes a recorded job (its outbox entry's `body`) as a persistent
    /// message and, once the broker confirmed it, takes it out of the job
    /// outbox using the caller's connection. `Ok` means the broker has it.
    /// If the entry cannot be deleted the relay may publish the job again;
    /// the claim skips a job that has ended.
    pub async fn publish_job<C: GenericClient>(
        &self,
        client: &C,
        job_id: Uuid,
        body: &[u8],
    ) -> Result<(), PublishError> {
        self.send_job(body).await?;
        if let Err(e) = outbox::mark_job_published(client, job_id).await {
            tracing::warn!(%job_id, error = %e, "could not take a published job out of the outbox");
        }
        Ok(())
    }

    /// Publishes a committed event and takes it out of the outbox, using the
    /// caller's connection. On failure the event stays in the outbox and the
    /// relay publishes it later; returns whether it went out now.
    pub async fn publish_stored<C: GenericClient>(&self, client: &C, event: &StoredEvent) -> bool {
        if let Err(e) = self.send_event(event).await {
            tracing::warn!(seq = event.seq, error = %e, "event publish failed; the relay will retry");
            return false;
        }
        if let Err(e) = outbox::mark_published(client, &event.user, event.seq).await {
            // Published but still in the outbox: the relay may send it again,
            // and sessions drop the duplicate by seq.
            tracing::warn!(seq = event.seq, error = %e, "could not mark event published");
        }
        true
    }

    /// Publishes a recorded job's body and waits for the confirm, without
    /// touching the outbox: for a caller that must not hold a database
    /// connection across the wait, and takes the entry out afterwards with
    /// [`outbox::mark_job_published`].
    pub async fn send_job(&self, body: &[u8]) -> Result<(), PublishError> {
        self.channel
            .publish(
                "",
                &self.jobs_queue,
                body,
                Durability::Persistent,
                self.timeout,
            )
            .await
    }

    /// Publishes a committed event and waits for the confirm, without
    /// touching the outbox (see [`Publisher::send_job`]).
    pub async fn send_event(&self, event: &StoredEvent) -> Result<(), PublishError> {
        self.channel
            .publish(
                &self.exchange,
                &event.user,
                event.frame.as_bytes(),
                Durability::Transient,
                self.timeout,
            )
            .await
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
        if let Err(e) = self
            .channel
            .publish(
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

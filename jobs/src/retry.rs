//! Retries through RabbitMQ delay queues, and dead-lettering.
//!
//! A transiently failed job is republished to the delay queue of its tier
//! (exponential: `retry_delay_ms * 2^(n-1)`, with jitter) and the delivery
//! acknowledged; when its TTL expires the broker puts it back on the jobs
//! queue. No runner slot or delivery is held while it waits. A job that used
//! up `max_attempts` is copied to the dead-letter exchange with its attempt
//! count and last error.

use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable};
use sluice_broker::{
    ATTEMPTS_HEADER, ConfirmChannel, DEFERRALS_HEADER, Durability, Extras, LAST_ERROR_HEADER,
    PublishError, RETRIES_HEADER, Topology,
};

/// Delay tiers declared; later retries wait in the last one.
pub const TIERS: u32 = 8;

/// The highest tier a deferred delivery waits in (8 s with the default
/// `retry_delay_ms` of 1 s).
pub const DEFER_TIERS: u32 = 4;

/// Publishes jobs to retry tiers and to the dead-letter exchange.
pub struct Retrier {
    channel: ConfirmChannel,
    topology: Topology,
    base: Duration,
    timeout: Duration,
}

impl Retrier {
    /// A retrier publishing on `channel`, tiers starting at `base`.
    pub fn new(
        channel: ConfirmChannel,
        topology: Topology,
        base: Duration,
        timeout: Duration,
    ) -> Self {
        Self {
            channel,
            topology,
            base,
            timeout,
        }
    }

    /// Sends `body` to wait in the tier of its `retries`-th retry (1-based).
    pub async fn schedule(&self, body: &[u8], retries: u32) -> Result<Duration, PublishError> {
        let mut headers = FieldTable::default();
        headers.insert(
            RETRIES_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(retries)),
        );
        self.wait_in_tier(body, retries, headers).await
    }

    /// Sends a delivery whose job another attempt is executing to wait and
    /// be looked at again: the `n`-th deferral waits in tier `n`, at most
    /// [`DEFER_TIERS`], so a job whose holder died after a long run is
    /// picked up within about `retry_delay_ms * 2^(DEFER_TIERS-1)`. The
    /// job's retry count travels on unchanged.
    pub async fn defer(
        &self,
        body: &[u8],
        retries: u32,
        deferrals: u32,
    ) -> Result<Duration, PublishError> {
        let mut headers = FieldTable::default();
        headers.insert(
            RETRIES_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(retries)),
        );
        headers.insert(
            DEFERRALS_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(deferrals)),
        );
        self.wait_in_tier(body, deferrals.min(DEFER_TIERS), headers)
            .await
    }

    async fn wait_in_tier(
        &self,
        body: &[u8],
        tier: u32,
        headers: FieldTable,
    ) -> Result<Duration, PublishError> {
        let (queue, delay) = self.topology.retry_queue(self.base, tier.clamp(1, TIERS));
        // Full jitter in the upper half: spreads a burst of retries without
        // ever exceeding the tier's own TTL (which would block its head).
        let wait = delay.mul_f64(0.5 + rand::random::<f64>() * 0.5);
        self.channel
            .publish_with(
                "",
                &queue,
                body,
                Durability::Persistent,
                self.timeout,
                Extras {
                    headers,
                    expiration: Some(wait),
                },
            )
            .await?;
        Ok(wait)
    }

    /// Copies `body` to the dead-letter exchange with why it died.
    pub async fn dead_letter(
        &self,
        body: &[u8],
        attempts: i32,
        last_error: Option<&str>,
    ) -> Result<(), PublishError> {
        let mut headers = FieldTable::default();
        headers.insert(
            ATTEMPTS_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(attempts)),
        );
        if let Some(error) = last_error {
            headers.insert(
                LAST_ERROR_HEADER.into(),
                AMQPValue::LongString(error.into()),
            );
        }
        self.channel
            .publish_with(
                &self.topology.dead_exchange,
                "",
                body,
                Durability::Persistent,
                self.timeout,
                Extras {
                    headers,
                    expiration: None,
                },
            )
            .await
    }
}

//! The names of every exchange and queue Sluice uses, and declaring them.
//!
//!
//! Topology (names carry the configured prefix, `sluice` by default):
//! - `<p>.jobs`: durable quorum queue of [`sluice_proto::JobEnvelope`]s,
//!   dead-lettering to `<p>.dlx`, with a delivery limit as the backstop
//!   against a job that crashes every runner that takes it.
//! - `<p>.dlx` (fanout) and `<p>.jobs.dead`: where poison and exhausted
//!   jobs end up, for operators. `<p>.jobs.dead.settle`, bound to the same
//!   exchange, is the runners': a job the broker dead-lettered on its own
//!   is failed there, so it never stays `running`.
//! - `<p>.events`: durable topic exchange; routing key = user id; body = the
//!   encoded `event` frame. Each gateway binds its own queue to it.
//! - `<p>.control`: durable fanout exchange of [`sluice_proto::ControlMessage`]s
//!   (cancel requests); each runner binds its own queue to it.
//! - `<p>.jobs.retry.<ms>ms`: durable delay queues, one per backoff tier; a
//!   transiently failed job waits there (TTL) and is dead-lettered back into
//!   `<p>.jobs`. Named by their delay, so changing the base delay makes new
//!   queues instead of clashing with the old ones' arguments.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

/// Redeliveries after which the broker dead-letters a job on its own.
pub const DELIVERY_LIMIT: i32 = 20;

/// Exchange and queue names derived from the configured prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    /// `<p>.jobs`: the durable quorum queue of jobs.
    pub jobs_queue: String,
    /// `<p>.events`: the topic exchange of events, keyed by user id.
    pub events_exchange: String,
    /// `<p>.dlx`: where the jobs queue dead-letters.
    pub dead_exchange: String,
    /// `<p>.jobs.dead`: the dead-letter queue operators inspect.
    pub dead_queue: String,
    /// `<p>.jobs.dead.settle`: the runners' copy of every dead letter.
    pub settle_queue: String,
    /// `<p>.control`: the fanout of cancel requests to every runner.
    pub control_exchange: String,
}

impl Topology {
    /// Names for `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            jobs_queue: format!("{prefix}.jobs"),
            events_exchange: format!("{prefix}.events"),
            dead_exchange: format!("{prefix}.dlx"),
            dead_queue: format!("{prefix}.jobs.dead"),
            settle_queue: format!("{prefix}.jobs.dead.settle"),
            control_exchange: format!("{prefix}.control"),
        }
    }

    /// Declares the jobs queue and its dead-letter pair. Idempotent.
    pub async fn declare_jobs(&self, channel: &Channel) -> Result<(), lapin::Error> {
        declare_exchange(channel, &self.dead_exchange, ExchangeKind::Fanout).await?;
        for queue in [&self.dead_queue, &self.settle_queue] {
            declare_durable_queue(channel, queue, quorum_args()).await?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    self.dead_exchange.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        let mut args = quorum_args();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.dead_exchange.as_str().into()),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(DELIVERY_LIMIT),
        );
        declare_durable_queue(channel, &self.jobs_queue, args).await
    }

    /// The delay queue of retry tier `tier` (1-based): `base * 2^(tier-1)`.
    pub fn retry_queue(&self, base: Duration, tier: u32) -> (String, Duration) {
        // Saturating: a delay too long for a Duration is not worth a panic.
        let delay = base.saturating_mul(2u32.saturating_pow(tier.saturating_sub(1)));
        (
            format!("{}.retry.{}ms", self.jobs_queue, delay.as_millis()),
            delay,
        )
    }

    /// Declares the retry tiers `1..=tiers` for `base`. Idempotent.
    pub async fn declare_retry(
        &self,
        channel: &Channel,
        base: Duration,
        tiers: u32,
    ) -> Result<(), lapin::Error> {
        for tier in 1..=tiers {
            let (name, delay) = self.retry_queue(base, tier);
            let mut args = FieldTable::default();
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            );
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString("".into()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(self.jobs_queue.as_str().into()),
            );
            declare_durable_queue(channel, &name, args).await?;
        }
        Ok(())
    }

    /// Declares the control exchange. Idempotent.
    pub async fn declare_control(&self, channel: &Channel) -> Result<(), lapin::Error> {
        declare_exchange(channel, &self.control_exchange, ExchangeKind::Fanout).await
    }

    /// Declares the events exchange. Idempotent.
    pub async fn declare_events(&self, channel: &Channel) -> Result<(), lapin::Error> {
        declare_exchange(channel, &self.events_exchange, ExchangeKind::Topic).await
    }
}

/// Declares a durable exchange. Idempotent.
async fn declare_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Declares a durable queue with `args`. Idempotent while the args match.
async fn declare_durable_queue(
    channel: &Channel,
    name: &str,
    args: FieldTable,
) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
    Ok(())
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

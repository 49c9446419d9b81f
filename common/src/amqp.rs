//! RabbitMQ topology and the two operations both binaries need: connecting
//! with patience, and publishing with a broker confirm.
//!
//! Topology (names carry the configured prefix, `sluice` by default):
//! - `<p>.jobs`: durable quorum queue of [`sluice_proto::JobEnvelope`]s,
//!   dead-lettering to `<p>.dlx`, with a delivery limit as the backstop
//!   against a job that crashes every runner that takes it.
//! - `<p>.dlx` (fanout) and `<p>.jobs.dead`: where poison and exhausted
//!   jobs end up.
//! - `<p>.events`: durable topic exchange; routing key = user id; body = the
//!   encoded `event` frame. Each gateway binds its own queue to it.
//! - `<p>.control`: durable fanout exchange of [`sluice_proto::ControlMessage`]s
//!   (cancel requests); each runner binds its own queue to it.
//! - `<p>.jobs.retry.<ms>ms`: durable delay queues, one per backoff tier; a
//!   transiently failed job waits there (TTL) and is dead-lettered back into
//!   `<p>.jobs`. Named by their delay, so changing the base delay makes new
//!   queues instead of clashing with the old ones' arguments.

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

/// Longest one attempt at connecting and declaring may take before it is
/// abandoned and retried (a healthy one takes milliseconds).
pub const SETUP_ATTEMPT: Duration = Duration::from_secs(5);

/// Header carrying the publisher's wall clock (ms) on every message, so the
/// gateway can measure event delivery latency.
pub const PUBLISHED_MS_HEADER: &str = "sluice-published-ms";

/// Header counting how often a job went through a retry tier.
pub const RETRIES_HEADER: &str = "sluice-retries";
/// Header on a dead-lettered job: deliveries it had.
pub const ATTEMPTS_HEADER: &str = "sluice-attempts";
/// Header on a dead-lettered job: its last error.
pub const LAST_ERROR_HEADER: &str = "sluice-last-error";

/// An integer header of a received message, if present.
pub fn header_int(properties: &BasicProperties, name: &str) -> Option<i64> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        _ => None,
    }
}

/// A string header of a received message, if present.
pub fn header_str(properties: &BasicProperties, name: &str) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The [`PUBLISHED_MS_HEADER`] of a received message, if present.
pub fn published_ms(properties: &BasicProperties) -> Option<u64> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(PUBLISHED_MS_HEADER)? {
        AMQPValue::LongLongInt(ms) => u64::try_from(*ms).ok(),
        _ => None,
    }
}

/// Redeliveries after which the broker dead-letters a job on its own.
pub const DELIVERY_LIMIT: i32 = 20;

/// Exchange and queue names derived from the configured prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    pub jobs_queue: String,
    pub events_exchange: String,
    pub dead_exchange: String,
    pub dead_queue: String,
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
            control_exchange: format!("{prefix}.control"),
        }
    }

    /// Declares the jobs queue and its dead-letter pair. Idempotent.
    pub async fn declare_jobs(&self, channel: &Channel) -> Result<(), lapin::Error> {
        declare_exchange(channel, &self.dead_exchange, ExchangeKind::Fanout).await?;
        declare_durable_queue(channel, &self.dead_queue, quorum_args()).await?;
        channel
            .queue_bind(
                self.dead_queue.as_str().into(),
                self.dead_exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
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

/// Connects, retrying every 500 ms for up to `patience` (the broker may
/// still be starting). Channels recover on their own after a broker restart.
pub async fn connect(
    url: &str,
    name: &str,
    patience: Duration,
) -> Result<Connection, lapin::Error> {
    connect_with(url, name, patience, true).await
}

/// [`connect`], choosing whether lapin recovers the connection by itself.
/// The runner does not: it rebuilds its whole broker side when the
/// connection ends, because a consumer was seen never to resume after
/// lapin's own recovery.
pub async fn connect_with(
    url: &str,
    name: &str,
    patience: Duration,
    auto_recover: bool,
) -> Result<Connection, lapin::Error> {
    crate::retry("connecting to the broker", patience, || {
        let mut props = ConnectionProperties::default().with_connection_name(name.into());
        if auto_recover {
            // lapin's default schedule doubles the wait up to 16 times: after
            // an 18 s outage its next attempt came ~30 s after the kill, and
            // the gateway refused submissions all that while. Retry every
            // 200 ms to 1 s instead, for as long as it takes.
            props = props
                .configure_backoff(|b| {
                    b.with_min_delay(Duration::from_millis(200))
                        .with_max_delay(Duration::from_secs(1))
                        .with_max_times(usize::MAX)
                })
                .enable_auto_recover();
        }
        Connection::connect(url, props)
    })
    .await
}

/// Why a publish was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("message was unroutable (no queue bound)")]
    Unroutable,
    #[error("no confirm from the broker within {0:?}")]
    Timeout(Duration),
}

/// How a message should be stored by the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written to disk and routed only if some queue takes it (jobs).
    Persistent,
    /// Kept in memory; fine to drop when nobody listens (events, progress).
    Transient,
}

/// Publishes `body` and waits for the broker's confirm, within `timeout`.
/// The channel must be in confirm mode.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    durability: Durability,
    timeout: Duration,
) -> Result<(), PublishError> {
    publish_confirmed_with(
        channel,
        exchange,
        routing_key,
        body,
        durability,
        timeout,
        Extras::default(),
    )
    .await
}

/// Optional message properties beyond the defaults.
#[derive(Debug, Default, Clone)]
pub struct Extras {
    /// Headers added to the message (beside the published-ms one).
    pub headers: FieldTable,
    /// Per-message TTL (a delay queue dead-letters it when it expires).
    pub expiration: Option<Duration>,
}

/// [`publish_confirmed`] with extra headers and an expiration.
pub async fn publish_confirmed_with(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    durability: Durability,
    timeout: Duration,
    extras: Extras,
) -> Result<(), PublishError> {
    let persistent = durability == Durability::Persistent;
    let mut headers = extras.headers;
    headers.insert(
        PUBLISHED_MS_HEADER.into(),
        AMQPValue::LongLongInt(crate::now_ms() as i64),
    );
    let mut props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(if persistent { 2 } else { 1 })
        .with_headers(headers);
    if let Some(ttl) = extras.expiration {
        props = props.with_expiration(ttl.as_millis().to_string().into());
    }
    let publish = async {
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: persistent,
                    ..Default::default()
                },
                body,
                props,
            )
            .await?
            .await?;
        if confirm.is_nack() {
            return Err(PublishError::Nacked);
        }
        if confirm.take_message().is_some() {
            return Err(PublishError::Unroutable);
        }
        Ok(())
    };
    tokio::time::timeout(timeout, publish)
        .await
        .map_err(|_| PublishError::Timeout(timeout))?
}

/// Opens a channel in confirm mode.
pub async fn confirm_channel(conn: &Connection) -> Result<Channel, lapin::Error> {
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// A confirm-mode channel for publishing that replaces itself after a
/// failed publish.
///
/// lapin's automatic recovery reopens channels after the connection is lost
/// and restored. A channel the broker closes because of a channel error
/// (publishing to an exchange that was deleted, say) stays closed, and a
/// publish that timed out leaves its confirm unaccounted for. So after any
/// failed publish the channel is dropped and the next publish opens a new
/// one; opening a channel costs one round trip.
pub struct ConfirmChannel {
    conn: std::sync::Arc<Connection>,
    /// The channel in use; `None` once discarded, until the next publish.
    current: tokio::sync::Mutex<Option<Channel>>,
}

impl ConfirmChannel {
    /// Opens the first channel.
    pub async fn open(conn: std::sync::Arc<Connection>) -> Result<Self, lapin::Error> {
        let channel = confirm_channel(&conn).await?;
        Ok(Self {
            conn,
            current: tokio::sync::Mutex::new(Some(channel)),
        })
    }

    /// Whether publishing can be expected to work now.
    pub fn is_ready(&self) -> bool {
        self.conn.status().connected()
    }

    async fn channel(&self) -> Result<Channel, lapin::Error> {
        let mut current = self.current.lock().await;
        if let Some(channel) = current.as_ref() {
            return Ok(channel.clone());
        }
        let channel = confirm_channel(&self.conn).await?;
        *current = Some(channel.clone());
        Ok(channel)
    }

    async fn discard(&self, failed: &Channel) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| c.id() == failed.id()) {
            *current = None;
        }
    }

    /// Publishes and waits for the confirm, all within `timeout`.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        durability: Durability,
        timeout: Duration,
    ) -> Result<(), PublishError> {
        self.publish_with(
            exchange,
            routing_key,
            body,
            durability,
            timeout,
            Extras::default(),
        )
        .await
    }

    /// [`ConfirmChannel::publish`] with extra headers and an expiration.
    pub async fn publish_with(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        durability: Durability,
        timeout: Duration,
        extras: Extras,
    ) -> Result<(), PublishError> {
        let channel = tokio::time::timeout(timeout, self.channel())
            .await
            .map_err(|_| PublishError::Timeout(timeout))??;
        let outcome = publish_confirmed_with(
            &channel,
            exchange,
            routing_key,
            body,
            durability,
            timeout,
            extras,
        )
        .await;
        if outcome.is_err() {
            self.discard(&channel).await;
        }
        outcome
    }
}

/// Declares a queue of this process's own (exclusive: gone with the
/// connection), binds it to `exchange` with `routing_key`, and consumes it
/// without acknowledgements. Used for what each process must hear but need
/// not keep: a gateway's events, a runner's cancel requests. The name is
/// ours, so lapin may re-declare it after a broker restart.
pub async fn listen(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<lapin::Consumer, lapin::Error> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .basic_consume(
            queue.into(),
            queue.into(),
            lapin::options::BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

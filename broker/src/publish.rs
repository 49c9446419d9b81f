//! Publishing with a broker confirm: the only way Sluice publishes.

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};

use crate::headers::PUBLISHED_MS_HEADER;
use crate::link::Link;

/// Why a publish was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error: {0}")]
    /// The channel or connection failed.
    Broker(#[from] lapin::Error),
    #[error("broker refused the message (nack)")]
    /// The broker refused the message (nack).
    Nacked,
    #[error("message was unroutable (no queue bound)")]
    /// No queue was bound to take a mandatory message.
    Unroutable,
    #[error("no confirm from the broker within {0:?}")]
    /// No confirm came within the timeout.
    Timeout(Duration),
    #[error("{0} is {1} bytes; AMQP allows at most 255")]
    /// An exchange name or routing key too long for AMQP's short string:
    /// refused before it reaches the wire, where it would corrupt the frame
    /// (and, in a debug build, panic in the encoder).
    NameTooLong(&'static str, usize),
}

/// AMQP's short-string limit, which exchange names and routing keys obey.
pub const MAX_SHORT_STRING: usize = 255;

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
    for (what, name) in [("exchange name", exchange), ("routing key", routing_key)] {
        if name.len() > MAX_SHORT_STRING {
            return Err(PublishError::NameTooLong(what, name.len()));
        }
    }
    let persistent = durability == Durability::Persistent;
    let mut headers = extras.headers;
    headers.insert(
        PUBLISHED_MS_HEADER.into(),
        AMQPValue::LongLongInt(i64::try_from(sluice_proto::now_ms()).unwrap_or(i64::MAX)),
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
/// failed publish, and when its [`Link`] moves to a new connection.
///
/// A channel the broker closes because of a channel error (publishing to
/// an exchange that was deleted, say) stays closed, and a publish that timed
/// out leaves its confirm unaccounted for. So after any failed publish the
/// channel is dropped and the next publish opens a new one, on the link's
/// connection of the moment; opening a channel costs one round trip.
pub struct ConfirmChannel {
    link: Link,
    /// The channel in use and the link generation it was opened on; `None`
    /// once discarded, until the next publish.
    current: tokio::sync::Mutex<Option<(u64, Channel)>>,
}

impl ConfirmChannel {
    /// Opens the first channel, on the link's connection.
    pub async fn open(link: Link) -> Result<Self, lapin::Error> {
        let (generation, conn) = link.current();
        let channel = confirm_channel(&conn).await?;
        Ok(Self {
            link,
            current: tokio::sync::Mutex::new(Some((generation, channel))),
        })
    }

    /// Whether publishing can be expected to work now.
    pub fn is_ready(&self) -> bool {
        self.link.connected()
    }

    async fn channel(&self) -> Result<Channel, lapin::Error> {
        let mut current = self.current.lock().await;
        let (generation, conn) = self.link.current();
        if let Some((opened_on, channel)) = current.as_ref()
            && *opened_on == generation
        {
            return Ok(channel.clone());
        }
        let channel = confirm_channel(&conn).await?;
        *current = Some((generation, channel.clone()));
        Ok(channel)
    }

    async fn discard(&self, failed: &Channel) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|(_, c)| c.id() == failed.id()) {
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

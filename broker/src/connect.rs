//! Connecting to RabbitMQ.

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

/// Longest one attempt at connecting and declaring may take before it is
/// abandoned and retried (a healthy one takes milliseconds).
pub const SETUP_ATTEMPT: Duration = Duration::from_secs(5);

/// Whether lapin recovers a lost connection by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// lapin reconnects and re-declares channels, queues and consumers (the
    /// gateway: its sessions outlive a broker restart).
    Automatic,
    /// The connection stays dead; the owner builds its broker side again (the
    /// runner: a consumer was seen never to resume after lapin's recovery).
    Manual,
}

/// Connects once. Callers that must wait for a broker still starting wrap
/// this, together with their declarations, in a bounded retry.
pub async fn connect(
    url: &str,
    name: &str,
    recovery: Recovery,
) -> Result<Connection, lapin::Error> {
    let mut uri: lapin::uri::AMQPUri = url.parse().map_err(|e: String| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("amqp url: {e}"))
    })?;
    // RabbitMQ proposes 60 s, after which a runner that vanished keeps its
    // deliveries for up to two minutes. With 5 s the broker gives them to
    // another runner about 10 s after the last sign of life. A URL's own
    // `?heartbeat=` wins.
    uri.query.heartbeat.get_or_insert(DEFAULT_HEARTBEAT_SECS);
    let mut props = ConnectionProperties::default().with_connection_name(name.into());
    if recovery == Recovery::Automatic {
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
    Connection::connect_uri(uri, props).await
}

/// The AMQP heartbeat asked for when the URL names none, in seconds.
pub const DEFAULT_HEARTBEAT_SECS: u16 = 5;

/// Longest [`close`] waits for the broker's answer.
pub const CLOSE_PATIENCE: Duration = Duration::from_secs(2);

/// Closes `conn` (reply code 200, `reason`), waiting at most
/// [`CLOSE_PATIENCE`]: lapin's close was seen, now and then, never to
/// return after a channel close that raced it, which held a stopping
/// runner forever. The socket goes with the connection either way.
pub async fn close(conn: &Connection, reason: &str) {
    match tokio::time::timeout(CLOSE_PATIENCE, conn.close(200, reason.into())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "closing the broker connection failed"),
        Err(_) => tracing::warn!("the broker did not answer the connection close in time"),
    }
}

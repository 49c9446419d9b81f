//! A connection that `LISTEN`s on one channel, outside the pool (a pooled
//! connection hands out no notifications): the runners' message relay is
//! woken by it as soon as a publication commits.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use crate::config::DatabaseConfig;
use crate::pool::{StoreError, session_config};

/// Notifications of one channel, coalesced: many commits between two
/// [`Listener::notified`] calls wake it once.
pub struct Listener {
    woken: mpsc::Receiver<()>,
    /// Kept so the connection stays open; dropping it ends the listening.
    _client: tokio_postgres::Client,
}

impl Listener {
    /// Connects with the pool's settings and listens on `channel`, a plain
    /// identifier (callers build it from the checked schema name).
    pub async fn connect(config: &DatabaseConfig, channel: &str) -> Result<Self, StoreError> {
        let (mut pg, tls) = session_config(config)?;
        pg.connect_timeout(Duration::from_secs(5));
        let (client, mut connection) = pg.connect(tls).await?;
        let (wake, woken) = mpsc::channel(1);
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(|cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    // Full: a wake-up is pending already, which is enough.
                    Ok(AsyncMessage::Notification(_)) => drop(wake.try_send(())),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the listening database connection failed");
                        break;
                    }
                }
            }
            // Dropping `wake` ends `notified` with `false`.
        });
        client.batch_execute(&format!("LISTEN {channel}")).await?;
        Ok(Self {
            woken,
            _client: client,
        })
    }

    /// Waits for the next notification; `false` once the connection is
    /// gone (the caller connects again and polls meanwhile).
    pub async fn notified(&mut self) -> bool {
        self.woken.recv().await.is_some()
    }
}

//! The `[amqp]` section: where the broker is and how Sluice names things on it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// RabbitMQ connection and naming.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpConfig {
    /// AMQP 0-9-1 URL, or a cluster's nodes as several URLs separated by
    /// commas (tried in turn; see [`crate::connect`]).
    pub url: String,
    /// Prefix of every exchange and queue name, so deployments can share a vhost.
    pub prefix: String,
    /// How long a publish waits for the broker's confirm before answering `unavailable`.
    pub publish_timeout_ms: u64,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            url: "amqp://sluice:sluice@127.0.0.1:25682/%2f".into(),
            prefix: "sluice".into(),
            publish_timeout_ms: 5_000,
        }
    }
}

/// The longest `amqp.publish_timeout_ms` accepted: one minute.
pub const MAX_PUBLISH_TIMEOUT_MS: u64 = 60_000;

impl AmqpConfig {
    /// Checks the section; the error names the bad setting and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.prefix.is_empty() || self.prefix.len() > 100 {
            return Err(("amqp.prefix", "must be 1 to 100 characters".into()));
        }
        if let Err(e) = crate::connect::nodes(&self.url) {
            return Err(("amqp.url", format!("not an AMQP URL: {e}")));
        }
        if !(1..=MAX_PUBLISH_TIMEOUT_MS).contains(&self.publish_timeout_ms) {
            return Err((
                "amqp.publish_timeout_ms",
                format!("must be 1 to {MAX_PUBLISH_TIMEOUT_MS}"),
            ));
        }
        Ok(())
    }

    /// `publish_timeout_ms` as a duration.
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }
}

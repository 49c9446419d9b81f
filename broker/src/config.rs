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
    /// For `amqps://` nodes: a PEM file of the CA certificate(s) to trust
    /// instead of the system's roots. Empty: the system's roots.
    pub tls_ca_file: String,
    /// For `amqps://` nodes: a PEM file of the client certificate (and any
    /// intermediates) shown to the broker, for brokers that authenticate
    /// clients by certificate. Set with `tls_client_key_file` or not at all.
    pub tls_client_cert_file: String,
    /// The unencrypted PEM private key of `tls_client_cert_file`.
    pub tls_client_key_file: String,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            url: "amqp://sluice:sluice@127.0.0.1:25682/%2f".into(),
            prefix: "sluice".into(),
            publish_timeout_ms: 5_000,
            tls_ca_file: String::new(),
            tls_client_cert_file: String::new(),
            tls_client_key_file: String::new(),
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
        let nodes = crate::connect::nodes(&self.url)
            .map_err(|e| ("amqp.url", format!("not an AMQP URL: {e}")))?;
        if !(1..=MAX_PUBLISH_TIMEOUT_MS).contains(&self.publish_timeout_ms) {
            return Err((
                "amqp.publish_timeout_ms",
                format!("must be 1 to {MAX_PUBLISH_TIMEOUT_MS}"),
            ));
        }
        self.validate_tls(&nodes)
    }

    /// The TLS settings: used only by `amqps://` nodes, so set without one
    /// they are a mistake (the operator believes in TLS that is not there);
    /// with one, the files are read now, so a bad one stops the start.
    fn validate_tls(&self, nodes: &[lapin::uri::AMQPUri]) -> Result<(), (&'static str, String)> {
        if !nodes.iter().any(crate::connect::is_tls) {
            let set = [
                ("amqp.tls_ca_file", &self.tls_ca_file),
                ("amqp.tls_client_cert_file", &self.tls_client_cert_file),
                ("amqp.tls_client_key_file", &self.tls_client_key_file),
            ];
            return match set.into_iter().find(|(_, value)| !value.is_empty()) {
                Some((setting, _)) => Err((
                    setting,
                    "is set, but amqp.url names no amqps:// node, so it would not be used".into(),
                )),
                None => Ok(()),
            };
        }
        crate::tls::client_config(self).map(drop)
    }

    /// `publish_timeout_ms` as a duration.
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }
}

//! Plumbing shared by the gateway and the runner: one typed configuration,
//! the PostgreSQL pool, schema migrations and event store, and the AMQP
//! topology. Neither binary runs the other's work; they only share these.

pub mod amqp;
pub mod config;
pub mod db;
pub mod events;
pub mod telemetry;

pub use config::Config;

/// Milliseconds since the Unix epoch, for envelopes and latency figures.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

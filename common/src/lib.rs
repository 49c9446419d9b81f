//! Plumbing shared by the gateway and the runner: one typed configuration,
//! the PostgreSQL pool, schema migrations and event store, and the AMQP
//! topology. Neither binary runs the other's work; they only share these.

pub mod amqp;
pub mod config;
pub mod db;
pub mod events;
pub mod lifecycle;
pub mod metrics;
pub mod publisher;
pub mod telemetry;

pub use config::Config;

/// Milliseconds since the Unix epoch, for envelopes and latency figures.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs `attempt` until it succeeds, every 500 ms for up to `patience`,
/// logging each failure with `what`. For start-up, when a dependency may
/// still be starting.
pub async fn retry<T, E, F, Fut>(
    what: &str,
    patience: std::time::Duration,
    mut attempt: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "{what} failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}

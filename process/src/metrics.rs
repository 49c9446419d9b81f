//! The Prometheus recorder every binary installs, and the gauges of the
//! services a process depends on. Each binary names and describes its own
//! metrics (`gateway/src/metrics.rs`, `jobs/src/metrics.rs`).

use std::net::SocketAddr;

use metrics::describe_gauge;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Pooled PostgreSQL connections open.
pub const DB_POOL_SIZE: &str = "sluice_db_pool_connections";
/// Pooled PostgreSQL connections idle.
pub const DB_POOL_AVAILABLE: &str = "sluice_db_pool_available";
/// Tasks waiting for a pooled connection.
pub const DB_POOL_WAITING: &str = "sluice_db_pool_waiting";
/// 1 while the RabbitMQ connection is up.
pub const BROKER_CONNECTED: &str = "sluice_broker_connected";

/// Histogram buckets (seconds): from a fast event delivery to a long job.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
    300.0,
];

fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
}

/// Installs the recorder and returns the handle that renders it (the
/// gateway serves it on `GET /metrics`). `describe` names the binary's own
/// metrics.
pub fn install_recorder(describe: fn()) -> Result<PrometheusHandle, BuildError> {
    describe_dependencies();
    describe();
    builder()?.install_recorder()
}

/// Installs the recorder and serves it on `addr` (the runner has no other
/// HTTP port). Must run inside a tokio runtime.
pub fn install_listener(addr: SocketAddr, describe: fn()) -> Result<(), BuildError> {
    describe_dependencies();
    describe();
    builder()?.with_http_listener(addr).install()
}

fn describe_dependencies() {
    describe_gauge!(DB_POOL_SIZE, "pooled PostgreSQL connections open");
    describe_gauge!(DB_POOL_AVAILABLE, "pooled connections idle");
    describe_gauge!(DB_POOL_WAITING, "tasks waiting for a pooled connection");
    describe_gauge!(BROKER_CONNECTED, "1 while the RabbitMQ connection is up");
}

/// Sets the pool and broker gauges from their current state.
pub fn record_dependencies(pool: &deadpool_postgres::Pool, broker_connected: bool) {
    let status = pool.status();
    metrics::gauge!(DB_POOL_SIZE).set(status.size as f64);
    metrics::gauge!(DB_POOL_AVAILABLE).set(status.available as f64);
    metrics::gauge!(DB_POOL_WAITING).set(status.waiting as f64);
    metrics::gauge!(BROKER_CONNECTED).set(if broker_connected { 1.0 } else { 0.0 });
}

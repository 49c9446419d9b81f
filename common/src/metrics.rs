//! Metric names (all in one place, so dashboards have one reference) and
//! the Prometheus recorder both binaries install.

use std::net::SocketAddr;

use metrics::{describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

pub const SESSIONS_OPEN: &str = "sluice_sessions_open";
pub const SESSIONS_OPENED: &str = "sluice_sessions_opened_total";
pub const SESSIONS_CLOSED: &str = "sluice_sessions_closed_total";
pub const FRAMES_IN: &str = "sluice_frames_in_total";
pub const FRAMES_OUT: &str = "sluice_frames_out_total";
pub const SLOW_CLIENT_EVICTIONS: &str = "sluice_slow_client_evictions_total";
pub const JOBS_SUBMITTED: &str = "sluice_jobs_submitted_total";
pub const JOBS_ACCEPTED: &str = "sluice_jobs_accepted_total";
pub const JOBS_REJECTED: &str = "sluice_jobs_rejected_total";
pub const EVENT_DELIVERY_SECONDS: &str = "sluice_event_delivery_seconds";
pub const JOBS_FINISHED: &str = "sluice_jobs_finished_total";
pub const JOB_DURATION_SECONDS: &str = "sluice_job_duration_seconds";
pub const JOBS_IN_FLIGHT: &str = "sluice_jobs_in_flight";
pub const DB_POOL_SIZE: &str = "sluice_db_pool_connections";
pub const DB_POOL_AVAILABLE: &str = "sluice_db_pool_available";
pub const DB_POOL_WAITING: &str = "sluice_db_pool_waiting";
pub const BROKER_CONNECTED: &str = "sluice_broker_connected";

/// Histogram buckets (seconds): from a fast event delivery to a long job.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
    300.0,
];

fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
}

/// Installs the recorder; the gateway renders it on `GET /metrics`.
pub fn install_recorder() -> Result<PrometheusHandle, BuildError> {
    describe();
    builder()?.install_recorder()
}

/// Installs the recorder and serves it on `addr` (the runner has no other
/// HTTP port). Must run inside a tokio runtime.
pub fn install_listener(addr: SocketAddr) -> Result<(), BuildError> {
    describe();
    builder()?.with_http_listener(addr).install()
}

fn describe() {
    describe_gauge!(SESSIONS_OPEN, "WebSocket sessions open on this gateway");
    describe_counter!(SESSIONS_OPENED, "sessions that completed hello");
    describe_counter!(
        SESSIONS_CLOSED,
        "sessions ended, by close code (`gone`: the peer vanished)"
    );
    describe_counter!(FRAMES_IN, "text frames received from clients");
    describe_counter!(FRAMES_OUT, "text frames sent to clients");
    describe_counter!(
        SLOW_CLIENT_EVICTIONS,
        "sessions closed with 1013 because their event queue overflowed"
    );
    describe_counter!(JOBS_SUBMITTED, "jobs submitted (WebSocket and HTTP)");
    describe_counter!(JOBS_ACCEPTED, "jobs durably queued (broker confirm)");
    describe_counter!(JOBS_REJECTED, "submissions refused, by reason");
    describe_histogram!(
        EVENT_DELIVERY_SECONDS,
        "from the runner's publish after commit to the socket write"
    );
    describe_counter!(JOBS_FINISHED, "job attempts ended, by kind and outcome");
    describe_histogram!(JOB_DURATION_SECONDS, "job run time, by kind");
    describe_gauge!(JOBS_IN_FLIGHT, "jobs this runner holds");
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

//! The Prometheus recorder every binary installs, and the gauges of the
//! services a process depends on. Each binary names and describes its own
//! metrics (`gateway/src/metrics.rs`, `jobs/src/metrics.rs`).

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

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

/// The recorder this process installed, if any.
///
/// The `metrics` facade has one recorder per process, and a second
/// `set_global_recorder` fails. So the first install keeps its handle here
/// and later ones share it: a test process may start two gateways, or a
/// gateway and a runner, and every one of them renders the one registry
/// (their `/metrics` show the process's totals, and the dependency gauges
/// of whichever set them last). A binary installs once, as before.
/// A plain mutex: held only while installing or cloning the handle.
static RECORDER: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Why the metrics recorder could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The exporter could not be built, or another recorder than Sluice's
    /// is installed.
    #[error("installing the metrics recorder: {0}")]
    Build(#[from] BuildError),
    /// [`install_listener`] after this process already installed its
    /// recorder: the exporter's listener can only serve a recorder it
    /// installs itself.
    #[error(
        "this process already has a metrics recorder, so it cannot serve another on \
         runner.metrics_listen (set it empty when starting a runner in-process)"
    )]
    AlreadyInstalled,
}

/// Returns the process's recorder, installing it on the first call; the
/// handle renders it (the gateway serves it on `GET /metrics`). `describe`
/// names the binary's own metrics.
pub fn install_recorder(describe: fn()) -> Result<PrometheusHandle, MetricsError> {
    let mut installed = RECORDER.lock().unwrap_or_else(PoisonError::into_inner);
    let handle = match &*installed {
        Some(handle) => handle.clone(),
        None => {
            let recorder = builder()?.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).map_err(BuildError::from)?;
            installed.insert(handle).clone()
        }
    };
    describe_all(describe);
    Ok(handle)
}

/// Installs the process's recorder and serves it on `addr` (the runner has
/// no other HTTP port). Must run inside a tokio runtime, and must be the
/// process's first install: [`MetricsError::AlreadyInstalled`] otherwise.
/// Later [`install_recorder`] calls share this recorder.
pub fn install_listener(addr: SocketAddr, describe: fn()) -> Result<(), MetricsError> {
    let mut installed = RECORDER.lock().unwrap_or_else(PoisonError::into_inner);
    if installed.is_some() {
        return Err(MetricsError::AlreadyInstalled);
    }
    let (recorder, exporter) = builder()?.with_http_listener(addr).build()?;
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(BuildError::from)?;
    tokio::spawn(exporter);
    *installed = Some(handle);
    describe_all(describe);
    Ok(())
}

/// Describes the dependency gauges and the binary's own metrics. After the
/// install: a description given before any recorder exists is lost.
fn describe_all(describe: fn()) {
    describe_dependencies();
    describe();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn describe_one() {
        metrics::describe_counter!("sluice_test_total", "a counter of the test");
    }

    #[tokio::test]
    async fn a_second_install_shares_the_recorder_and_descriptions_are_kept() {
        let first = install_recorder(describe_one).unwrap();
        let second = install_recorder(|| {}).unwrap();
        metrics::counter!("sluice_test_total").increment(2);
        for handle in [&first, &second] {
            let text = handle.render();
            assert!(text.contains("sluice_test_total 2"), "{text}");
            assert!(
                text.contains("# HELP sluice_test_total a counter of the test"),
                "{text}"
            );
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        assert!(matches!(
            install_listener(addr, || {}),
            Err(MetricsError::AlreadyInstalled)
        ));
    }
}

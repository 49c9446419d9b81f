//! What every request and session of this gateway shares, and why.

use std::sync::Arc;

use crate::config::Config;
use deadpool_postgres::Pool;
use sluice_outbox::Publisher;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Verifier;
use crate::registry::Registry;

/// Shared by the HTTP handlers and every session; immutable but for the
/// registry (its own locking) and the shutdown token.
pub struct AppState {
    /// The validated configuration.
    pub config: Config,
    /// Checks tokens for `hello`, the upgrade header and the HTTP API.
    pub verifier: Verifier,
    /// Live sessions by user, for event fan-out.
    pub registry: Arc<Registry>,
    /// New connections per client address.
    pub connect_limiter: crate::limits::ConnectLimiter,
    /// Sockets upgraded but not yet past `hello`, capped per process and
    /// per address.
    pub unauthenticated: Arc<crate::limits::Unauthenticated>,
    /// Submissions per user per second, WebSocket and HTTP alike.
    pub submit_quota: crate::quota::SubmitQuota,
    /// Publishes what the gateway commits: submitted jobs, and the event of
    /// a queued job it cancelled. With a confirm, out of the outbox.
    pub outbox: Publisher,
    /// Sends cancel requests to the runners.
    pub control: sluice_broker::ControlPublisher,
    /// The kinds the runners of this prefix serve, with their args schemas.
    pub kinds: Arc<crate::kinds::Kinds>,
    /// Reads of the event log (welcome, replay, gap reads).
    pub pool: Pool,
    /// The broker connection in use, watched by `/readyz`; replaced by
    /// [`crate::broker::keep_events_flowing`] (its one writer) after a loss.
    pub amqp: sluice_broker::Link,
    /// Cancelled when the gateway drains; sessions close with 1012.
    pub shutdown: CancellationToken,
    /// Bumped after the broker connection comes back; every session then
    /// catches up on events it may have missed meanwhile.
    pub broker_reconnects: tokio::sync::watch::Sender<u64>,
    /// Whether the database answered the last check (once a second, by
    /// [`crate::watch_database`], its one writer): `/readyz` reads it
    /// instead of taking a connection per request.
    pub database_up: std::sync::atomic::AtomicBool,
    /// Every session task, so shutdown can wait for them to finish.
    pub sessions: TaskTracker,
    /// Buffer sizes and limits of each WebSocket.
    pub ws_config: WebSocketConfig,
    /// Renders the metrics on `GET /metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Metric handles touched per frame, resolved once (the `counter!`
    /// macro looks its metric up in the recorder on every call).
    pub per_frame: PerFrameMetrics,
}

/// Handles of the metrics updated for every frame.
pub struct PerFrameMetrics {
    /// Text frames received.
    pub frames_in: metrics::Counter,
    /// Text frames sent.
    pub frames_out: metrics::Counter,
    /// From the runner's publish to the socket write.
    pub event_delivery: metrics::Histogram,
}

impl PerFrameMetrics {
    /// Resolves the handles from the installed recorder.
    pub fn new() -> Self {
        use crate::metrics as m;
        Self {
            frames_in: metrics::counter!(m::FRAMES_IN),
            frames_out: metrics::counter!(m::FRAMES_OUT),
            event_delivery: metrics::histogram!(m::EVENT_DELIVERY_SECONDS),
        }
    }
}

impl Default for PerFrameMetrics {
    fn default() -> Self {
        Self::new()
    }
}

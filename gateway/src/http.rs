//! The HTTP surface: the WebSocket route and the health probes, plus the
//! one JSON error shape every route uses.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use sluice_proto::ErrorCode;

use crate::api::error::ApiError;
use crate::state::AppState;
use crate::upgrade::ws_upgrade;

/// The gateway's routes.
pub fn router(state: Arc<AppState>) -> Router {
    let (api, mut openapi) = crate::api::router();
    openapi.paths.paths.extend(probes_doc().paths.paths);
    let openapi = Arc::new(openapi);
    Router::new()
        .route("/v1/ws", get(ws_upgrade))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route(
            "/v1/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move { Json(openapi.as_ref().clone()) }
            }),
        )
        .merge(api)
        .merge(crate::demo::router(state.config.gateway.dev_mode))
        .fallback(no_route)
        .with_state(state)
}

/// Prometheus text format; gauges of sessions, pool and broker are read now.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
async fn metrics_text(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    use crate::metrics as m;
    metrics::gauge!(m::SESSIONS_OPEN).set(state.registry.session_count() as f64);
    metrics::counter!(m::SLOW_CLIENT_EVICTIONS).absolute(state.registry.evicted_count());
    sluice_process::metrics::record_dependencies(&state.pool, state.amqp.connected());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, readyz, metrics_text))]
struct ProbesDoc;

fn probes_doc() -> utoipa::openapi::OpenApi {
    <ProbesDoc as utoipa::OpenApi>::openapi()
}

async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NoRoute(format!("{method} {}", uri.path()))
}

/// `{"error": {"code", "message"}}` with `status`.
pub fn error_response(status: StatusCode, code: ErrorCode, message: &str) -> impl IntoResponse {
    (
        status,
        Json(
            json!({ "error": { "code": code.as_str(), "message": sluice_proto::bounded_message(message.to_owned()) } }),
        ),
    )
}

/// 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "the process is up")))]
async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, Json(json!({ "status": "ok" })))
}

/// 200 when the broker and the database answer and the gateway is not draining.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "ready: broker and database reachable, not draining"),
        (status = 503, description = "not ready; the body says why"),
    ))]
async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let draining = state.shutdown.is_cancelled();
    let broker = state.amqp.connected() && state.outbox.is_ready() && state.control.is_ready();
    // Checked once a second by the gateway, not per request.
    let database = state.database_up.load(std::sync::atomic::Ordering::Relaxed);
    let ready = !draining && broker && database;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "ready": ready,
            "draining": draining,
            "broker": broker,
            "database": database,
            "sessions": state.registry.session_count(),
        })),
    )
}

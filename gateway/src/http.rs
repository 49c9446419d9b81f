//! The HTTP surface: the WebSocket route and the health probes, plus the
//! one JSON error shape every route uses.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::state::AppState;
use crate::upgrade::ws_upgrade;

/// The gateway's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/ws", get(ws_upgrade))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// `{"error": {"code", "message"}}` with `status`.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> impl IntoResponse {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, Json(json!({ "status": "ok" })))
}

/// 200 when the broker and the database answer and the gateway is not draining.
async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let draining = state.shutdown.is_cancelled();
    let broker = state.amqp.status().connected();
    let database = tokio::time::timeout(Duration::from_secs(1), async {
        let client = state.pool.get().await.ok()?;
        client.simple_query("SELECT 1").await.ok()
    })
    .await
    .ok()
    .flatten()
    .is_some();
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

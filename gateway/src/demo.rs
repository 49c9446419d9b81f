//! Development mode only (`gateway.dev_mode`): the live demo page, the
//! browser client it loads, and a token endpoint that signs a token for any
//! user id. With dev mode off none of these routes exist (they answer 404
//! like any unknown path).
//!
//! The files are embedded in the binary. The client is the committed build
//! of `proto/js` (`proto/js/dist/sluice-client.js`); `npm test` there fails
//! when that build is stale.
//!
//! Every URL the page uses is relative (`sluice-client.js`, `../v1/ws`,
//! `../v1/dev/token`), so it works behind a proxy, under a path prefix too.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use sluice_proto::MAX_USER_BYTES;

use crate::state::AppState;

/// The page.
const INDEX_HTML: &str = include_str!("../demo/index.html");
/// The page's script.
const APP_JS: &str = include_str!("../demo/app.js");
/// The browser client, as built by `npm run build` in `proto/js`.
const CLIENT_JS: &str = include_str!("../../proto/js/dist/sluice-client.js");

/// Lifetime of a development token; the client fetches a new one on every
/// reconnect.
const DEV_TOKEN_TTL_SECS: u64 = 3600;

/// The demo routes when `dev_mode` is on; no routes otherwise.
pub fn router(dev_mode: bool) -> Router<Arc<AppState>> {
    if !dev_mode {
        return Router::new();
    }
    Router::new()
        .route("/demo", get(|| async { Redirect::permanent("demo/") }))
        .route(
            "/demo/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route("/demo/app.js", get(|| async { asset(JS, APP_JS) }))
        .route(
            "/demo/sluice-client.js",
            get(|| async { asset(JS, CLIENT_JS) }),
        )
        .route("/v1/dev/token", post(dev_token))
}

const JS: &str = "text/javascript; charset=utf-8";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `POST /v1/dev/token` body.
#[derive(Debug, Deserialize)]
struct TokenRequest {
    user: String,
    /// A shorter lifetime than the default, to watch token refresh at work
    /// (clamped to [`MIN_DEV_TOKEN_TTL_SECS`]..=[`DEV_TOKEN_TTL_SECS`]).
    ttl_secs: Option<u64>,
}

/// The shortest lifetime a development token may ask for.
const MIN_DEV_TOKEN_TTL_SECS: u64 = 3;

/// Signs a token for `user` with the configured secret (and audience).
async fn dev_token(
    State(state): State<Arc<AppState>>,
    body: Result<Json<TokenRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(request)) = body else {
        return crate::http::error_response(
            StatusCode::BAD_REQUEST,
            sluice_proto::ErrorCode::BadRequest,
            "expected {\"user\": \"<id>\"}",
        )
        .into_response();
    };
    let user = request.user.trim();
    if user.is_empty() || user.len() > MAX_USER_BYTES {
        return crate::http::error_response(
            StatusCode::BAD_REQUEST,
            sluice_proto::ErrorCode::BadRequest,
            "user must be 1 to 200 bytes",
        )
        .into_response();
    }
    let ttl = request.ttl_secs.map_or(DEV_TOKEN_TTL_SECS, |ttl| {
        ttl.clamp(MIN_DEV_TOKEN_TTL_SECS, DEV_TOKEN_TTL_SECS)
    });
    match crate::auth::mint(&state.config.auth, user, ttl) {
        Ok(token) => {
            tracing::info!(user, ttl_secs = ttl, "dev mode: minted a token");
            Json(json!({ "token": token, "user": user, "expires_in": ttl })).into_response()
        }
        Err(e) => crate::http::error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            sluice_proto::ErrorCode::Internal,
            &format!("signing failed: {e}"),
        )
        .into_response(),
    }
}

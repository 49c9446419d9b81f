//! Reading a request body with the gateway's limits: refused early when
//! `Content-Length` is over the limit, cut off when the bytes are, and
//! given `gateway.http_body_timeout_ms` to arrive however they trickle.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};

use super::error::ApiError;
use crate::state::AppState;

/// The whole body, at most `gateway.max_message_bytes`.
pub async fn read(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.config.gateway.max_message_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::TooLarge(limit));
    }
    let deadline = Duration::from_millis(state.config.gateway.http_body_timeout_ms);
    tokio::time::timeout(deadline, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::BodyTimeout(deadline))?
        .map_err(|_| ApiError::TooLarge(limit))
}

/// The body as UTF-8 text.
pub fn text(bytes: &Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(bytes).map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))
}

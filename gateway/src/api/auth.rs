//! `Authorization: Bearer <jwt>` for the HTTP API.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::auth;
use crate::state::AppState;

/// The authenticated user of a request.
pub struct AuthUser(pub String);

impl FromRequestParts<Arc<AppState>> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization header".into()))?;
        let token = value.to_str().ok().and_then(auth::bearer).ok_or_else(|| {
            ApiError::Unauthorized("expected `Authorization: Bearer <jwt>`".into())
        })?;
        let claims = state
            .verifier
            .verify(token)
            .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
        Ok(AuthUser(claims.sub))
    }
}

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
        Ok(AuthUser(verified(parts, state)?.sub))
    }
}

/// A request made with a service token that may publish to users (its
/// `scope` lists `sluice:publish`); holds the service's name (`sub`).
pub struct Publisher(pub String);

impl FromRequestParts<Arc<AppState>> for Publisher {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let claims = verified(parts, state)?;
        if !claims.has_scope(sluice_proto::PUBLISH_SCOPE) {
            return Err(ApiError::Forbidden(format!(
                "publishing needs a service token whose scope lists `{}`",
                sluice_proto::PUBLISH_SCOPE
            )));
        }
        Ok(Publisher(claims.sub))
    }
}

/// The claims of the request's bearer token, checked.
fn verified(parts: &Parts, state: &AppState) -> Result<auth::Claims, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization header".into()))?;
    let token =
        value.to_str().ok().and_then(auth::bearer).ok_or_else(|| {
            ApiError::Unauthorized("expected `Authorization: Bearer <jwt>`".into())
        })?;
    state
        .verifier
        .verify(token)
        .map_err(|e| ApiError::Unauthorized(e.to_string()))
}

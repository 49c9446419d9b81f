//! `GET /v1/kinds`: the job kinds this deployment serves, each with the
//! JSON Schema its args are validated against, so a client (or a type
//! generator) knows what it may submit.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::AuthUser;
use super::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// One served kind.
#[derive(Debug, Serialize, ToSchema)]
pub struct Kind {
    /// The kind's name, `[a-z][a-z0-9_]{0,63}`.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema (draft 2020-12) of its `args`.
    #[schema(value_type = Object)]
    pub args_schema: serde_json::Value,
    /// Time limit of one attempt, in milliseconds.
    pub timeout_ms: u64,
}

/// `GET /v1/kinds` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct KindList {
    /// By name.
    pub kinds: Vec<Kind>,
}

/// The kinds the runners of this deployment serve now.
#[utoipa::path(get, path = "/v1/kinds", tag = "jobs",
    responses(
        (status = 200, description = "the served kinds, by name", body = KindList),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 503, description = "the kinds have not been read from the database yet", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_kinds(
    State(state): State<Arc<AppState>>,
    AuthUser(_user): AuthUser,
) -> Result<Json<KindList>, ApiError> {
    let kinds = state.kinds.list_fresh(&state.pool).await.ok_or_else(|| {
        ApiError::Unavailable("the served kinds have not been read from the database yet".into())
    })?;
    Ok(Json(KindList {
        kinds: kinds
            .into_iter()
            .map(|k| Kind {
                name: k.name.into(),
                description: k.description,
                args_schema: k.args_schema,
                timeout_ms: k.timeout_ms,
            })
            .collect(),
    }))
}

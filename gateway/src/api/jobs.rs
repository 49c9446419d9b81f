//! `/v1/jobs`: create, run, read, list and delete jobs over HTTP, for
//! services and scripts that do not hold a socket. Jobs created here send
//! their events to the user's WebSocket sessions like any other.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sluice_proto::KindName;
use sluice_store::JobStatus;
use sluice_store::job_keys::JobKey;
use sluice_store::jobs::{self as lifecycle, JobRecord};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::AuthUser;
use super::body;
use super::error::{ApiError, ErrorBody};
use crate::jobs::{self, Cancelled, Recorded};
use crate::state::AppState;

/// Listing size when `limit` is not given.
const DEFAULT_LIMIT: i64 = 50;
/// Largest listing; bigger `limit`s are capped to it.
const MAX_LIMIT: i64 = 500;

/// `POST /v1/jobs` body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the body; it is parsed with raw args by `CreateWire`
pub struct CreateJob {
    /// A kind this deployment serves (`GET /v1/kinds`).
    kind: String,
    /// The kind's args (see docs/protocol.md).
    #[schema(value_type = Object)]
    args: serde_json::Value,
    /// Queue it now (default) or keep it `created` until `POST /v1/jobs/{id}/run`.
    run: Option<bool>,
}

#[derive(Deserialize)]
struct CreateWire<'a> {
    kind: String,
    #[serde(borrow)]
    args: Option<&'a RawValue>,
    run: Option<bool>,
}

/// A job's id and status after a command.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobRef {
    /// The job id.
    pub id: Uuid,
    /// `created`, `queued`, `running`, `done`, `failed` or `cancelled`.
    pub status: String,
    /// Present on `DELETE` of a job that had not ended (`status` is what it
    /// was): the cancel is recorded and a `cancelled` event follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<bool>,
}

/// A job as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct Job {
    /// The job id (UUIDv7).
    pub id: Uuid,
    /// Its kind, as submitted.
    pub kind: String,
    /// `created`, `queued`, `running`, `done`, `failed` or `cancelled`.
    pub status: String,
    #[schema(value_type = Option<Object>)]
    /// Last reported progress, if any.
    pub progress: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    /// The result of a `done` job.
    pub result: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    /// The error of a `failed` job.
    pub error: Option<serde_json::Value>,
    /// When it was recorded.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<JobRecord> for Job {
    fn from(v: JobRecord) -> Self {
        Self {
            id: v.id,
            kind: v.kind,
            status: v.status.as_str().to_owned(),
            progress: v.progress,
            result: v.result,
            error: v.error,
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

/// `GET /v1/jobs` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// The jobs, newest first.
    pub jobs: Vec<Job>,
}

/// `GET /v1/jobs` query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only jobs with this status.
    status: Option<String>,
    /// At most this many (default 50, capped at 500).
    limit: Option<String>,
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::BadId(id.chars().take(64).collect()))
}

/// Create a job, queued at once unless `run` is false.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body = CreateJob,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1 to 128 printable ASCII characters: a repeat with the same key and body within 24 h answers 200 with the first job and creates nothing")),
    responses(
        (status = 201, description = "created (and queued unless run is false)", body = JobRef,
            headers(("Location" = String, description = "the job's URL"))),
        (status = 200, description = "a repeat of an earlier request with the same Idempotency-Key and body: its job, nothing created", body = JobRef,
            headers(("Location" = String, description = "the job's URL"))),
        (status = 400, description = "bad_request (also a malformed Idempotency-Key), unknown_kind or bad_args", body = ErrorBody),
        (status = 422, description = "idempotency_mismatch: the Idempotency-Key was used with a different body in the last 24 hours", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 413, description = "body over max_message_bytes", body = ErrorBody),
        (status = 503, description = "broker or database unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create_job(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    request: Body,
) -> Result<impl IntoResponse, ApiError> {
    let user_key: std::sync::Arc<str> = std::sync::Arc::from(user.as_str());
    if let Err(wait) = state.submit_quota.check(&user_key) {
        jobs::count_rejected("rate_limited");
        return Err(ApiError::RateLimited(crate::quota::retry_after_ms(wait)));
    }
    let key = idempotency_key(&headers)?;
    let bytes = body::read(&state, &headers, request).await?;
    let text = body::text(&bytes)?;
    let key = key.map(|key| JobKey { key, body: &bytes });
    let wire: CreateWire<'_> = serde_json::from_str(text)
        .map_err(|e| ApiError::BadRequest(format!("body must be {{kind, args, run}}: {e}")))?;
    let kind = KindName::parse(&wire.kind).map_err(|_| {
        jobs::count_rejected("unknown_kind");
        ApiError::UnknownKind(wire.kind.clone())
    })?;
    let args = wire.args.ok_or_else(|| {
        jobs::count_rejected("bad_args");
        ApiError::BadArgs("`args` is missing".into())
    })?;

    let job_id = Uuid::now_v7();
    let (recorded, status) = if wire.run.unwrap_or(true) {
        let recorded = jobs::submit(&state, job_id, &user, &kind, args, key).await?;
        (recorded, JobStatus::Queued)
    } else {
        let recorded = jobs::create(&state, job_id, &user, &kind, args, key).await?;
        (recorded, JobStatus::Created)
    };
    let (code, id, status) = match recorded {
        Recorded::New => (StatusCode::CREATED, job_id, status),
        Recorded::Earlier { job_id, status } => (StatusCode::OK, job_id, status),
    };
    Ok((
        code,
        [(header::LOCATION, format!("/v1/jobs/{id}"))],
        Json(JobRef {
            id,
            status: status.to_string(),
            cancel_requested: None,
        }),
    ))
}

/// The `Idempotency-Key` header, if sent: 1 to 128 printable ASCII
/// characters (no spaces), as for publishing.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if sluice_store::publish::valid_key(key) => Ok(Some(key)),
        _ => Err(ApiError::BadRequest(
            "Idempotency-Key must be 1 to 128 printable ASCII characters without spaces".into(),
        )),
    }
}

/// Queue a job created with `run: false`.
#[utoipa::path(post, path = "/v1/jobs/{id}/run", tag = "jobs",
    params(("id" = String, Path, description = "job id (UUID)")),
    responses(
        (status = 202, description = "queued", body = JobRef),
        (status = 400, description = "bad_id", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 404, description = "no such job of this user", body = ErrorBody),
        (status = 409, description = "already queued or finished", body = ErrorBody),
        (status = 503, description = "broker or database unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn run_job(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let job_id = parse_id(&id)?;
    jobs::run_created(&state, &user, job_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(JobRef {
            id: job_id,
            status: "queued".into(),
            cancel_requested: None,
        }),
    ))
}

/// Read one of your jobs.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "job id (UUID)")),
    responses(
        (status = 200, description = "the job", body = Job),
        (status = 400, description = "bad_id", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 404, description = "no such job of this user", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get_job(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job_id = parse_id(&id)?;
    let client = state.pool.get().await?;
    let job = lifecycle::get(&**client, &user, job_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(job.into()))
}

/// List your jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, description = "your jobs", body = JobList),
        (status = 400, description = "bad status or limit", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 503, description = "database unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_jobs(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(JobStatus::parse(text).ok_or_else(|| {
            let all: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::BadRequest(format!("status must be one of {}", all.join(", ")))
        })?),
    };
    let limit = match &query.limit {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n >= 1 => n.min(MAX_LIMIT),
            _ => {
                return Err(ApiError::BadRequest(
                    "limit must be a positive integer".into(),
                ));
            }
        },
    };
    let client = state.pool.get().await?;
    let jobs = lifecycle::list(&**client, &user, status, limit).await?;
    Ok(Json(JobList {
        jobs: jobs.into_iter().map(Job::from).collect(),
    }))
}

/// Cancel a job if it has not finished, then hide it.
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "job id (UUID)")),
    responses(
        (status = 200, description = "hidden; if it had not ended, its cancel recorded (`cancel_requested`) and a `cancelled` event follows", body = JobRef),
        (status = 400, description = "bad_id", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 404, description = "no such job of this user", body = ErrorBody),
        (status = 503, description = "database or broker unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete_job(
    State(state): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<JobRef>, ApiError> {
    let job_id = parse_id(&id)?;
    let (status, cancel_requested) = match jobs::cancel(&state, &user, job_id, true).await? {
        Cancelled::Requested(status) => (status.as_str().to_owned(), Some(true)),
        Cancelled::AlreadyEnded(status) => (status.as_str().to_owned(), None),
    };
    Ok(Json(JobRef {
        id: job_id,
        status,
        cancel_requested,
    }))
}

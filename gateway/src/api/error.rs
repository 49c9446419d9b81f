//! One error type for the HTTP API: a stable JSON body
//! `{"error": {"code", "message"}}` and the right status; server faults are
//! logged here, once.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sluice_proto::ErrorCode;
use utoipa::ToSchema;

use crate::jobs::CommandError;

/// An HTTP API failure, by what the client should do about it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no valid bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// 400: an id that is not a UUID.
    #[error("`{0}` is not a job id (a UUID)")]
    BadId(String),
    /// 400: a body or query that does not parse.
    #[error("{0}")]
    BadRequest(String),
    /// 400: a job kind this deployment does not run.
    #[error(
        "unknown job kind `{0}`: nothing in this deployment serves it (GET /v1/kinds lists what does)"
    )]
    UnknownKind(String),
    /// 400: args of the wrong shape for the kind.
    #[error("{0}")]
    BadArgs(String),
    /// 403: a valid token without the scope the route needs.
    #[error("{0}")]
    Forbidden(String),
    /// 422: an idempotency key already used with a different body.
    #[error("{0}")]
    IdempotencyMismatch(String),
    /// 413: a published `data` over `gateway.max_publish_bytes`.
    #[error("data is {0} bytes; gateway.max_publish_bytes allows {1}")]
    DataTooLarge(usize, usize),
    /// 404: no such job of this user.
    #[error("job not found")]
    NotFound,
    /// 409: the job is not in a state that allows this.
    #[error("job is already {0}")]
    Conflict(String),
    /// 408: the body did not arrive within `gateway.http_body_timeout_ms`.
    #[error("request body not received within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// 413: a body over `max_message_bytes`.
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// 503: the broker or the database is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// 404: no such route.
    #[error("no route {0}")]
    NoRoute(String),
    /// 429: over the user's submission rate; retry after this many ms.
    #[error("too many submissions; retry in {0} ms")]
    RateLimited(u64),
    /// 429: over a per-user quota of jobs or stored args; the message says
    /// which, and when to retry.
    #[error("{0}")]
    OverQuota(String, u64),
}

/// The JSON error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// `error` inside [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `bad_id`, `not_found`, `unavailable`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// With `rate_limited`: how long to wait before trying again (ms); the
    /// `Retry-After` header says the same in whole seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    /// The HTTP status and the code from the one table of error codes.
    fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            ApiError::BadId(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadId),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            ApiError::UnknownKind(_) => (StatusCode::BAD_REQUEST, ErrorCode::UnknownKind),
            ApiError::BadArgs(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadArgs),
            ApiError::NotFound => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            ApiError::IdempotencyMismatch(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::IdempotencyMismatch,
            ),
            ApiError::DataTooLarge(..) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge),
            ApiError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, ErrorCode::BadRequest),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
            ApiError::NoRoute(_) => (StatusCode::NOT_FOUND, ErrorCode::NoRoute),
            ApiError::RateLimited(_) | ApiError::OverQuota(..) => {
                (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited)
            }
        }
    }
}

impl ApiError {
    /// With 429: how long the client should wait, in ms.
    fn retry_after_ms(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited(ms) | ApiError::OverQuota(_, ms) => Some(*ms),
            _ => None,
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::NotFound => ApiError::NotFound,
            CommandError::Conflict(status) => ApiError::Conflict(status.to_string()),
            CommandError::OverQuota(refusal) => {
                ApiError::OverQuota(e.to_string(), crate::jobs::quota_retry_after_ms(refusal))
            }
            CommandError::IdempotencyMismatch => ApiError::IdempotencyMismatch(e.to_string()),
            CommandError::Refused(crate::kinds::Refusal::UnknownKind(kind)) => {
                ApiError::UnknownKind(kind)
            }
            CommandError::Refused(crate::kinds::Refusal::BadArgs(message)) => {
                ApiError::BadArgs(message)
            }
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApiError::Unavailable(format!("database unavailable: {e}"))
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::Unavailable(format!("database unavailable: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %self, "request failed: dependency unavailable");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.as_str().to_owned(),
                // Can quote the request (a bad body, bad args).
                message: sluice_proto::bounded_message(self.to_string()),
                retry_after_ms: self.retry_after_ms(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(ms) = self.retry_after_ms() {
            // Whole seconds, rounded up (RFC 9110 has no finer unit).
            let secs = ms.div_ceil(1000).max(1);
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        if matches!(self, ApiError::TooLarge(_) | ApiError::BodyTimeout(_)) {
            // The body was left unread, so the connection cannot carry
            // another request: say so, or a client reusing it from its pool
            // sends the next request into a closing socket.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

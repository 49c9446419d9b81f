//! Machine-readable error codes shared by WebSocket `error` frames, HTTP
//! error bodies and job `error` objects: one table for every front door.

use serde::{Deserialize, Serialize};

/// Why a request or a job failed; clients branch on this, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame or body could not be understood (bad JSON, unknown type, missing field).
    BadRequest,
    /// The job kind is not one this deployment runs.
    UnknownKind,
    /// The job's args are wrong for its kind (shape, table, column or value).
    BadArgs,
    /// A job id that is not a UUID.
    BadId,
    /// Unknown id, or one that belongs to another user.
    NotFound,
    /// The broker or database is unreachable; try again later.
    Unavailable,
    /// A per-session limit was hit (too many submits in flight).
    Overloaded,
    /// The job ran past its time limit.
    Timeout,
    /// The job was cancelled.
    Cancelled,
    /// A fault inside Sluice; logged on the server.
    Internal,
    /// HTTP only: a missing or invalid bearer token (401).
    Unauthorized,
    /// HTTP only: the job is not in a state that allows this (409).
    Conflict,
    /// HTTP only: a request body over `gateway.max_message_bytes` (413).
    TooLarge,
    /// HTTP only: too many new connections from one address (429).
    RateLimited,
    /// HTTP only: no such route (404).
    NoRoute,
    /// HTTP only: the token is valid but lacks the scope the route needs,
    /// e.g. a user token on `POST /v1/publish` (403).
    Forbidden,
    /// HTTP only: an idempotency key already used with a different body
    /// within its window (422).
    IdempotencyMismatch,
}

impl ErrorCode {
    /// The snake_case spelling used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownKind => "unknown_kind",
            ErrorCode::BadArgs => "bad_args",
            ErrorCode::BadId => "bad_id",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Internal => "internal",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NoRoute => "no_route",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::IdempotencyMismatch => "idempotency_mismatch",
        }
    }

    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownKind,
        ErrorCode::BadArgs,
        ErrorCode::BadId,
        ErrorCode::NotFound,
        ErrorCode::Unavailable,
        ErrorCode::Overloaded,
        ErrorCode::Timeout,
        ErrorCode::Cancelled,
        ErrorCode::Internal,
        ErrorCode::Unauthorized,
        ErrorCode::Conflict,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::NoRoute,
        ErrorCode::Forbidden,
        ErrorCode::IdempotencyMismatch,
    ];
}

/// The longest error message Sluice sends or stores, in bytes (before the
/// `…` that marks a cut): so a message never echoes more than this much of
/// what a client sent (a 1 MB table name, say), wherever it goes (the
/// job's row, its event, every session of the user, HTTP bodies).
pub const MAX_ERROR_MESSAGE_BYTES: usize = 200;

/// `message`, cut to [`MAX_ERROR_MESSAGE_BYTES`] at a character boundary
/// and marked with `…` when it was longer.
pub fn bounded_message(mut message: String) -> String {
    if message.len() <= MAX_ERROR_MESSAGE_BYTES {
        return message;
    }
    let mut cut = MAX_ERROR_MESSAGE_BYTES;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push('…');
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        assert_eq!(bounded_message("short".into()), "short");
        let long = format!("no table {}", "é".repeat(1_000_000));
        let cut = bounded_message(long);
        assert!(
            cut.len() <= MAX_ERROR_MESSAGE_BYTES + '…'.len_utf8(),
            "{}",
            cut.len()
        );
        assert!(cut.starts_with("no table é") && cut.ends_with('…'));
    }

    #[test]
    fn as_str_matches_serde_spelling() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}

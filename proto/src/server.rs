//! Frames the server sends over the WebSocket.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{ErrorCode, EventFrame};

/// A server-to-client frame; encoded once and sent as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The answer to `hello`.
    Welcome {
        /// This session's id, for logs.
        session: String,
        /// The user the token names.
        user: String,
        /// How often the server pings; two silent intervals close the session.
        heartbeat_ms: u64,
        /// Whether every stored event after the client's `resume.after`
        /// follows (false: some were pruned, or this is a fresh start).
        resumed: bool,
        /// The user's newest stored seq at this moment.
        last_seq: u64,
    },
    /// The answer to a good `refresh`: the session now lives until `exp`.
    Refreshed {
        /// The new token's expiry, seconds since the epoch.
        exp: u64,
    },
    /// The answer to `ping`.
    Pong {
        /// The `ping`'s id.
        id: u64,
    },
    /// The job is durably queued.
    Accepted {
        /// The submit's `ref`.
        #[serde(rename = "ref")]
        reference: String,
        /// The id the gateway gave the job.
        job_id: Uuid,
    },
    /// A job event.
    Event(EventFrame),
    /// A message a backend published to the user (`POST /v1/publish`,
    /// `sluice.publish(...)`): stored in the user's log like an event, so
    /// it has the user's next `seq` and is replayed on resume. Written by
    /// the database function (store/migrations), read by clients.
    Message {
        /// Its place in the user's log, shared with job events.
        seq: u64,
        /// What the backend published: any JSON value.
        data: serde_json::Value,
        /// The publication's id: its idempotency key when it had one, a
        /// UUID otherwise. Equal ids on two messages mean one publication.
        id: String,
    },
    /// A refused frame or submission; the session stays up.
    Error {
        /// The `ref` of the submit it answers, if it answers one.
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        /// What kind of refusal, for clients to branch on.
        code: ErrorCode,
        /// A human-readable explanation.
        message: String,
        /// With `rate_limited`: how long to wait before trying again (ms).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl ServerFrame {
    /// An `error` frame without `retry_after_ms` (everything but
    /// `rate_limited`).
    pub fn error(reference: Option<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            reference,
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// The frame as JSON text. Serializing these types cannot fail.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            // Unreachable for these types (string keys, finite numbers); keep the
            // connection useful rather than panic if it ever happens.
            format!(r#"{{"type":"error","code":"internal","message":"encode: {e}"}}"#)
        })
    }

    /// Parses a server frame (used by clients, tests and the load generator).
    pub fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_use_the_wire_names() {
        let f = ServerFrame::Accepted {
            reference: "r".into(),
            job_id: Uuid::nil(),
        };
        assert_eq!(
            f.encode(),
            r#"{"type":"accepted","ref":"r","job_id":"00000000-0000-0000-0000-000000000000"}"#
        );
        let e = ServerFrame::Error {
            reference: None,
            code: ErrorCode::BadRequest,
            message: "m".into(),
            retry_after_ms: None,
        };
        assert_eq!(
            e.encode(),
            r#"{"type":"error","code":"bad_request","message":"m"}"#
        );
        let limited = ServerFrame::Error {
            reference: Some("s1".into()),
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            retry_after_ms: Some(250),
        };
        assert_eq!(
            limited.encode(),
            r#"{"type":"error","ref":"s1","code":"rate_limited","message":"slow down","retry_after_ms":250}"#
        );
        assert_eq!(ServerFrame::decode(&e.encode()).unwrap(), e);
    }
}

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
        session: String,
        user: String,
        heartbeat_ms: u64,
        resumed: bool,
        last_seq: u64,
    },
    /// The answer to `ping`.
    Pong { id: u64 },
    /// The job is durably queued.
    Accepted {
        #[serde(rename = "ref")]
        reference: String,
        job_id: Uuid,
    },
    /// A job event.
    Event(EventFrame),
    /// A refused frame or submission; the session stays up.
    Error {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        code: ErrorCode,
        message: String,
    },
}

impl ServerFrame {
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
        };
        assert_eq!(
            e.encode(),
            r#"{"type":"error","code":"bad_request","message":"m"}"#
        );
        assert_eq!(ServerFrame::decode(&e.encode()).unwrap(), e);
    }
}

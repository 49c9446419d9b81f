//! Job events: what the runner commits and publishes, and what sessions get.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ErrorCode;

/// Where a job is in its lifecycle, as seen in `event` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Waiting for a runner (not sent today: `accepted` says it).
    Queued,
    /// A runner took it.
    Running,
    /// Advisory and not stored: its `seq` is 0.
    Progress,
    /// Ended with a result.
    Done,
    /// Ended with an error.
    Failed,
    /// Ended by a cancel.
    Cancelled,
}

impl EventStatus {
    /// True for the three statuses that end a job's event stream.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            EventStatus::Done | EventStatus::Failed | EventStatus::Cancelled
        )
    }

    /// The snake_case name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Queued => "queued",
            EventStatus::Running => "running",
            EventStatus::Progress => "progress",
            EventStatus::Done => "done",
            EventStatus::Failed => "failed",
            EventStatus::Cancelled => "cancelled",
        }
    }
}

/// `event.progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Progress {
    /// Units done so far.
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

/// `event.error`, also stored on a failed job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct JobError {
    /// What kind of failure, for clients to branch on.
    pub code: ErrorCode,
    /// A human-readable explanation (may quote the offending value).
    pub message: String,
}

/// The body of an `event` frame (without its `type` tag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct EventFrame {
    /// The user's next seq for stored events; 0 for `progress`.
    pub seq: u64,
    /// The job it reports on.
    pub job_id: Uuid,
    /// What happened.
    pub status: EventStatus,
    /// For `progress`: how far it got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// For `done`: the handler's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// For `failed`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
}

/// Just enough of an encoded `event` or `message` frame to route and order
/// it.
///
/// The gateway reads this from the bytes it got from the broker and then
/// forwards those same bytes; the frame is never re-encoded. A `message`
/// frame (a backend's publication) has a seq but no job and no status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct EventHead {
    /// The event's seq (0 for `progress`).
    pub seq: u64,
    /// The job it reports on; `None` for a `message`.
    #[serde(default)]
    pub job_id: Option<Uuid>,
    /// What happened; `None` for a `message`.
    #[serde(default)]
    pub status: Option<EventStatus>,
}

impl EventHead {
    /// Reads the head of an encoded `event` or `message` frame. A frame
    /// that has neither both of `job_id` and `status` nor neither (a
    /// message, which must then have a seq) is refused.
    pub fn decode(frame: &[u8]) -> Result<Self, serde_json::Error> {
        let head: Self = serde_json::from_slice(frame)?;
        match (head.job_id, head.status) {
            (Some(_), Some(_)) => Ok(head),
            (None, None) if head.seq > 0 => Ok(head),
            _ => Err(serde::de::Error::custom(
                "neither an event (job_id and status) nor a message (a seq, no job)",
            )),
        }
    }

    /// True for an advisory `progress` event, which is not stored.
    pub fn is_progress(&self) -> bool {
        self.status == Some(EventStatus::Progress) || self.seq == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerFrame;

    #[test]
    fn head_reads_an_encoded_event() {
        let frame = ServerFrame::Event(EventFrame {
            seq: 42,
            job_id: Uuid::from_u128(7),
            status: EventStatus::Done,
            progress: None,
            result: Some(serde_json::json!({"rows": 3})),
            error: None,
        })
        .encode();
        let head = EventHead::decode(frame.as_bytes()).unwrap();
        assert_eq!(head.seq, 42);
        assert_eq!(head.job_id, Some(Uuid::from_u128(7)));
        assert!(head.status.is_some_and(EventStatus::is_terminal));
        assert!(frame.starts_with(r#"{"type":"event","seq":42"#), "{frame}");
    }

    #[test]
    fn head_reads_a_message_and_refuses_half_events() {
        let message = br#"{"type":"message","seq":5,"data":{"a":[1,2]},"id":"k1"}"#;
        let head = EventHead::decode(message).unwrap();
        assert_eq!((head.seq, head.job_id, head.status), (5, None, None));
        assert!(!head.is_progress());
        let seqless = br#"{"type":"message","seq":0,"data":1,"id":"k"}"#;
        assert!(EventHead::decode(seqless).is_err());
        let half = br#"{"type":"event","seq":3,"status":"done"}"#;
        assert!(EventHead::decode(half).is_err());
        let decoded = ServerFrame::decode(std::str::from_utf8(message).unwrap()).unwrap();
        assert_eq!(
            decoded,
            ServerFrame::Message {
                seq: 5,
                data: serde_json::json!({"a": [1, 2]}),
                id: "k1".into()
            }
        );
    }
}

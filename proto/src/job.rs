//! The built-in kinds' args, and the envelope a job travels in over AMQP.

use crate::kind::{self, KindName};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// Longest `sleep` accepted: one day. Longer is surely a mistake.
pub const MAX_SLEEP_MS: u64 = 24 * 60 * 60 * 1000;

/// Why a job's args were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobArgsError {
    /// The args do not have the fields or types the kind needs.
    #[error("bad args: {0}")]
    Shape(String),
}

/// Args of `sleep`.
// The derived JSON Schema is what submissions are validated against (and
// its doc comments are what `GET /v1/kinds` shows); `parse` is the
// runner's own check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SleepArgs {
    /// How long to hold the connection in `pg_sleep`.
    #[schemars(range(max = 86_400_000))]
    pub ms: u64,
}

impl SleepArgs {
    /// Parses and bounds-checks `sleep` args.
    pub fn parse(args: &RawValue) -> Result<Self, JobArgsError> {
        let parsed: SleepArgs = serde_json::from_str(args.get())
            .map_err(|e| JobArgsError::Shape(format!("sleep needs {{\"ms\": <u64>}}: {e}")))?;
        if parsed.ms > MAX_SLEEP_MS {
            return Err(JobArgsError::Shape(format!(
                "sleep ms {} exceeds the maximum of {MAX_SLEEP_MS}",
                parsed.ms
            )));
        }
        Ok(parsed)
    }
}

/// A job as a client asks for it: `{kind, args}` with the args typed by
/// kind. The gateway reads submits with [`crate::ClientFrame::decode`]
/// (args kept raw); this owned form is for clients, and the TypeScript
/// client's types are generated from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(tag = "kind", content = "args", rename_all = "snake_case")]
pub enum JobRequest {
    /// Upsert rows into an allow-listed table in one transaction.
    BatchUpsert(BatchUpsertArgs),
    /// Hold one pooled connection in `pg_sleep`.
    Sleep(SleepArgs),
}

impl JobRequest {
    /// The request's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            JobRequest::BatchUpsert(_) => kind::BATCH_UPSERT,
            JobRequest::Sleep(_) => kind::SLEEP,
        }
    }
}

/// Args of `batch_upsert`: rows to upsert into an allow-listed table.
// Owned, the client's side of `BatchUpsertHead`. The derived JSON Schema is
// what submissions are validated against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BatchUpsertArgs {
    /// Target table; must be in the runner's `tables` allow-list.
    pub table: String,
    /// The conflict key columns (a unique index must cover them).
    #[schemars(length(min = 1))]
    pub key: Vec<String>,
    /// The rows: objects that all have the first row's columns.
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// The head of `batch_upsert` args: table and key parsed, rows left raw.
#[derive(Debug, Deserialize)]
pub struct BatchUpsertHead<'a> {
    /// Target table (checked against the allow-list by the runner).
    pub table: String,
    /// The conflict key columns.
    pub key: Vec<String>,
    /// The rows, an array of objects, still undecoded.
    #[serde(borrow)]
    pub rows: &'a RawValue,
}

impl<'a> BatchUpsertHead<'a> {
    /// Parses the head and checks that `rows` is an array and `key` non-empty.
    pub fn parse(args: &'a RawValue) -> Result<Self, JobArgsError> {
        let head: BatchUpsertHead<'a> = serde_json::from_str(args.get()).map_err(|e| {
            JobArgsError::Shape(format!(
                "batch_upsert needs {{\"table\": str, \"key\": [str], \"rows\": [object]}}: {e}"
            ))
        })?;
        if head.key.is_empty() {
            return Err(JobArgsError::Shape(
                "`key` must name at least one column".into(),
            ));
        }
        if !head.rows.get().starts_with('[') {
            return Err(JobArgsError::Shape(
                "`rows` must be an array of objects".into(),
            ));
        }
        Ok(head)
    }
}

/// A job as it travels on the jobs queue, from gateway to runner.
///
/// Generic over the args so the gateway serializes borrowed raw args and
/// the runner deserializes owned ones, with no JSON tree in between.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobEnvelope<A> {
    /// Chosen by the gateway (UUID v7) before publishing.
    pub job_id: Uuid,
    /// The submitting user (JWT `sub`); events go to this user only.
    pub user: String,
    /// The job kind.
    pub kind: KindName,
    /// The args, as the client sent them.
    pub args: A,
    /// Gateway wall-clock at submission, milliseconds since the epoch.
    pub submitted_at_ms: u64,
}

/// The form the runner decodes.
pub type OwnedJobEnvelope = JobEnvelope<Box<RawValue>>;

impl OwnedJobEnvelope {
    /// Decodes an AMQP body; an error means the message is poison.
    pub fn decode(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

/// A message to every runner on the control exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage {
    /// Stop this job if you are running it: cancel its query, roll back.
    /// If no runner has taken it yet, end it as `cancelled` (the gateway
    /// records only the request).
    Cancel {
        /// The job to stop.
        job_id: Uuid,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip() {
        let m = ControlMessage::Cancel {
            job_id: Uuid::nil(),
        };
        let bytes = serde_json::to_vec(&m).unwrap();
        assert_eq!(serde_json::from_slice::<ControlMessage>(&bytes).unwrap(), m);
        assert!(serde_json::from_slice::<ControlMessage>(b"{}").is_err());
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn sleep_args_bounds() {
        assert_eq!(SleepArgs::parse(&raw(r#"{"ms":10}"#)).unwrap().ms, 10);
        assert!(SleepArgs::parse(&raw(r#"{"ms":-1}"#)).is_err());
        assert!(SleepArgs::parse(&raw(r#"{"ms":86400001}"#)).is_err());
        assert!(SleepArgs::parse(&raw(r#"{}"#)).is_err());
    }

    #[test]
    fn batch_head_keeps_rows_raw() {
        let args = raw(r#"{"table":"items","key":["id"],"rows":[{"id":1,"value":"a"}]}"#);
        let head = BatchUpsertHead::parse(&args).unwrap();
        assert_eq!(head.table, "items");
        assert_eq!(head.rows.get(), r#"[{"id":1,"value":"a"}]"#);
        assert!(BatchUpsertHead::parse(&raw(r#"{"table":"items","key":[],"rows":[]}"#)).is_err());
    }

    #[test]
    fn envelope_round_trips_raw_args() {
        let args = raw(r#"{"ms": 5}"#);
        let env = JobEnvelope {
            job_id: Uuid::nil(),
            user: "u".into(),
            kind: KindName::parse(kind::SLEEP).unwrap(),
            args: args.as_ref(),
            submitted_at_ms: 1,
        };
        let bytes = serde_json::to_vec(&env).unwrap();
        let back = OwnedJobEnvelope::decode(&bytes).unwrap();
        assert_eq!(back.args.get(), r#"{"ms": 5}"#);
        assert_eq!(back.kind.as_str(), kind::SLEEP);
        assert!(OwnedJobEnvelope::decode(b"\x00garbage").is_err());
    }
}

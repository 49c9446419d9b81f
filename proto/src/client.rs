//! Frames a client sends over the WebSocket, and their decoder.
//!
//! Decoding is one pass over the text into a flat borrowed struct, then a
//! check of the fields the frame's `type` needs. A job's `args` stay a
//! borrowed [`RawValue`]: a 200,000-row `batch_upsert` is routed to the
//! broker without ever being built into a JSON tree in the gateway.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::MAX_REF_CHARS;
use crate::job::{JobArgsError, JobRequest};
use crate::kind::KindName;

/// A decoded client frame, borrowing from the text it was read from.
#[derive(Debug)]
pub enum ClientFrame<'a> {
    /// Authenticate (and optionally resume); must be the first frame.
    Hello(Hello),
    /// Round-trip probe, answered with `pong` carrying the same id.
    Ping {
        /// Echoed in the `pong`.
        id: u64,
    },
    /// Queue a job.
    Submit(Submit<'a>),
    /// Cancel one of the user's jobs.
    Cancel {
        /// The job to cancel, as sent (checked to be a UUID later).
        job_id: String,
    },
    /// A fresh token for the same user, before the session's expires.
    Refresh {
        /// The JWT.
        token: String,
    },
}

/// The `hello` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// JWT; may be omitted when the upgrade request carried `Authorization`.
    pub token: Option<String>,
    /// Present when the client reconnects and wants missed events.
    pub resume: Option<Resume>,
}

/// `hello.resume`: where the client's event stream stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Resume {
    /// The session id the client had; informational, seqs are per user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The last stored `seq` the client saw.
    pub after: u64,
}

/// The `submit` frame, with its kind's name checked and args still raw.
/// Whether the deployment serves the kind, and whether the args fit its
/// schema, is the gateway's to check.
#[derive(Debug)]
pub struct Submit<'a> {
    /// The client's correlation string, echoed on `accepted` / `error`.
    pub reference: String,
    /// The job kind.
    pub kind: KindName,
    /// The job's args, exactly as the client sent them.
    pub args: &'a RawValue,
}

/// A client frame in owned, encodable form: what a client sends. The
/// gateway reads frames with [`ClientFrame::decode`]; a test keeps the two
/// in agreement, and the TypeScript client's types are generated from this.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutgoingFrame {
    /// Authenticate (and optionally resume); must be the first frame.
    Hello {
        /// JWT; may be omitted when the upgrade request carried `Authorization`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Where the client's event stream stopped, when reconnecting.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<Resume>,
    },
    /// Round-trip probe, answered with `pong` carrying the same id.
    Ping {
        /// Echoed in the `pong`.
        id: u64,
    },
    /// Queue a job; answered with `accepted` or `error` carrying the same `ref`.
    Submit {
        /// The client's correlation string, at most 64 characters.
        #[serde(rename = "ref")]
        reference: String,
        /// The job: its kind and args.
        job: JobRequest,
    },
    /// Cancel one of the user's jobs.
    Cancel {
        /// The job to cancel.
        job_id: String,
    },
    /// A fresh token for the same user; answered with `refreshed`, or a
    /// close with 1008 if it is not good.
    Refresh {
        /// The JWT.
        token: String,
    },
}

impl OutgoingFrame {
    /// The frame as JSON text.
    pub fn encode(&self) -> String {
        // Only string keys and finite numbers: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a text frame was refused; each maps to an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not an object of the expected shape.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A `type` this protocol does not define.
    #[error("unknown frame type `{0}`")]
    UnknownType(String),
    /// A field the frame's type requires is missing or invalid.
    #[error("{0}")]
    BadField(&'static str),
    /// A submit naming a kind that is not a kind name; carries the ref.
    #[error("unknown job kind `{kind}`")]
    UnknownKind {
        /// The submit's `ref`.
        reference: String,
        /// The kind it named.
        kind: String,
    },
    /// A submit whose args do not fit its kind; carries the ref.
    #[error("{error}")]
    BadArgs {
        /// The submit's `ref`.
        reference: String,
        /// What is wrong with the args.
        error: JobArgsError,
    },
}

impl DecodeError {
    /// The client's `ref` when the frame was a submit that got that far.
    pub fn reference(&self) -> Option<&str> {
        match self {
            DecodeError::UnknownKind { reference, .. } | DecodeError::BadArgs { reference, .. } => {
                Some(reference)
            }
            _ => None,
        }
    }

    /// The error code the client receives for this refusal.
    pub fn code(&self) -> crate::ErrorCode {
        match self {
            DecodeError::UnknownKind { .. } => crate::ErrorCode::UnknownKind,
            DecodeError::BadArgs { .. } => crate::ErrorCode::BadArgs,
            _ => crate::ErrorCode::BadRequest,
        }
    }
}

/// Every field any client frame may carry; unknown fields are ignored.
#[derive(Deserialize)]
struct WireFrame<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    token: Option<String>,
    resume: Option<Resume>,
    id: Option<u64>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    #[serde(borrow)]
    job: Option<WireJob<'a>>,
    job_id: Option<String>,
}

#[derive(Deserialize)]
struct WireJob<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    args: Option<&'a RawValue>,
}

impl<'a> ClientFrame<'a> {
    /// Decodes one text frame. Never panics; every refusal is a [`DecodeError`].
    pub fn decode(text: &'a str) -> Result<Self, DecodeError> {
        let wire: WireFrame<'a> =
            serde_json::from_str(text).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        match wire.ty.as_ref() {
            "hello" => Ok(ClientFrame::Hello(Hello {
                token: wire.token,
                resume: wire.resume,
            })),
            "refresh" => {
                let token = wire
                    .token
                    .ok_or(DecodeError::BadField("refresh needs a `token` string"))?;
                Ok(ClientFrame::Refresh { token })
            }
            "ping" => {
                let id = wire
                    .id
                    .ok_or(DecodeError::BadField("ping needs a numeric `id`"))?;
                Ok(ClientFrame::Ping { id })
            }
            "submit" => {
                let reference = wire
                    .reference
                    .ok_or(DecodeError::BadField("submit needs a `ref` string"))?;
                if reference.chars().count() > MAX_REF_CHARS {
                    return Err(DecodeError::BadField("`ref` is longer than 64 characters"));
                }
                let job = wire
                    .job
                    .ok_or(DecodeError::BadField("submit needs a `job` object"))?;
                let Ok(kind) = KindName::parse(&job.kind) else {
                    return Err(DecodeError::UnknownKind {
                        reference,
                        kind: job.kind.into_owned(),
                    });
                };
                let Some(args) = job.args else {
                    return Err(DecodeError::BadArgs {
                        reference,
                        error: JobArgsError::Shape("`job.args` is missing".into()),
                    });
                };
                Ok(ClientFrame::Submit(Submit {
                    reference,
                    kind,
                    args,
                }))
            }
            "cancel" => {
                let job_id = wire
                    .job_id
                    .ok_or(DecodeError::BadField("cancel needs a `job_id` string"))?;
                Ok(ClientFrame::Cancel { job_id })
            }
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_each_frame_type() {
        let hello = ClientFrame::decode(
            r#"{"type":"hello","token":"t","resume":{"session":"s","after":7}}"#,
        )
        .unwrap();
        match hello {
            ClientFrame::Hello(h) => {
                assert_eq!(h.token.as_deref(), Some("t"));
                assert_eq!(h.resume.unwrap().after, 7);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ClientFrame::decode(r#"{"type":"ping","id":18446744073709551615,"extra":[1]}"#)
                .unwrap(),
            ClientFrame::Ping { id: u64::MAX }
        ));
        let submit = ClientFrame::decode(
            r#"{"type":"submit","ref":"r1","job":{"kind":"sleep","args":{"ms":5}}}"#,
        )
        .unwrap();
        match submit {
            ClientFrame::Submit(s) => {
                assert_eq!(s.reference, "r1");
                assert_eq!(s.kind.as_str(), "sleep");
                assert_eq!(s.args.get(), r#"{"ms":5}"#);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ClientFrame::decode(r#"{"type":"cancel","job_id":"x"}"#).unwrap(),
            ClientFrame::Cancel { job_id } if job_id == "x"
        ));
    }

    #[test]
    fn outgoing_frames_decode_as_what_they_say() {
        use crate::job::{BatchUpsertArgs, SleepArgs};
        let hello = OutgoingFrame::Hello {
            token: Some("t".into()),
            resume: Some(Resume {
                session: Some("s".into()),
                after: 9,
            }),
        };
        match ClientFrame::decode(&hello.encode()).unwrap() {
            ClientFrame::Hello(h) => {
                assert_eq!(h.token.as_deref(), Some("t"));
                assert_eq!(h.resume.map(|r| r.after), Some(9));
            }
            other => panic!("{other:?}"),
        }
        let bare = OutgoingFrame::Hello {
            token: None,
            resume: None,
        };
        assert_eq!(bare.encode(), r#"{"type":"hello"}"#);
        assert!(matches!(
            ClientFrame::decode(&OutgoingFrame::Ping { id: 3 }.encode()).unwrap(),
            ClientFrame::Ping { id: 3 }
        ));
        let mut row = serde_json::Map::new();
        row.insert("id".into(), 1.into());
        row.insert("value".into(), "one".into());
        let jobs = [
            JobRequest::Sleep(SleepArgs { ms: 5 }),
            JobRequest::BatchUpsert(BatchUpsertArgs {
                table: "items".into(),
                key: vec!["id".into()],
                rows: vec![row],
            }),
        ];
        for job in jobs {
            let kind = job.kind();
            let text = OutgoingFrame::Submit {
                reference: "r".into(),
                job,
            }
            .encode();
            match ClientFrame::decode(&text).unwrap() {
                ClientFrame::Submit(s) => {
                    assert_eq!(s.reference, "r");
                    assert_eq!(s.kind.as_str(), kind, "{text}");
                }
                other => panic!("{other:?}"),
            }
        }
        let cancel = OutgoingFrame::Cancel { job_id: "j".into() };
        assert!(matches!(
            ClientFrame::decode(&cancel.encode()).unwrap(),
            ClientFrame::Cancel { job_id } if job_id == "j"
        ));
    }

    #[test]
    fn refusals_carry_the_right_code_and_ref() {
        let cases = [
            ("not json", crate::ErrorCode::BadRequest, None),
            (r#"{"type":"dance"}"#, crate::ErrorCode::BadRequest, None),
            (r#"{"id":1}"#, crate::ErrorCode::BadRequest, None),
            (
                r#"{"type":"ping","id":-1}"#,
                crate::ErrorCode::BadRequest,
                None,
            ),
            (
                r#"{"type":"ping","id":1e40}"#,
                crate::ErrorCode::BadRequest,
                None,
            ),
            // Whether a well-named kind is served, and whether its args fit,
            // is the gateway's to say; a name outside the pattern is not a
            // kind at all.
            (
                r#"{"type":"submit","ref":"a","job":{"kind":"Mine Bitcoin","args":{}}}"#,
                crate::ErrorCode::UnknownKind,
                Some("a"),
            ),
            (
                r#"{"type":"submit","ref":"b","job":{"kind":"sleep"}}"#,
                crate::ErrorCode::BadArgs,
                Some("b"),
            ),
        ];
        for (text, code, reference) in cases {
            let err = ClientFrame::decode(text).unwrap_err();
            assert_eq!(err.code(), code, "{text}");
            assert_eq!(err.reference(), reference, "{text}");
        }
    }

    #[test]
    fn long_ref_is_refused() {
        let text = format!(
            r#"{{"type":"submit","ref":"{}","job":{{"kind":"sleep","args":{{"ms":1}}}}}}"#,
            "x".repeat(65)
        );
        assert_eq!(
            ClientFrame::decode(&text).unwrap_err().code(),
            crate::ErrorCode::BadRequest
        );
    }

    #[test]
    fn deep_nesting_is_kept_raw_not_overflowed() {
        let text = format!(
            r#"{{"type":"submit","ref":"r","job":{{"kind":"sleep","args":{}{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        // The args stay raw here; the gateway's schema check parses them,
        // and that parse stops at serde_json's depth limit.
        match ClientFrame::decode(&text) {
            Ok(ClientFrame::Submit(s)) => {
                assert!(serde_json::from_str::<serde_json::Value>(s.args.get()).is_err())
            }
            Ok(other) => panic!("{other:?}"),
            Err(_) => {}
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = ClientFrame::decode(&text);
        }

        #[test]
        fn arbitrary_json_objects_never_panic(
            ty in prop::sample::select(vec!["hello", "ping", "submit", "cancel", "x"]),
            value in any::<i64>(),
            kind in "[a-z_]{0,12}",
        ) {
            let text = format!(
                r#"{{"type":"{ty}","id":{value},"ref":"r","job":{{"kind":"{kind}","args":{{"ms":{value}}}}},"job_id":"j","token":"t"}}"#
            );
            let _ = ClientFrame::decode(&text);
        }
    }
}

//! The Sluice wire contract as Rust types: WebSocket frames (client and
//! server), the job envelope carried on AMQP, and the error codes both sides
//! agree on. Serde only, no I/O, so every codec is tested on bytes.
//!
//! The contract itself is described in `docs/protocol.md`.

pub mod client;
pub mod close;
pub mod codes;
pub mod event;
pub mod job;
pub mod kind;
pub mod server;
pub mod token;

#[cfg(test)]
mod schema;

pub use client::{ClientFrame, DecodeError, Hello, OutgoingFrame, Resume, Submit};
pub use close::CloseCode;
pub use codes::{ErrorCode, MAX_ERROR_MESSAGE_BYTES, bounded_message};
pub use event::{EventFrame, EventHead, EventStatus, JobError, Progress};
pub use job::{
    BatchUpsertArgs, ControlMessage, JobArgsError, JobEnvelope, JobRequest, OwnedJobEnvelope,
};
pub use kind::{KindName, KindSpec};
pub use server::ServerFrame;
pub use token::{Claims, MintError, MintOptions, PUBLISH_SCOPE, mint, mint_with};

/// Longest `ref` a client may attach to a `submit` (PROTOCOL.md: 64 chars).
pub const MAX_REF_CHARS: usize = 64;

/// Longest user id (JWT `sub`) accepted; it doubles as the AMQP routing key,
/// which may not exceed 255 bytes.
pub const MAX_USER_BYTES: usize = 200;

/// Milliseconds since the Unix epoch: envelope times, token expiry and
/// latency figures all use this one clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

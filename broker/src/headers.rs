//! Headers Sluice puts on its messages, and reading them back.

use lapin::BasicProperties;
use lapin::types::AMQPValue;

/// Header carrying the publisher's wall clock (ms) on every message, so the
/// gateway can measure event delivery latency.
pub const PUBLISHED_MS_HEADER: &str = "sluice-published-ms";

/// Header counting how often a job went through a retry tier.
pub const RETRIES_HEADER: &str = "sluice-retries";
/// Header on a dead-lettered job: deliveries it had.
pub const ATTEMPTS_HEADER: &str = "sluice-attempts";
/// Header on a dead-lettered job: its last error.
pub const LAST_ERROR_HEADER: &str = "sluice-last-error";

/// An integer header of a received message, if present.
pub fn header_int(properties: &BasicProperties, name: &str) -> Option<i64> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        _ => None,
    }
}

/// A string header of a received message, if present.
pub fn header_str(properties: &BasicProperties, name: &str) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The [`PUBLISHED_MS_HEADER`] of a received message, if present.
pub fn published_ms(properties: &BasicProperties) -> Option<u64> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(PUBLISHED_MS_HEADER)? {
        AMQPValue::LongLongInt(ms) => u64::try_from(*ms).ok(),
        _ => None,
    }
}

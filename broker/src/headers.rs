//! Headers Sluice puts on its messages, and reading them back.

use lapin::BasicProperties;
use lapin::types::AMQPValue;

/// Header carrying the publisher's wall clock (ms) on every message, so the
/// gateway can measure event delivery latency.
pub const PUBLISHED_MS_HEADER: &str = "sluice-published-ms";

/// Header counting how often a job went through a retry tier.
pub const RETRIES_HEADER: &str = "sluice-retries";
/// Header counting how often a job was deferred because another attempt
/// held it (see the runner's lease).
pub const DEFERRALS_HEADER: &str = "sluice-deferrals";
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

/// A count header of a received message (retries, deferrals): absent is 0;
/// a negative or oversized value from whoever published it is clamped into
/// `0..=u32::MAX`, so arithmetic on it cannot wrap.
pub fn header_count(properties: &BasicProperties, name: &str) -> u32 {
    header_int(properties, name).map_or(0, |n| u32::try_from(n.max(0)).unwrap_or(u32::MAX))
}

/// The queue and reason of a dead-lettered message's latest death, from
/// the `x-death` header RabbitMQ adds (most recent first): tells a job the
/// broker gave up on in the jobs queue (`delivery_limit`) from one that
/// only waited out a retry tier (`expired`).
pub fn last_death(properties: &BasicProperties) -> Option<(String, String)> {
    let headers = properties.headers().as_ref()?;
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(latest) = deaths.as_slice().first()? else {
        return None;
    };
    let text = |name: &str| match latest.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    };
    Some((text("queue")?, text("reason")?))
}

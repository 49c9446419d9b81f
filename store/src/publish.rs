//! Messages that backends publish to users: appended to each user's log by
//! the database function `publish(user_id, data, idempotency_key)` (see
//! `migrations/V9__messages.sql`), the one writer of a message, which the
//! HTTP API calls here and an application calls inside its own
//! transaction. The runners' message relay (`sluice-outbox`) sends what
//! was committed.

use tokio_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

/// Most users one call may publish to (PROTOCOL.md section 4).
pub const MAX_USERS: usize = 1_000;

/// Longest idempotency key, in bytes (printable ASCII only).
pub const MAX_KEY_BYTES: usize = 128;

/// The largest `data` the database function takes, in bytes of its JSON
/// text; the HTTP API's own limit (`gateway.max_publish_bytes`) is lower.
pub const MAX_DATA_BYTES: usize = 262_144;

/// The NOTIFY channel a committed publication wakes the relay on:
/// `<schema>_messages`, so deployments sharing a database stay apart.
pub fn channel(schema: &str) -> String {
    format!("{schema}_messages")
}

/// The SQLSTATE the function raises for a key reused with other data.
const MISMATCH: &str = "SLI01";

/// Why nothing was published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The key was used within 24 h for different data (for this user).
    #[error("idempotency_key was used for different data within 24 hours")]
    Mismatch,
    /// The function refused an argument; the text says which.
    #[error("{0}")]
    Refused(String),
    /// The database failed.
    #[error("database error: {0}")]
    Query(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for PublishError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.code() {
            Some(code) if code.code() == MISMATCH => PublishError::Mismatch,
            Some(&SqlState::INVALID_PARAMETER_VALUE) => PublishError::Refused(
                e.as_db_error()
                    .map(|db| db.message().to_owned())
                    .unwrap_or_else(|| e.to_string()),
            ),
            _ => PublishError::Query(e),
        }
    }
}

/// Whether `key` is an idempotency key PROTOCOL.md allows: 1 to 128
/// printable ASCII characters.
pub fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY_BYTES).contains(&key.len()) && key.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Publishes `data` (JSON text) to each of `users` inside the caller's
/// transaction, in the order given, and returns each user's seq (the first
/// seq for a repeat of `key`). Callers pass the users sorted (byte order)
/// and without repeats: two calls that lock the same users' sequences in
/// the same order cannot deadlock. One round trip whatever the number of
/// users; without a key, one set-based statement (`publish_many`).
pub async fn publish<C: GenericClient>(
    tx: &C,
    users: &[String],
    data: &str,
    key: Option<&str>,
) -> Result<Vec<u64>, PublishError> {
    if key.is_none() {
        // Set-based (migration V12): one statement for all the users.
        let rows = tx
            .query_typed(
                "SELECT user_id, seq FROM publish_many($1::text[], $2::jsonb)",
                &[(&users, Type::TEXT_ARRAY), (&data, Type::TEXT)],
            )
            .await?;
        let seqs: std::collections::HashMap<String, i64> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        return Ok(users
            .iter()
            .map(|u| seqs.get(u).map_or(0, |s| u64::try_from(*s).unwrap_or(0)))
            .collect());
    }
    // unnest keeps the array's order, and the function runs row by row
    // in it (no ORDER BY to evaluate it ahead of).
    let rows = tx
        .query_typed(
            "SELECT publish(u, $2::jsonb, $3) FROM unnest($1::text[]) AS u",
            &[
                (&users, Type::TEXT_ARRAY),
                (&data, Type::TEXT),
                (&key, Type::TEXT),
            ],
        )
        .await?;
    Ok(rows
        .iter()
        // Written by the function from a bigint counter starting at 1.
        .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0))
        .collect())
}

/// Deletes idempotency keys past their 24-hour window; returns how many.
/// (The function ignores them already; this only keeps the table small.)
pub async fn prune_keys<C: GenericClient>(client: &C) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM publications WHERE created_at < now() - interval '24 hours'",
            &[],
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii_of_1_to_128_bytes() {
        assert!(valid_key("a"));
        assert!(valid_key("order-42/export:\"x\"\\"));
        assert!(valid_key(&"k".repeat(128)));
        assert!(!valid_key(""));
        assert!(!valid_key(&"k".repeat(129)));
        assert!(!valid_key("with space"));
        assert!(!valid_key("tab\t"));
        assert!(!valid_key("é"));
    }

    #[test]
    fn the_channel_is_the_schemas_own() {
        assert_eq!(channel("sluice"), "sluice_messages");
    }
}

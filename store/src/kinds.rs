//! The kinds runners serve: each runner writes what it serves at start and
//! keeps it alive with a heartbeat; gateways read the kinds of their AMQP
//! prefix. One writer per row: the runner that announced it (and retention,
//! which deletes rows long dead).

use std::time::Duration;

use sluice_proto::{KindName, KindSpec};
use tokio_postgres::GenericClient;
use tokio_postgres::types::{Json, Type};
use uuid::Uuid;

/// Who is announcing: one runner process, on one AMQP prefix.
#[derive(Debug, Clone)]
pub struct Announcer {
    /// Chosen at the runner's start; its rows are keyed by it.
    pub runner_id: Uuid,
    /// The AMQP prefix whose queues the runner consumes.
    pub amqp_prefix: String,
    /// How often the runner refreshes its rows.
    pub heartbeat: Duration,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Replaces this runner's rows with `kinds`, in one statement.
pub async fn announce<C: GenericClient>(
    client: &C,
    who: &Announcer,
    kinds: &[KindSpec],
) -> Result<(), tokio_postgres::Error> {
    let names: Vec<&str> = kinds.iter().map(|k| k.name.as_str()).collect();
    let descriptions: Vec<&str> = kinds.iter().map(|k| k.description.as_str()).collect();
    let schemas: Vec<Json<&serde_json::Value>> =
        kinds.iter().map(|k| Json(&k.args_schema)).collect();
    let timeouts: Vec<i64> = kinds
        .iter()
        .map(|k| i64::try_from(k.timeout_ms).unwrap_or(i64::MAX))
        .collect();
    client
        .execute_typed(
            "WITH gone AS (DELETE FROM runner_kinds WHERE runner_id = $1)
             INSERT INTO runner_kinds
                 (runner_id, amqp_prefix, kind, description, args_schema, timeout_ms, heartbeat_ms)
             SELECT $1, $2, k.kind, k.description, k.args_schema, k.timeout_ms, $7
             FROM unnest($3::text[], $4::text[], $5::jsonb[], $6::int8[])
                 AS k(kind, description, args_schema, timeout_ms)",
            &[
                (&who.runner_id, Type::UUID),
                (&who.amqp_prefix, Type::TEXT),
                (&names, Type::TEXT_ARRAY),
                (&descriptions, Type::TEXT_ARRAY),
                (&schemas, Type::JSONB_ARRAY),
                (&timeouts, Type::INT8_ARRAY),
                (&millis(who.heartbeat), Type::INT8),
            ],
        )
        .await?;
    Ok(())
}

/// Refreshes this runner's rows; the number refreshed (0 means they are
/// gone, and the runner announces again).
pub async fn heartbeat<C: GenericClient>(
    client: &C,
    who: &Announcer,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute_typed(
            "UPDATE runner_kinds SET heartbeat_at = now() WHERE runner_id = $1",
            &[(&who.runner_id, Type::UUID)],
        )
        .await
}

/// The kinds served on `amqp_prefix`: those some runner refreshed within
/// `grace`, each as its most recent announcement describes it.
pub async fn served<C: GenericClient>(
    client: &C,
    amqp_prefix: &str,
    grace: Duration,
) -> Result<Vec<KindSpec>, tokio_postgres::Error> {
    let rows = client
        .query_typed(
            "SELECT DISTINCT ON (kind) kind, description, args_schema, timeout_ms
             FROM runner_kinds
             WHERE amqp_prefix = $1
               AND heartbeat_at > now() - $2::int8 * interval '1 millisecond'
             ORDER BY kind, heartbeat_at DESC",
            &[(&amqp_prefix, Type::TEXT), (&millis(grace), Type::INT8)],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            Some(KindSpec {
                // The table's CHECK holds the pattern; a row that does not
                // parse is skipped rather than trusted.
                name: KindName::parse(row.get(0)).ok()?,
                description: row.get(1),
                args_schema: row.get::<_, Json<serde_json::Value>>(2).0,
                timeout_ms: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
            })
        })
        .collect())
}

/// Deletes the rows of runners silent for longer than `older_than`.
pub async fn prune<C: GenericClient>(
    client: &C,
    older_than: Duration,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute_typed(
            "DELETE FROM runner_kinds
             WHERE heartbeat_at < now() - $1::int8 * interval '1 millisecond'",
            &[(&millis(older_than), Type::INT8)],
        )
        .await
}

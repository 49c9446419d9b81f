//! Schema migrations into Sluice's own schema, applied by `sluice-jobs
//! migrate` (with the grants of [`crate::grants`]) or, when the schema is
//! behind and the process's role owns it, by either binary at start; all
//! under an advisory lock. A process whose schema is current applies
//! nothing, so the gateway and the runner can run as roles that may not
//! create anything.
//!
//! Until this version Sluice's tables lived in `public`. A database whose
//! `public` schema holds Sluice's migration history is such a deployment:
//! its tables move into the configured schema, once, before the pending
//! migrations run. Any other `public.jobs` or `public.events` is the
//! application's and is never touched.

use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use crate::config::DatabaseConfig;
use crate::grants::{self, Roles};
use crate::pool::StoreError;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Lock id held while migrating, so a gateway and a runner starting together
/// do not both apply the same migration ("SLUICE" in ASCII).
const MIGRATION_LOCK: i64 = 0x534c_5549_4345;

/// The tables an earlier version created in `public` (the demo `items` table
/// stays where it is: the application's clients expect it there).
const MOVED_TABLES: [&str; 4] = ["jobs", "user_seq", "events", "refinery_schema_history"];

/// Creates the schema if needed, moves an earlier deployment's tables into
/// it, applies pending migrations, then the grants for the gateway's and
/// the runner's roles. Idempotent; `sluice-jobs migrate`.
pub async fn migrate(pool: &Pool, config: &DatabaseConfig) -> Result<(), StoreError> {
    let applied = apply_migrations(pool, config).await?;
    if !applied.granted.is_empty() {
        tracing::info!(roles = ?applied.granted, schema = %config.schema, "granted the processes' roles");
    }
    for role in applied.missing {
        tracing::warn!(%role, "no such database role: nothing granted to it (see docs/architecture.md, \"Database roles\")");
    }
    Ok(())
}

/// At start: nothing when the schema is at this binary's version (no
/// statement that needs more than reading); otherwise [`migrate`], which
/// only the schema's owner may do. A role that may not is told to run
/// `sluice-jobs migrate` as the owner.
pub async fn ensure_current(pool: &Pool, config: &DatabaseConfig) -> Result<(), StoreError> {
    let needs = latest_version();
    let at = applied_version(pool, &config.schema).await?;
    if at >= needs {
        return Ok(());
    }
    match migrate(pool, config).await {
        Err(e) if is_permission_error(&e) => Err(StoreError::Behind {
            schema: config.schema.clone(),
            at,
            needs,
            reason: e.to_string(),
        }),
        outcome => outcome,
    }
}

/// The newest migration this binary carries.
fn latest_version() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// The newest migration applied to `schema` (0 when none is).
async fn applied_version(pool: &Pool, schema: &str) -> Result<i32, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_typed_one(
            "SELECT to_regclass($1 || '.refinery_schema_history') IS NOT NULL",
            &[(&schema, Type::TEXT)],
        )
        .await?;
    if !row.get::<_, bool>(0) {
        return Ok(0);
    }
    // The name was checked to be a plain identifier (DatabaseConfig::validate).
    let row = client
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {schema}.refinery_schema_history"),
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Whether `e` is PostgreSQL refusing for want of a privilege.
fn is_permission_error(e: &StoreError) -> bool {
    let code = match e {
        StoreError::Query(e) => e.code(),
        StoreError::Migration(e) => {
            // refinery keeps the driver's error as its source.
            std::error::Error::source(e)
                .and_then(|s| s.downcast_ref::<tokio_postgres::Error>())
                .and_then(|e| e.code())
        }
        _ => None,
    };
    code == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
}

/// Creates the schema if needed, moves an earlier deployment's tables into
/// it, applies pending migrations and the grants, all under the migration
/// lock (two grant runs at once could collide on the same catalog rows).
async fn apply_migrations(
    pool: &Pool,
    config: &DatabaseConfig,
) -> Result<grants::Applied, StoreError> {
    let schema = config.schema.as_str();
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let outcome = async {
        // The name was checked to be a plain identifier (DatabaseConfig::validate).
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await?;
        move_from_public(&client, schema).await?;
        let client_ref: &mut tokio_postgres::Client = &mut client;
        let report = embedded::migrations::runner().run_async(client_ref).await?;
        for m in report.applied_migrations() {
            tracing::info!(migration = %m, %schema, "applied migration");
        }
        let roles = Roles {
            schema,
            gateway: &config.gateway_role,
            runner: &config.runner_role,
        };
        Ok::<_, StoreError>(grants::apply(client_ref, roles).await?)
    }
    .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    outcome
}

/// Moves the tables of a deployment from before the schema existed.
async fn move_from_public(client: &tokio_postgres::Client, schema: &str) -> Result<(), StoreError> {
    let earlier = client
        .query_typed_one(
            "SELECT to_regclass('public.refinery_schema_history') IS NOT NULL
                AND to_regclass('public.user_seq') IS NOT NULL
                AND to_regclass($1 || '.refinery_schema_history') IS NULL
                AND EXISTS (SELECT 1 FROM information_schema.columns
                            WHERE table_schema = 'public' AND table_name = 'events'
                              AND column_name = 'frame')",
            &[(&schema, Type::TEXT)],
        )
        .await?
        .get::<_, bool>(0);
    if !earlier {
        return Ok(());
    }
    let mut sql = String::from("BEGIN;");
    for table in MOVED_TABLES {
        sql.push_str(&format!("ALTER TABLE public.{table} SET SCHEMA {schema};"));
    }
    // V1 no longer creates the demo table; record its edited checksum so the
    // history matches the migrations this binary carries.
    if let Some(v1) = embedded::migrations::runner()
        .get_migrations()
        .iter()
        .find(|m| m.version() == 1)
    {
        sql.push_str(&format!(
            "UPDATE {schema}.refinery_schema_history SET checksum = '{}' WHERE version = 1;",
            v1.checksum()
        ));
    }
    sql.push_str("COMMIT;");
    client.batch_execute(&sql).await?;
    tracing::warn!(%schema, "moved Sluice's tables out of `public` into their own schema");
    Ok(())
}

//! Schema migrations into Sluice's own schema, applied by either binary at
//! start under an advisory lock, or by `sluice-jobs migrate`.
//!
//! Until this version Sluice's tables lived in `public`. A database whose
//! `public` schema holds Sluice's migration history is such a deployment:
//! its tables move into the configured schema, once, before the pending
//! migrations run. Any other `public.jobs` or `public.events` is the
//! application's and is never touched.

use deadpool_postgres::Pool;
use tokio_postgres::types::Type;

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
/// it, and applies pending migrations. Idempotent.
pub async fn migrate(pool: &Pool, schema: &str) -> Result<(), StoreError> {
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
        Ok::<_, StoreError>(embedded::migrations::runner().run_async(client_ref).await?)
    }
    .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    for m in outcome?.applied_migrations() {
        tracing::info!(migration = %m, %schema, "applied migration");
    }
    Ok(())
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

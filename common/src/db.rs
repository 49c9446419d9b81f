//! The PostgreSQL pool and schema migrations.

use std::time::Duration;

use deadpool_postgres::{ManagerConfig, Pool, PoolConfig, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::NoTls;

use crate::config::DatabaseConfig;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Lock id held while migrating, so a gateway and a runner starting together
/// do not both apply the same migration ("SLUICE" in ASCII).
const MIGRATION_LOCK: i64 = 0x534c_5549_4345;

/// Database failures at this crate's boundary.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database settings: {0}")]
    Config(String),
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
}

/// Builds the pool. Connections open lazily; a PostgreSQL restart is
/// survived because the pool replaces broken connections.
pub fn pool(config: &DatabaseConfig) -> Result<Pool, DbError> {
    let mut cfg = deadpool_postgres::Config::new();
    cfg.url = Some(config.url.clone());
    // Verified: a pooled connection is checked with an empty query before
    // reuse. After a PostgreSQL restart (or a terminated backend) a dead
    // connection is not yet marked closed; Fast recycling would hand it out
    // and the next query would fail. One local round trip per checkout.
    cfg.manager = Some(ManagerConfig {
        recycling_method: RecyclingMethod::Verified,
    });
    let mut pool_cfg = PoolConfig::new(config.pool_size);
    pool_cfg.timeouts = Timeouts {
        wait: Some(config.pool_wait()),
        create: Some(Duration::from_secs(5)),
        recycle: Some(Duration::from_secs(5)),
    };
    cfg.pool = Some(pool_cfg);
    cfg.create_pool(Some(Runtime::Tokio1), NoTls)
        .map_err(|e| DbError::Config(e.to_string()))
}

/// Waits until the database answers, up to `patience`.
pub async fn wait_ready(pool: &Pool, patience: Duration) -> Result<(), DbError> {
    crate::retry("reaching the database", patience, || async {
        let client = pool.get().await?;
        client.simple_query("SELECT 1").await?;
        Ok::<_, DbError>(())
    })
    .await
}

/// Applies pending migrations under an advisory lock. Idempotent.
pub async fn migrate(pool: &Pool) -> Result<(), DbError> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let client_ref: &mut tokio_postgres::Client = &mut client;
    let outcome = embedded::migrations::runner().run_async(client_ref).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = outcome?;
    for m in report.applied_migrations() {
        tracing::info!(migration = %m, "applied migration");
    }
    Ok(())
}

//! The PostgreSQL pool: every connection Sluice opens comes from here, with
//! its search path set to Sluice's own schema and TLS as `database.url`'s
//! `sslmode` asks (see [`crate::tls`]).

use std::time::Duration;

use crate::config::DatabaseConfig;
use crate::tls::Connector;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};

/// Database failures at this crate's boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `database.url` or the pool settings could not be used.
    #[error("invalid database settings: {0}")]
    Config(String),
    /// No pooled connection within `pool_wait_ms`, or one could not be opened.
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
    /// Applying the migrations failed.
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    /// The schema is older than this binary and this process's role may
    /// not migrate it.
    #[error(
        "schema `{schema}` is at migration {at} and this binary needs {needs}, but this database role may not migrate it ({reason}); run `sluice-jobs migrate` with the schema owner's database.url first"
    )]
    Behind {
        /// The schema.
        schema: String,
        /// Its newest applied migration.
        at: i32,
        /// The newest this binary carries.
        needs: i32,
        /// PostgreSQL's refusal.
        reason: String,
    },
}

/// Builds the pool. Connections open lazily; a PostgreSQL restart is
/// survived because the pool replaces broken connections.
///
/// Every connection's `search_path` is Sluice's schema alone, so Sluice's
/// unqualified statements can never reach the application's tables of the
/// same name; application tables are always named with their schema.
pub fn pool(config: &DatabaseConfig) -> Result<Pool, StoreError> {
    pool_and_connector(config).map(|(pool, _)| pool)
}

/// [`pool`], and the TLS connector its connections use, for what connects
/// to PostgreSQL outside the pool (a query cancel opens its own connection,
/// which a TLS-only server refuses in plain text).
pub fn pool_and_connector(config: &DatabaseConfig) -> Result<(Pool, Connector), StoreError> {
    let (pg, tls) = session_config(config)?;
    // Verified: a pooled connection is checked with an empty query before
    // reuse. After a PostgreSQL restart (or a terminated backend) a dead
    // connection is not yet marked closed; Fast recycling would hand it out
    // and the next query would fail. One local round trip per checkout.
    let manager = Manager::from_config(
        pg,
        tls.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(config.pool_size)
        .timeouts(Timeouts {
            wait: Some(config.pool_wait()),
            create: Some(Duration::from_secs(5)),
            recycle: Some(Duration::from_secs(5)),
        })
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Config(e.to_string()))?;
    Ok((pool, tls))
}

/// The connection settings every Sluice connection uses (the pool's, and
/// the relay's listening connection): `database.url` with TLS as its
/// `sslmode` asks, Sluice's schema as the only search path, and
/// server-side keepalives. The root certificates are read here, at start:
/// a bad file fails the start, not the first connect.
pub fn session_config(
    config: &DatabaseConfig,
) -> Result<(tokio_postgres::Config, Connector), StoreError> {
    let (mut pg, tls) = crate::tls::connect_config(&config.url)?;
    // Server-side keepalives: a session whose client host vanished (power
    // lost, network cut) is ended by PostgreSQL within about 11 s instead
    // of the kernel's two hours, and the job leases it held are freed with
    // it. A client process that died is noticed at once (its socket closes).
    let session = format!(
        "-c search_path={} -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3",
        config.schema
    );
    let options = match pg.get_options() {
        Some(theirs) if !theirs.is_empty() => format!("{theirs} {session}"),
        _ => session,
    };
    pg.options(&options);
    Ok((pg, tls))
}

/// One check that the database answers; callers wait for it at start-up
/// with bounded patience.
pub async fn check(pool: &Pool) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}

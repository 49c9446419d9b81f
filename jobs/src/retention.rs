//! Pruning stored events past their retention (how far back a client can
//! resume), ended jobs past theirs, and idempotency keys (of publications
//! and of `POST /v1/jobs`) past their 24 hours. Every runner prunes; the deletes are
//! idempotent.

use std::time::Duration;

use deadpool_postgres::Pool;
use sluice_store::retention;
use tokio_util::sync::CancellationToken;

/// How often old events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How long events and ended jobs are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Stored events, for resume.
    pub events: Duration,
    /// Ended jobs, for reads and listings.
    pub jobs: Duration,
}

/// Prunes at start and every minute until `shutdown`.
pub async fn run(pool: Pool, keep: Retention, shutdown: CancellationToken) {
    loop {
        match prune(&pool, keep.events).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "pruned events past retention"),
            Err(e) => tracing::warn!(error = %e, "event pruning failed"),
        }
        match prune_jobs(&pool, keep.jobs).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "pruned ended jobs past retention"),
            Err(e) => tracing::warn!(error = %e, "job pruning failed"),
        }
        match prune_keys(&pool).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(keys = n, "pruned idempotency keys past 24 hours"),
            Err(e) => tracing::warn!(error = %e, "publication key pruning failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn prune(pool: &Pool, keep: Duration) -> Result<u64, sluice_store::StoreError> {
    let client = pool.get().await?;
    Ok(retention::prune(&**client, keep).await?)
}

async fn prune_jobs(pool: &Pool, keep: Duration) -> Result<u64, sluice_store::StoreError> {
    let client = pool.get().await?;
    Ok(retention::prune_jobs(&**client, keep).await?)
}

async fn prune_keys(pool: &Pool) -> Result<u64, sluice_store::StoreError> {
    let client = pool.get().await?;
    let publications = sluice_store::publish::prune_keys(&**client).await?;
    let jobs = sluice_store::job_keys::prune(&**client).await?;
    Ok(publications + jobs)
}

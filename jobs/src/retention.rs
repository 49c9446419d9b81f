//! Pruning stored events past the retention, which is how far back a
//! client can resume. Every runner prunes; the deletes are idempotent.

use std::time::Duration;

use deadpool_postgres::Pool;
use sluice_store::retention;
use tokio_util::sync::CancellationToken;

/// How often old events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Prunes at start and every minute until `shutdown`.
pub async fn run(pool: Pool, retention: Duration, shutdown: CancellationToken) {
    loop {
        match prune(&pool, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "pruned events past retention"),
            Err(e) => tracing::warn!(error = %e, "event pruning failed"),
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

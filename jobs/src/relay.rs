//! The outbox relay: publishes events that were committed but never
//! published (the runner died between commit and publish, or the broker
//! was away). Several runners may relay at once; sessions drop duplicates
//! by seq. It also prunes events older than the retention, which is how far
//! back a client can resume.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use sluice_common::events;
use tokio_util::sync::CancellationToken;

use sluice_common::publisher::EventPublisher;

/// Events younger than this are left to the runner that is publishing them.
const MIN_AGE: Duration = Duration::from_secs(2);
/// Events relayed per round.
const BATCH: i64 = 500;

/// How often old events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Runs until `shutdown`, one round every `interval`.
pub async fn run(
    pool: Pool,
    publisher: Arc<EventPublisher>,
    interval: Duration,
    retention: Duration,
    shutdown: CancellationToken,
) {
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        match round(&pool, &publisher).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "relayed unpublished events"),
            Err(e) => tracing::warn!(error = %e, "outbox relay round failed"),
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(tokio::time::Instant::now());
            match prune(&pool, retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "pruned events past retention"),
                Err(e) => tracing::warn!(error = %e, "event pruning failed"),
            }
        }
    }
}

async fn prune(pool: &Pool, retention: Duration) -> anyhow::Result<u64> {
    let client = pool.get().await?;
    Ok(events::prune(&**client, retention).await?)
}

async fn round(pool: &Pool, publisher: &EventPublisher) -> anyhow::Result<usize> {
    let client = pool.get().await?;
    let pending = events::unpublished(&**client, MIN_AGE, BATCH).await?;
    let mut sent = 0;
    for event in &pending {
        if publisher.publish_stored(&**client, event).await {
            sent += 1;
        } else {
            break;
        }
    }
    Ok(sent)
}

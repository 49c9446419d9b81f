//! The outbox relay: publishes what was committed but never published (the
//! process died between commit and publish, or the broker was away).
//! Several runners may relay at once; sessions drop duplicates by seq.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use sluice_store::outbox;
use tokio_util::sync::CancellationToken;

use crate::publisher::Publisher;

/// Events younger than this are left to the process that is publishing them.
const MIN_AGE: Duration = Duration::from_secs(2);
/// Events relayed per round.
const BATCH: i64 = 500;

/// Why a relay round stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// No pooled connection.
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Reading the outbox failed.
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
}

/// Runs until `shutdown`, one round every `interval`.
pub async fn run(
    pool: Pool,
    publisher: Arc<Publisher>,
    interval: Duration,
    shutdown: CancellationToken,
) {
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
    }
}

/// One round: publishes the oldest unpublished events, oldest first, and
/// returns how many went out.
pub async fn round(pool: &Pool, publisher: &Publisher) -> Result<usize, RelayError> {
    let client = pool.get().await?;
    let pending = outbox::unpublished(&**client, MIN_AGE, BATCH).await?;
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

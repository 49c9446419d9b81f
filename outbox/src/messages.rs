//! The message relay: sends the messages backends published (a commit of
//! the database function `publish`, from the HTTP API or from an
//! application's own transaction) to the events exchange, from where every
//! gateway delivers them like job events.
//!
//! Nothing else publishes a message (the gateway's broker user may not
//! publish events, and an application's transaction has no broker), so the
//! relay sends each one as soon as it is committed: the function's
//! `pg_notify` wakes it through a [`Listener`], and it also looks every
//! `poll` in case a notification was lost (the listening connection broke,
//! the database restarted). Several runners share the work: rows are taken
//! with `SKIP LOCKED`.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use sluice_store::listen::Listener;
use sluice_store::{DatabaseConfig, StoredEvent, outbox, publish};
use tokio_util::sync::CancellationToken;

use crate::publisher::Publisher;
use crate::relay::RelayError;

/// Messages taken per transaction; their publishes are in flight together.
const BATCH: i64 = 2000;

/// Runs until `shutdown`: sends what is committed, then waits for a
/// notification or `poll`, whichever comes first.
pub async fn run(
    pool: Pool,
    database: DatabaseConfig,
    publisher: Arc<Publisher>,
    poll: Duration,
    shutdown: CancellationToken,
) {
    let channel = publish::channel(&database.schema);
    let mut listener: Option<Listener> = None;
    let mut listen_failures = 0u32;
    loop {
        if listener.is_none() {
            // Listening first: a publication committed after this point
            // wakes the wait below even if the drain misses it.
            match Listener::connect(&database, &channel).await {
                Ok(l) => {
                    if listen_failures > 0 {
                        tracing::info!("listening for published messages again");
                    }
                    listen_failures = 0;
                    listener = Some(l);
                }
                Err(e) => {
                    if listen_failures.is_multiple_of(10) {
                        tracing::warn!(error = %e, "cannot listen for published messages; polling");
                    }
                    listen_failures += 1;
                }
            }
        }
        match drain(&pool, &publisher).await {
            Ok(0) => {}
            Ok(sent) => tracing::debug!(sent, "relayed published messages"),
            Err(e) => tracing::warn!(error = %e, "relaying published messages failed"),
        }
        let woken = async {
            match listener.as_mut() {
                Some(l) => l.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            still = woken => if !still { listener = None },
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Publishes every committed message not yet published, a batch per
/// transaction; returns how many went out. A batch in which nothing got
/// through ends the drain (the broker is away; the next wake-up retries).
/// A message the broker refused while it took others is counted, and set
/// aside after [`outbox::SET_ASIDE_AFTER`] such rounds, as the relay does.
pub async fn drain(pool: &Pool, publisher: &Publisher) -> Result<usize, RelayError> {
    let mut sent = 0;
    loop {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let batch = outbox::take_unpublished_messages(&*tx, BATCH).await?;
        // All in flight at once on the confirm channel: one confirm wait
        // per batch, not per message. AMQP keeps a channel's publishes in
        // order, so a user's messages still arrive in seq order.
        let results =
            futures_util::future::join_all(batch.iter().map(|m| publisher.send_event(m))).await;
        let (ok, failed): (Vec<(&StoredEvent, bool)>, Vec<_>) = batch
            .iter()
            .zip(results.iter().map(Result::is_ok))
            .partition(|(_, ok)| *ok);
        let ok: Vec<&StoredEvent> = ok.into_iter().map(|(m, _)| m).collect();
        outbox::mark_all_published(&*tx, &ok).await?;
        if !ok.is_empty() {
            for (message, _) in &failed {
                tracing::warn!(user = %message.user, seq = message.seq, "a message the broker refused while it took others; counting it");
                outbox::count_event_failure(&*tx, &message.user, message.seq).await?;
            }
        }
        tx.commit().await?;
        sent += ok.len();
        if ok.is_empty() || batch.len() < BATCH as usize {
            return Ok(sent);
        }
    }
}

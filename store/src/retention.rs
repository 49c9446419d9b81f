//! Retention: how far back a client can resume.

use std::time::Duration;

use tokio_postgres::GenericClient;

/// Deletes events older than `retention`; returns how many.
pub async fn prune<C: GenericClient>(
    client: &C,
    retention: Duration,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM events WHERE created_at < now() - make_interval(secs => $1)",
            &[&retention.as_secs_f64()],
        )
        .await
}

//! Test data the batch tests share: tagged rows for `items`, and the
//! database reads that check what landed and what was recorded.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::system::db;

/// `count` rows for `items` with ids from `first`, each value `<tag>-<id>`,
/// so that [`count_tagged`] finds exactly the rows this batch wrote.
pub fn tagged_rows(first: i64, count: i64, tag: &str) -> Value {
    Value::Array(
        (first..first + count)
            .map(|id| json!({ "id": id, "value": format!("{tag}-{id}") }))
            .collect(),
    )
}

/// How many rows in `first..first + count` hold the value [`tagged_rows`]
/// gave them.
pub async fn count_tagged(first: i64, count: i64, tag: &str) -> i64 {
    db().await
        .query_one(
            "SELECT count(*) FROM items WHERE id >= $1 AND id < $2 AND value = $3 || '-' || id::text",
            &[&first, &(first + count), &tag],
        )
        .await
        .expect("count tagged rows")
        .get(0)
}

/// The statuses of the events stored for `job`, in seq order.
pub async fn stored_statuses(job: Uuid) -> Vec<String> {
    db().await
        .query(
            "SELECT status FROM events WHERE job_id = $1 ORDER BY seq",
            &[&job],
        )
        .await
        .expect("stored events")
        .into_iter()
        .map(|r| r.get(0))
        .collect()
}

/// How many jobs `user` has recorded (in any status).
pub async fn jobs_of(user: &str) -> i64 {
    db().await
        .query_one("SELECT count(*) FROM jobs WHERE user_id = $1", &[&user])
        .await
        .expect("counting jobs")
        .get(0)
}

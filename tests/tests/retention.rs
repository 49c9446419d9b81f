//! The runner prunes stored events older than `event_retention_hours`.

use std::time::Duration;

use sluice_tests::system::db;
use sluice_tests::{System, SystemOptions, eventually, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_past_retention_are_pruned_and_recent_ones_kept() {
    let user = unique_user("retention");
    let conn = db().await;
    for (seq, age) in [(1i64, "3 hours"), (2, "2 hours"), (3, "10 minutes")] {
        conn.execute(
            "INSERT INTO events (user_id, seq, job_id, status, frame, published, created_at)
             VALUES ($1, $2, gen_random_uuid(), 'done', '{}', true, now() - $3::text::interval)",
            &[&user, &seq, &age],
        )
        .await
        .unwrap();
    }
    let _system = System::start(
        SystemOptions::default()
            .runner("SLUICE_RUNNER__EVENT_RETENTION_HOURS", 1)
            .runner("SLUICE_RUNNER__RELAY_INTERVAL_MS", 200),
    )
    .await;
    let kept: Vec<i64> = eventually(
        Duration::from_secs(10),
        "old events to be pruned",
        || async {
            let seqs: Vec<i64> = conn
                .query(
                    "SELECT seq FROM events WHERE user_id = $1 ORDER BY seq",
                    &[&user],
                )
                .await
                .ok()?
                .into_iter()
                .map(|r| r.get(0))
                .collect();
            (seqs.len() < 3).then_some(seqs)
        },
    )
    .await;
    assert_eq!(kept, [3], "only the event younger than the retention stays");
}

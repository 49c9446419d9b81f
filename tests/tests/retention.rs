//! The runner prunes stored events older than `event_retention_hours`, as
//! a prefix of each user's log, so a resume always knows what is gone.

use std::time::Duration;

use sluice_proto::ServerFrame;
use sluice_tests::system::db;
use sluice_tests::{Client, System, SystemOptions, eventually, token, unique_user};

/// Stores events for `user` with the given (seq, age) pairs.
async fn store_events(conn: &tokio_postgres::Client, user: &str, events: &[(i64, &str)]) {
    for (seq, age) in events {
        conn.execute(
            "INSERT INTO events (user_id, seq, job_id, status, frame, published, created_at)
             VALUES ($1, $2, gen_random_uuid(), 'done', '{}', true, now() - $3::text::interval)",
            &[&user, seq, age],
        )
        .await
        .unwrap();
    }
    let last = events.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
    conn.execute(
        "INSERT INTO user_seq (user_id, last_seq) VALUES ($1, $2)",
        &[&user, &last],
    )
    .await
    .unwrap();
}

/// The user's stored seqs, in order.
async fn seqs(conn: &tokio_postgres::Client, user: &str) -> Vec<i64> {
    conn.query(
        "SELECT seq FROM events WHERE user_id = $1 ORDER BY seq",
        &[&user],
    )
    .await
    .unwrap()
    .into_iter()
    .map(|r| r.get(0))
    .collect()
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_event_in_the_middle_prunes_the_prefix_and_resume_says_so() {
    // A long transaction's event: seq 2 looks older than seq 1 and 3.
    let user = unique_user("hole");
    let conn = db().await;
    store_events(
        &conn,
        &user,
        &[(1, "10 minutes"), (2, "3 hours"), (3, "10 minutes")],
    )
    .await;
    let system = System::start(
        SystemOptions::default()
            .runner("SLUICE_RUNNER__EVENT_RETENTION_HOURS", 1)
            .runner("SLUICE_RUNNER__RELAY_INTERVAL_MS", 200),
    )
    .await;
    let kept = eventually(
        Duration::from_secs(10),
        "the prefix to be pruned",
        || async {
            let kept = seqs(&conn, &user).await;
            (kept.len() < 3).then_some(kept)
        },
    )
    .await;
    assert_eq!(kept, [3], "no hole is left below a kept seq");

    // Resuming from below the pruned event cannot be served in full.
    for (after, resumed) in [(0, false), (1, false), (2, true)] {
        let (_client, welcome) =
            Client::connect_and_resume(&system.ws_url(), &token(&user), after).await;
        match welcome {
            ServerFrame::Welcome {
                resumed: r,
                last_seq,
                ..
            } => assert_eq!((r, last_seq), (resumed, 3), "resume after {after}"),
            other => panic!("expected welcome, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_jobs_past_their_retention_are_deleted_and_others_kept() {
    let user = unique_user("job-retention");
    let conn = db().await;
    // (status, hours since its last change): only the old ended ones go.
    let jobs = [
        ("done", 3),
        ("failed", 3),
        ("cancelled", 3),
        ("done", 0),
        ("running", 3),
        ("created", 3),
    ];
    let mut ids = Vec::new();
    for (status, hours) in jobs {
        let id = uuid::Uuid::now_v7();
        conn.execute(
            "INSERT INTO jobs (id, user_id, kind, status, updated_at)
             VALUES ($1, $2, 'sleep', $3, now() - make_interval(hours => $4))",
            &[&id, &user, &status, &hours],
        )
        .await
        .unwrap();
        ids.push(id);
    }
    let _system =
        System::start(SystemOptions::default().runner("SLUICE_RUNNER__JOB_RETENTION_HOURS", 1))
            .await;
    let kept: Vec<uuid::Uuid> = eventually(
        Duration::from_secs(10),
        "old ended jobs to be pruned",
        || async {
            let kept: Vec<uuid::Uuid> = conn
                .query(
                    "SELECT id FROM jobs WHERE user_id = $1 ORDER BY id",
                    &[&user],
                )
                .await
                .ok()?
                .into_iter()
                .map(|r| r.get(0))
                .collect();
            (kept.len() < jobs.len()).then_some(kept)
        },
    )
    .await;
    assert_eq!(
        kept,
        ids[3..],
        "the recent job and the unfinished ones stay"
    );
}

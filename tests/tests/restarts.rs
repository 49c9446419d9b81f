//! Dependencies restarted for real under load: PostgreSQL (immediate mode)
//! during a batch, and RabbitMQ with jobs in flight and sessions open.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use sluice_proto::{EventStatus, ServerFrame};
use sluice_tests::client::Received;
use sluice_tests::data::{count_tagged, tagged_rows};
use sluice_tests::system::{RestoreServices, db, services};
use sluice_tests::{Client, System, SystemOptions, eventually, token, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_during_a_batch_the_job_ends_done_exactly_once() {
    let system =
        System::start(SystemOptions::default().runner("SLUICE_RUNNER__RETRY_DELAY_MS", 300)).await;
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("pg"))).await;
    let (first, count) = (5_000_000i64, 150_000i64);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let rows = tagged_rows(first, count, &tag);
    let job = client
        .submit(
            "pg",
            "batch_upsert",
            json!({ "table": "items", "key": ["id"], "rows": rows }),
        )
        .await;
    match client.next_frame().await {
        ServerFrame::Event(e) if e.status == EventStatus::Running => {}
        other => panic!("expected running, got {other:?}"),
    }
    services(&["restart-pg", "immediate"]);

    let events = client.events_until_terminal(job).await;
    assert_eq!(
        events.last().unwrap().status,
        EventStatus::Done,
        "{events:?}"
    );
    let conn = db().await;
    let row = conn
        .query_one("SELECT status, attempts FROM jobs WHERE id = $1", &[&job])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "done");
    assert!(
        row.get::<_, i32>(1) >= 2,
        "the interrupted attempt was retried"
    );
    let done: i64 = conn
        .query_one(
            "SELECT count(*) FROM events WHERE job_id = $1 AND status = 'done'",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(done, 1);
    assert_eq!(count_tagged(first, count, &tag).await, count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_with_20_jobs_in_flight_and_50_sessions_loses_nothing() {
    let system = System::start(SystemOptions::default()).await;
    // Warm: a job end to end, and quorum queues that have existed a while
    // (see broker_outage.rs for why).
    let (mut warm, _) = Client::hello(&system.ws_url(), &token(&unique_user("warm"))).await;
    let job = warm.submit("w", "sleep", json!({ "ms": 1 })).await;
    warm.events_until_terminal(job).await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    let mut sessions = Vec::new();
    for i in 0..50 {
        sessions.push(
            Client::hello(&system.ws_url(), &token(&unique_user(&format!("b{i}"))))
                .await
                .0,
        );
    }
    // 20 jobs accepted, from the first 20 sessions, long enough to span the outage.
    let mut jobs = Vec::new();
    for (i, client) in sessions.iter_mut().take(20).enumerate() {
        jobs.push(
            client
                .submit(&format!("j{i}"), "sleep", json!({ "ms": 2500 }))
                .await,
        );
    }
    let guard = RestoreServices;
    services(&["kill-rabbit"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(guard); // start-rabbit

    // Every accepted job ends with exactly one terminal event on its session.
    let mut terminal: HashMap<uuid::Uuid, Vec<EventStatus>> = HashMap::new();
    for (client, job) in sessions.iter_mut().zip(&jobs) {
        loop {
            match client.receive(Duration::from_secs(60)).await {
                Received::Frame(ServerFrame::Event(e)) if e.job_id == *job => {
                    if e.status.is_terminal() {
                        terminal.entry(e.job_id).or_default().push(e.status);
                        break;
                    }
                }
                Received::Frame(_) => {}
                Received::Closed(code) => panic!("session closed ({code:?}) during the outage"),
            }
        }
        if let Some(Received::Frame(ServerFrame::Event(e))) =
            client.try_receive(Duration::from_millis(200)).await
        {
            panic!("a second event after the terminal one: {e:?}");
        }
    }
    for job in &jobs {
        assert_eq!(
            terminal.get(job).map(Vec::as_slice),
            Some(&[EventStatus::Done][..]),
            "{job}"
        );
    }
    let conn = db().await;
    let stored: i64 = eventually(Duration::from_secs(5), "terminal events stored", || async {
        let n: i64 = conn
            .query_one(
                "SELECT count(*) FROM events WHERE job_id = ANY($1) AND status = 'done'",
                &[&jobs],
            )
            .await
            .ok()?
            .get(0);
        Some(n)
    })
    .await;
    assert_eq!(stored, 20, "one done event per job, no duplicates");
}

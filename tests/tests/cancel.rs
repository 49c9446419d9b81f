//! Cancellation and time limits: a queued job never runs, a running job
//! stops within a second with its query cancelled on the server, and a job
//! over its limit fails with `timeout` leaving a healthy pool.

use std::time::{Duration, Instant};

use serde_json::json;
use sluice_proto::{ErrorCode, EventStatus, ServerFrame};
use sluice_tests::system::db;
use sluice_tests::{Client, System, SystemOptions, eventually, token, unique_user};

/// Backends of the Sluice role currently inside `pg_sleep`.
async fn sleeping_backends() -> i64 {
    db().await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE state = 'active' AND query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn job_row(job: uuid::Uuid) -> (String, i32) {
    let row = db()
        .await
        .query_one("SELECT status, attempts FROM jobs WHERE id = $1", &[&job])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_queued_job_never_runs() {
    let mut system = System::start(SystemOptions {
        no_runner: true,
        ..Default::default()
    })
    .await;
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("cq"))).await;
    let job = client.submit("q", "sleep", json!({ "ms": 100 })).await;
    client.cancel(job).await;
    // The gateway records the request at once; ending the job and writing
    // its `cancelled` event is a runner's (the gateway's role may do
    // neither), so with no runner the job waits, cancel requested.
    eventually(
        Duration::from_secs(5),
        "the cancel to be recorded",
        || async {
            let row = db()
                .await
                .query_one(
                    "SELECT status, cancel_requested FROM jobs WHERE id = $1",
                    &[&job],
                )
                .await
                .unwrap();
            let found: (String, bool) = (row.get(0), row.get(1));
            (found == ("queued".to_owned(), true)).then_some(())
        },
    )
    .await;

    // The runner starts and ends it (its sweep, or its claim of the
    // message, whichever comes first): never running.
    let started = Instant::now();
    system.start_runner();
    let events = client.events_until_terminal(job).await;
    assert_eq!(Client::statuses(&events), [EventStatus::Cancelled]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ended after {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(job_row(job).await, ("cancelled".to_owned(), 0));
    if let Some(received) = client.try_receive(Duration::from_millis(300)).await {
        panic!("no event may follow a cancelled job, got {received:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_stops_within_a_second_and_frees_its_backend() {
    let system = System::start(SystemOptions::default()).await;
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("cr"))).await;
    let mut latencies = Vec::new();
    for round in 0..3 {
        let job = client
            .submit(&format!("r{round}"), "sleep", json!({ "ms": 30_000 }))
            .await;
        match client.next_frame().await {
            ServerFrame::Event(e) if e.job_id == job && e.status == EventStatus::Running => {}
            other => panic!("expected running, got {other:?}"),
        }
        eventually(
            Duration::from_secs(5),
            "the sleep to reach the database",
            || async { (sleeping_backends().await >= 1).then_some(()) },
        )
        .await;
        let started = Instant::now();
        client.cancel(job).await;
        let events = client.events_until_terminal(job).await;
        let latency = started.elapsed();
        assert_eq!(
            events.last().unwrap().status,
            EventStatus::Cancelled,
            "{events:?}"
        );
        assert!(
            latency < Duration::from_secs(1),
            "cancelled after {latency:?}"
        );
        latencies.push(latency);
        eventually(
            Duration::from_secs(1),
            "no backend left sleeping",
            || async { (sleeping_backends().await == 0).then_some(()) },
        )
        .await;
        assert_eq!(job_row(job).await.0, "cancelled");
    }
    eprintln!(
        "cancel latency (submit of cancel -> cancelled event) for running jobs: {latencies:?}"
    );

    // Cancelling an ended job, an unknown one, or garbage is refused.
    client.cancel(uuid::Uuid::now_v7()).await;
    match client.next_frame().await {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::NotFound),
        other => panic!("{other:?}"),
    }
    client
        .send(json!({ "type": "cancel", "job_id": "garbage" }))
        .await;
    match client.next_frame().await {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::NotFound),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_delete_cancels_a_running_job() {
    let system = System::start(SystemOptions::default()).await;
    let user = unique_user("cd");
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&user)).await;
    let job = client.submit("d", "sleep", json!({ "ms": 30_000 })).await;
    match client.next_frame().await {
        ServerFrame::Event(e) if e.status == EventStatus::Running => {}
        other => panic!("expected running, got {other:?}"),
    }
    let response = reqwest::Client::new()
        .delete(system.http_url(&format!("/v1/jobs/{job}")))
        .header("authorization", format!("Bearer {}", token(&user)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["cancel_requested"], true);
    let events = client.events_until_terminal(job).await;
    assert_eq!(events.last().unwrap().status, EventStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_its_limit_fails_with_timeout_and_the_pool_recovers() {
    let system = System::start(
        SystemOptions::default()
            .runner("SLUICE_RUNNER__KIND_TIMEOUTS_MS__SLEEP", 1000)
            // A pool of one: the timed-out job's connection must come back healthy.
            .runner("SLUICE_DATABASE__POOL_SIZE", 2)
            .runner("SLUICE_RUNNER__CONCURRENCY", 1),
    )
    .await;
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("to"))).await;
    let started = Instant::now();
    let job = client.submit("t", "sleep", json!({ "ms": 10_000 })).await;
    let events = client.events_until_terminal(job).await;
    let elapsed = started.elapsed();
    let last = events.last().unwrap();
    assert_eq!(last.status, EventStatus::Failed, "{events:?}");
    assert_eq!(last.error.as_ref().unwrap().code, ErrorCode::Timeout);
    assert!(
        elapsed < Duration::from_secs(3),
        "timed out after {elapsed:?}"
    );
    eventually(
        Duration::from_secs(1),
        "no backend left sleeping",
        || async { (sleeping_backends().await == 0).then_some(()) },
    )
    .await;

    // The same (only) job connection serves the next jobs at once.
    for i in 0..3 {
        let next = client
            .submit(&format!("n{i}"), "sleep", json!({ "ms": 10 }))
            .await;
        let events = client.events_until_terminal(next).await;
        assert_eq!(
            events.last().unwrap().status,
            EventStatus::Done,
            "{events:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_cancels_is_capped_per_session() {
    let system =
        System::start(SystemOptions::default().gateway("SLUICE_GATEWAY__MAX_INFLIGHT_SUBMITS", 2))
            .await;
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("cf"))).await;
    for _ in 0..20 {
        client.cancel(uuid::Uuid::now_v7()).await;
    }
    let (mut overloaded, mut not_found) = (0, 0);
    for _ in 0..20 {
        match client.next_frame().await {
            ServerFrame::Error {
                code: ErrorCode::Overloaded,
                ..
            } => overloaded += 1,
            ServerFrame::Error {
                code: ErrorCode::NotFound,
                ..
            } => not_found += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        overloaded + not_found,
        20,
        "every cancel gets exactly one answer"
    );
    assert!(overloaded > 0, "20 cancels at once must pass a cap of 2");
    assert!(not_found >= 2, "those under the cap are carried out");
    client.ping(1).await;
}

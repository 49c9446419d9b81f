//! Graceful shutdown: a gateway drains (readiness off at once, upgrades
//! refused, sessions closed with 1012 spread over time, exit 0), and a
//! runner finishes or hands back its jobs so none is lost or run twice.

use std::time::{Duration, Instant};

use serde_json::json;
use sluice_proto::{EventStatus, ServerFrame};
use sluice_tests::client::Received;
use sluice_tests::data::stored_statuses;
use sluice_tests::system::db;
use sluice_tests::{Client, System, SystemOptions, eventually, token, unique_user};
use tokio_tungstenite::tungstenite::Error as WsError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_gateway_drains_in_spread_batches_and_exits_0() {
    // SIGTERM and exit codes: processes.
    let mut system = System::start(
        SystemOptions::default()
            .processes()
            .gateway("SLUICE_GATEWAY__DRAIN_SPREAD_MS", 1500)
            .gateway("SLUICE_GATEWAY__DRAIN_GRACE_MS", 4000),
    )
    .await;
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(
            Client::hello(&system.ws_url(), &token(&unique_user(&format!("d{i}"))))
                .await
                .0,
        );
    }
    let started = Instant::now();
    system.terminate_gateway();
    eventually(
        Duration::from_millis(500),
        "/readyz to turn 503",
        || async { (system.http_status("/readyz").await == Some(503)).then_some(()) },
    )
    .await;
    match Client::connect_with(&system.ws_url(), &[]).await {
        Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 503),
        Err(other) => panic!("expected 503 to a new upgrade, got {other}"),
        Ok(_) => panic!("a draining gateway accepted an upgrade"),
    }
    // Sessions keep being served until their turn, then get 1012.
    // Each client waits for its own close, all at once, so each close is
    // timed when it arrives (not when a sequential reader gets to it).
    let waits = clients.into_iter().map(|mut client| {
        tokio::spawn(async move {
            match client.receive(Duration::from_secs(5)).await {
                Received::Closed(code) => (code, started.elapsed()),
                Received::Frame(frame) => panic!("unexpected {frame:?}"),
            }
        })
    });
    let mut closed_after = Vec::new();
    for wait in waits.collect::<Vec<_>>() {
        let (code, after) = wait.await.unwrap();
        assert_eq!(code, Some(1012));
        closed_after.push(after);
    }
    closed_after.sort();
    let (first, last) = (closed_after[0], *closed_after.last().unwrap());
    eprintln!("1012 closes spread from {first:?} to {last:?}");
    assert!(
        last - first >= Duration::from_millis(300),
        "closes were not spread: {closed_after:?}"
    );
    assert!(
        last < Duration::from_millis(2500),
        "closes took too long: {closed_after:?}"
    );
    assert_eq!(system.gateway_exit(Duration::from_secs(5)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_runner_finishes_the_job_in_hand_and_exits_0() {
    let mut system = System::start(SystemOptions::default().processes()).await;
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("sr"))).await;
    let job = client.submit("j", "sleep", json!({ "ms": 1500 })).await;
    match client.next_frame().await {
        ServerFrame::Event(e) if e.status == EventStatus::Running => {}
        other => panic!("expected running, got {other:?}"),
    }
    system.terminate_runner();
    let events = client.events_until_terminal(job).await;
    assert_eq!(events.last().unwrap().status, EventStatus::Done);
    assert_eq!(system.runner_exit(Duration::from_secs(10)).await, Some(0));
    let attempts: i32 = db()
        .await
        .query_one("SELECT attempts FROM jobs WHERE id = $1", &[&job])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_outlasting_the_grace_is_handed_back_and_completes_once() {
    let mut system = System::start(
        SystemOptions::default()
            .processes()
            .runner("SLUICE_RUNNER__SHUTDOWN_GRACE_MS", 500),
    )
    .await;
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("hb"))).await;
    let job = client.submit("j", "sleep", json!({ "ms": 4000 })).await;
    match client.next_frame().await {
        ServerFrame::Event(e) if e.status == EventStatus::Running => {}
        other => panic!("expected running, got {other:?}"),
    }
    let started = Instant::now();
    system.terminate_runner();
    assert_eq!(system.runner_exit(Duration::from_secs(10)).await, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "exit took {:?}",
        started.elapsed()
    );
    if let Some(received) = client.try_receive(Duration::from_millis(300)).await {
        panic!("a handed-back job reports nothing, got {received:?}");
    }
    system.start_runner();
    let events = client.events_until_terminal(job).await;
    assert_eq!(
        events.last().unwrap().status,
        EventStatus::Done,
        "{events:?}"
    );
    let conn = db().await;
    let attempts: i32 = conn
        .query_one("SELECT attempts FROM jobs WHERE id = $1", &[&job])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 2, "handed back once, run again once");
    assert_eq!(stored_statuses(job).await, ["running", "done"]);
}

//! RabbitMQ killed for real: sessions stay open and keep answering pings,
//! submissions are refused with `unavailable` within a second, readiness
//! drops; after the broker returns everything works again without a restart.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_proto::{ErrorCode, EventStatus, ServerFrame};
use sluice_tests::system::{RestoreServices, services};
use sluice_tests::{Client, System, SystemOptions, eventually, token, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_means_prompt_503_and_open_sessions_then_recovery() {
    let system =
        System::start(SystemOptions::default().gateway("SLUICE_AMQP__PUBLISH_TIMEOUT_MS", 1000))
            .await;
    let user = unique_user("outage");
    let bearer = format!("Bearer {}", token(&user));
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&user)).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // A running system first: one job end to end, and queues that have
    // existed for a while. RabbitMQ 3.10 killed within a second or two of
    // creating a quorum queue brings that queue back without a leader
    // ("leader not known" in its log; it never confirms again) - a window
    // of the broker's own, right after a queue's creation, not a state a
    // running deployment is in.
    let warm = client.submit("warm", "sleep", json!({ "ms": 1 })).await;
    client.events_until_terminal(warm).await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    let guard = RestoreServices;
    services(&["kill-rabbit"]);

    // Readiness drops.
    eventually(Duration::from_secs(5), "/readyz to report 503", || async {
        (system.http_status("/readyz").await == Some(503)).then_some(())
    })
    .await;
    // HTTP submissions: 503 within a second.
    let started = Instant::now();
    let response = http
        .post(system.http_url("/v1/jobs"))
        .header("authorization", &bearer)
        .json(&json!({ "kind": "sleep", "args": { "ms": 1 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    // WebSocket submissions: `unavailable` within a second; the session stays up.
    let started = Instant::now();
    client.send(json!({ "type": "submit", "ref": "down", "job": { "kind": "sleep", "args": { "ms": 1 } } })).await;
    match client.next_frame().await {
        ServerFrame::Error {
            reference, code, ..
        } => {
            assert_eq!(
                (reference.as_deref(), code),
                (Some("down"), ErrorCode::Unavailable)
            );
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    let rtt = client.ping(1).await;
    assert!(
        rtt < Duration::from_millis(100),
        "pong during the outage took {rtt:?}"
    );
    // A refused job leaves no trace: only the warm-up job is listed.
    let list: Value = http
        .get(system.http_url("/v1/jobs"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(1), "{list}");

    drop(guard); // the broker comes back
    eventually(
        Duration::from_secs(30),
        "/readyz to report 200 again",
        || async { (system.http_status("/readyz").await == Some(200)).then_some(()) },
    )
    .await;
    // The same session, the same processes: submissions and events work
    // again. A client retries `unavailable`; the quorum queue may need a
    // moment after the broker's restart before it confirms.
    let deadline = Instant::now() + Duration::from_secs(15);
    let job = loop {
        client.send(json!({ "type": "submit", "ref": "up", "job": { "kind": "sleep", "args": { "ms": 10 } } })).await;
        match client.next_frame().await {
            ServerFrame::Accepted { job_id, .. } => break job_id,
            ServerFrame::Error {
                code: ErrorCode::Unavailable,
                ..
            } if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => panic!("expected accepted after recovery, got {other:?}"),
        }
    };
    let events = client.events_until_terminal(job).await;
    assert_eq!(
        Client::statuses(&events),
        [EventStatus::Running, EventStatus::Done]
    );
}

//! The library entries the harness starts in-process
//! (`sluice_gateway::Gateway::start`, `sluice_jobs::JobRunner::start`):
//! after serving a job, the gateway and the runner drain, stop cleanly and
//! join, and the gateway's listener is closed.

use serde_json::json;
use sluice_proto::EventStatus;
use sluice_tests::system::http_status_at;
use sluice_tests::{Client, System, SystemOptions, token, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_gateway_and_runner_serve_then_stop_cleanly() {
    let system = System::start(
        SystemOptions::default()
            .gateway("SLUICE_GATEWAY__DRAIN_SPREAD_MS", 200)
            .gateway("SLUICE_GATEWAY__DRAIN_GRACE_MS", 2000),
    )
    .await;
    let port = system.port;
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("lib"))).await;
    let job = client.submit("l", "sleep", json!({ "ms": 10 })).await;
    let events = client.events_until_terminal(job).await;
    assert_eq!(
        Client::statuses(&events),
        [EventStatus::Running, EventStatus::Done]
    );

    // The session stays open: the drain closes it, as SIGTERM would.
    system.stop().await;
    assert_eq!(client.expect_close().await, Some(1012));
    assert_eq!(
        http_status_at(port, "/readyz").await,
        None,
        "still listening"
    );
}

//! Session upkeep: heartbeats close silent clients and keep active ones.

use std::time::Duration;

use sluice_tests::client::Received;
use sluice_tests::{Client, System, SystemOptions, token, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_after_two_heartbeats_and_an_active_one_is_not() {
    let system =
        System::start(SystemOptions::default().gateway("SLUICE_GATEWAY__HEARTBEAT_MS", 300)).await;
    let (mut silent, welcome) =
        Client::hello(&system.ws_url(), &token(&unique_user("silent"))).await;
    assert!(matches!(
        welcome,
        sluice_proto::ServerFrame::Welcome {
            heartbeat_ms: 300,
            ..
        }
    ));
    let (mut active, _) = Client::hello(&system.ws_url(), &token(&unique_user("active"))).await;

    // The active client pings every 100 ms for 1.5 s (five heartbeat periods).
    for id in 0..15 {
        active.ping(id).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The silent one read nothing, so it answered no server Ping: closed with 1001.
    let started = std::time::Instant::now();
    match silent.receive(Duration::from_secs(5)).await {
        Received::Closed(code) => assert_eq!(code, Some(1001)),
        other => panic!("expected the silent client to be closed, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "it was closed while we pinged"
    );
    active.ping(99).await;
}

/// Sessions do not outlive their tokens (v1.1, section 4): a session whose
/// token expires is closed with 4001 at `exp`; one that sent `refresh` with
/// a fresh token for the same user first lives on past it. Before, a
/// session stayed open, and its submits ran, long after its token expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_close_with_4001_at_expiry_unless_refreshed() {
    let system = System::start(SystemOptions::default()).await;
    let user = unique_user("expiry");
    let (mut expiring, _) =
        Client::hello(&system.ws_url(), &sluice_tests::token_with(&user, 3, None)).await;
    let (mut refreshed, _) =
        Client::hello(&system.ws_url(), &sluice_tests::token_with(&user, 3, None)).await;
    refreshed
        .send_frame(&sluice_proto::OutgoingFrame::Refresh {
            token: sluice_tests::token_with(&user, 600, None),
        })
        .await;
    match refreshed.next_frame().await {
        sluice_proto::ServerFrame::Refreshed { exp } => {
            assert!(exp > sluice_proto::now_ms() / 1000 + 500, "exp {exp}")
        }
        other => panic!("expected refreshed, got {other:?}"),
    }

    let started = std::time::Instant::now();
    match expiring.receive(Duration::from_secs(10)).await {
        Received::Closed(code) => assert_eq!(code, Some(4001)),
        Received::Frame(frame) => panic!("expected the 4001 close, got {frame:?}"),
    }
    assert!(
        started.elapsed() <= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Past the first token's expiry, the refreshed session still answers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    refreshed.ping(1).await;
}

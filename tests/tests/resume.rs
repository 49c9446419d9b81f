//! Resume: a client that drops mid-stream and reconnects with the last seq
//! it saw ends with every event exactly once, in seq order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_proto::{EventStatus, ServerFrame};
use sluice_tests::system::db;
use sluice_tests::{Client, System, SystemOptions, token, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_mid_stream_of_50_jobs_loses_nothing_and_repeats_nothing() {
    let system = System::start(SystemOptions::default()).await;
    let user = unique_user("resume");
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&user)).await;

    for i in 0..50 {
        let job = json!({ "kind": "sleep", "args": { "ms": 20 + (i % 5) * 10 } });
        client
            .send(json!({ "type": "submit", "ref": format!("j{i}"), "job": job }))
            .await;
    }
    // Read part of the stream, then drop the connection without a goodbye.
    let mut jobs = Vec::new();
    let mut seqs = Vec::new();
    let mut terminal: HashMap<uuid::Uuid, Vec<EventStatus>> = HashMap::new();
    while seqs.len() < 30 || jobs.len() < 50 {
        match client.next_frame().await {
            ServerFrame::Accepted { job_id, .. } => jobs.push(job_id),
            ServerFrame::Event(e) => {
                assert!(
                    jobs.contains(&e.job_id),
                    "event before its job's accepted: {e:?}"
                );
                seqs.push(e.seq);
                if e.status.is_terminal() {
                    terminal.entry(e.job_id).or_default().push(e.status);
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(seqs.len() < 100, "the connection must drop mid-stream");
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await; // more events land meanwhile

    let after = *seqs.last().unwrap();
    let (mut client, _) = Client::connect_and_resume(&system.ws_url(), &token(&user), after).await;
    while terminal.len() < 50 {
        if let ServerFrame::Event(e) = client.next_frame().await {
            seqs.push(e.seq);
            if e.status.is_terminal() {
                terminal.entry(e.job_id).or_default().push(e.status);
            }
        }
    }
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seqs must strictly increase: {seqs:?}"
    );
    assert_eq!(seqs.len(), 100, "50 running + 50 done, each once: {seqs:?}");
    assert_eq!(
        seqs,
        (seqs[0]..seqs[0] + 100).collect::<Vec<_>>(),
        "no gaps"
    );
    for job in &jobs {
        assert_eq!(
            terminal.get(job).map(Vec::as_slice),
            Some(&[EventStatus::Done][..]),
            "{job}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_10000_events_in_order_and_refuses_pruned_history() {
    let system = System::start(SystemOptions::default()).await;
    let user = unique_user("replay");
    // Write the history straight into the event log: this measures replay, not jobs.
    let conn = db().await;
    conn.execute(
        "INSERT INTO events (user_id, seq, job_id, status, frame, published)
         SELECT $1, s, '00000000-0000-0000-0000-000000000001', 'done',
                '{\"type\":\"event\",\"seq\":' || s || ',\"job_id\":\"00000000-0000-0000-0000-000000000001\",\"status\":\"done\"}', true
         FROM generate_series(1, 10000) AS s",
        &[&user],
    )
    .await
    .unwrap();
    conn.execute(
        "INSERT INTO user_seq (user_id, last_seq) VALUES ($1, 10000)",
        &[&user],
    )
    .await
    .unwrap();

    let started = Instant::now();
    let (mut client, welcome) =
        Client::connect_and_resume(&system.ws_url(), &token(&user), 0).await;
    assert!(matches!(
        welcome,
        ServerFrame::Welcome {
            resumed: true,
            last_seq: 10_000,
            ..
        }
    ));
    for expected in 1..=10_000u64 {
        match client.next_frame().await {
            ServerFrame::Event(e) => assert_eq!(e.seq, expected),
            other => panic!("{other:?}"),
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "replayed 10000 events in {elapsed:?}: {:.0} events/s",
        10_000.0 / elapsed.as_secs_f64()
    );
    client.ping(1).await; // nothing after the replay but the pong

    // Prune the oldest half: resuming from before it is refused, from after it works.
    conn.execute(
        "DELETE FROM events WHERE user_id = $1 AND seq <= 5000",
        &[&user],
    )
    .await
    .unwrap();
    let (mut old, welcome) = Client::connect_and_resume(&system.ws_url(), &token(&user), 100).await;
    assert!(
        matches!(welcome, ServerFrame::Welcome { resumed: false, .. }),
        "{welcome:?}"
    );
    old.ping(2).await;
    let (mut recent, welcome) =
        Client::connect_and_resume(&system.ws_url(), &token(&user), 9_990).await;
    assert!(matches!(
        welcome,
        ServerFrame::Welcome { resumed: true, .. }
    ));
    for expected in 9_991..=10_000u64 {
        match recent.next_frame().await {
            ServerFrame::Event(e) => assert_eq!(e.seq, expected),
            other => panic!("{other:?}"),
        }
    }
    let (_, welcome) = Client::connect_and_resume(&system.ws_url(), &token(&user), 20_000).await;
    assert!(
        matches!(welcome, ServerFrame::Welcome { resumed: false, .. }),
        "ahead of the server"
    );
}

/// Resumers that stop reading mid-replay must not hold the gateway's few
/// database connections: with a pool of 4 and 8 such clients, a new hello
/// and an HTTP request are still answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_resumers_do_not_hold_the_pool_from_a_new_hello_or_http_request() {
    let system = System::start(
        SystemOptions::default()
            .gateway("SLUICE_DATABASE__POOL_SIZE", 4)
            .gateway("SLUICE_DATABASE__POOL_WAIT_MS", 2_000)
            .gateway("SLUICE_GATEWAY__SOCKET_SEND_BUFFER_BYTES", 4_096)
            .gateway("SLUICE_GATEWAY__WRITE_TIMEOUT_MS", 60_000),
    )
    .await;
    let user = unique_user("slow-resumer");
    // 2,000 events of 4 KiB: 8 MiB per replay, far more than the socket
    // buffers hold, so every replay stalls on a client that does not read.
    let conn = db().await;
    conn.execute(
        "INSERT INTO events (user_id, seq, job_id, status, frame, published)
         SELECT $1, s, '00000000-0000-0000-0000-000000000001', 'done',
                '{\"type\":\"event\",\"seq\":' || s || ',\"job_id\":\"00000000-0000-0000-0000-000000000001\",\"status\":\"done\",\"result\":{\"pad\":\"' || repeat('x', 4096) || '\"}}', true
         FROM generate_series(1, 2000) AS s",
        &[&user],
    )
    .await
    .unwrap();
    conn.execute(
        "INSERT INTO user_seq (user_id, last_seq) VALUES ($1, 2000)",
        &[&user],
    )
    .await
    .unwrap();

    // Each reads its welcome and the first event, then stops reading.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let (mut client, _) = Client::connect_and_resume(&system.ws_url(), &token(&user), 0).await;
        match client.next_frame().await {
            ServerFrame::Event(e) => assert_eq!(e.seq, 1),
            other => panic!("{other:?}"),
        }
        stalled.push(client);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let started = Instant::now();
    let (mut fresh, _) = Client::hello(&system.ws_url(), &token(&unique_user("fresh"))).await;
    let hello_took = started.elapsed();
    fresh.ping(1).await;
    let started = Instant::now();
    let listed = reqwest::Client::new()
        .get(system.http_url("/v1/jobs"))
        .bearer_auth(token(&user))
        .send()
        .await
        .unwrap();
    let list_took = started.elapsed();
    assert_eq!(listed.status(), 200);
    assert!(
        hello_took < Duration::from_secs(1) && list_took < Duration::from_secs(1),
        "hello took {hello_took:?}, the listing {list_took:?}, with 8 stalled resumers"
    );
    drop(stalled);
}

//! One job end to end: WebSocket submit, broker, runner, PostgreSQL, events.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_proto::{EventStatus, ServerFrame};
use sluice_tests::data::{count_tagged, tagged_rows};
use sluice_tests::system::db;
use sluice_tests::{Client, System, SystemOptions, token, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_10000_rows_is_accepted_runs_and_lands() {
    let system = System::start(SystemOptions::default()).await;
    let (mut client, welcome) =
        Client::hello(&system.ws_url(), &token(&unique_user("batch"))).await;
    let ServerFrame::Welcome { resumed, .. } = welcome else {
        unreachable!()
    };
    assert!(!resumed);

    let tag = uuid::Uuid::new_v4().simple().to_string();
    let job = client
        .submit(
            "b1",
            "batch_upsert",
            json!({ "table": "items", "key": ["id"], "rows": tagged_rows(1_000_000, 10_000, &tag) }),
        )
        .await;
    let events = client.events_until_terminal(job).await;
    assert_eq!(
        Client::statuses(&events),
        [EventStatus::Running, EventStatus::Done],
        "{events:?}"
    );
    let done = events.last().unwrap();
    assert_eq!(done.result, Some(json!({ "rows": 10_000 })));
    assert!(
        events
            .windows(2)
            .all(|w| w[0].seq < w[1].seq || w[1].seq == 0 || w[0].seq == 0)
    );
    assert_eq!(count_tagged(1_000_000, 10_000, &tag).await, 10_000);

    let row = db()
        .await
        .query_one("SELECT status, result FROM jobs WHERE id = $1", &[&job])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "done");
    assert_eq!(row.get::<_, Value>(1), json!({ "rows": 10_000 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_stay_fast_while_a_200000_row_batch_runs() {
    let system = System::start(SystemOptions::default()).await;
    let (mut writer, _) = Client::hello(&system.ws_url(), &token(&unique_user("writer"))).await;
    let (mut pinger, _) = Client::hello(&system.ws_url(), &token(&unique_user("pinger"))).await;

    let tag = uuid::Uuid::new_v4().simple().to_string();
    let args =
        json!({ "table": "items", "key": ["id"], "rows": tagged_rows(2_000_000, 200_000, &tag) });
    let started = Instant::now();
    let job = writer.submit("big", "batch_upsert", args).await;
    let batch = tokio::spawn(async move {
        let events = writer.events_until_terminal(job).await;
        (events, started.elapsed())
    });

    let mut rtts = Vec::new();
    let mut id = 0;
    while !batch.is_finished() {
        id += 1;
        rtts.push(pinger.ping(id).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (events, elapsed) = batch.await.unwrap();
    assert_eq!(
        events.last().unwrap().status,
        EventStatus::Done,
        "{events:?}"
    );
    assert_eq!(count_tagged(2_000_000, 200_000, &tag).await, 200_000);

    rtts.sort();
    let worst = *rtts.last().unwrap();
    let p99 = rtts[(rtts.len() * 99 / 100).min(rtts.len() - 1)];
    eprintln!(
        "200000-row batch: {:.0} rows/s end to end ({elapsed:?}); {} pongs, p99 {p99:?}, max {worst:?}",
        200_000.0 / elapsed.as_secs_f64(),
        rtts.len()
    );
    assert!(rtts.len() >= 10, "too few pings to judge: {}", rtts.len());
    assert!(worst < Duration::from_millis(250), "slowest pong {worst:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sleep_jobs_of_2s_from_ten_sessions_finish_within_6s() {
    let system = System::start(SystemOptions::default()).await;
    let mut sessions = Vec::new();
    for i in 0..10 {
        let (client, _) =
            Client::hello(&system.ws_url(), &token(&unique_user(&format!("sleep{i}")))).await;
        sessions.push(client);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut client in sessions {
        tasks.push(tokio::spawn(async move {
            let job = client.submit("s", "sleep", json!({ "ms": 2000 })).await;
            let events = client.events_until_terminal(job).await;
            let done = events.last().unwrap().clone();
            (done.status, done.result)
        }));
    }
    for task in tasks {
        let (status, result) = task.await.unwrap();
        assert_eq!(status, EventStatus::Done);
        assert_eq!(result, Some(json!({ "slept_ms": 2000 })));
    }
    let total = started.elapsed();
    eprintln!("10 x sleep(2000) finished in {total:?}");
    assert!(total < Duration::from_secs(6), "took {total:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_of_the_user_gets_the_events_and_no_one_else() {
    let system = System::start(SystemOptions::default()).await;
    let alice = unique_user("alice");
    let (mut a1, _) = Client::hello(&system.ws_url(), &token(&alice)).await;
    let (mut a2, _) = Client::hello(&system.ws_url(), &token(&alice)).await;
    let (mut bob, _) = Client::hello(&system.ws_url(), &token(&unique_user("bob"))).await;

    let job = a1.submit("f", "sleep", json!({ "ms": 50 })).await;
    let seen1 = a1.events_until_terminal(job).await;
    let seen2 = a2.events_until_terminal(job).await;
    assert_eq!(
        Client::statuses(&seen1),
        [EventStatus::Running, EventStatus::Done]
    );
    assert_eq!(seen1, seen2, "both sessions see the same events, same seqs");

    // Bob got nothing at all, and is still connected and served.
    if let Some(received) = bob.try_receive(Duration::from_millis(500)).await {
        panic!("bob received {received:?}");
    }
    bob.ping(1).await;
}

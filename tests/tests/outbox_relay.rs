//! The outbox relay among steady traffic: an event the broker cannot take
//! (its user id is longer than an AMQP routing key may be) does not hold
//! back the events behind it, and once it has failed in five rounds where
//! its neighbours got through it is set aside and counted in
//! `sluice_outbox_set_aside`.

use std::time::Duration;

use serde_json::json;
use sluice_proto::{EventFrame, EventStatus, ServerFrame};
use sluice_tests::client::Received;
use sluice_tests::system::db;
use sluice_tests::{Client, System, SystemOptions, eventually, token, unique_user};
use uuid::Uuid;

/// Writes a committed, never published `done` event, `age` old, as if the
/// runner that wrote it died before publishing.
async fn orphan_event(db: &tokio_postgres::Client, user: &str, seq: i64, age: Duration) -> Uuid {
    let job_id = Uuid::new_v4();
    let frame = ServerFrame::Event(EventFrame {
        seq: seq as u64,
        job_id,
        status: EventStatus::Done,
        progress: None,
        result: Some(json!({ "relayed": seq })),
        error: None,
    })
    .encode();
    db.execute(
        "WITH seq AS (
             INSERT INTO user_seq (user_id, last_seq) VALUES ($1, $2)
             ON CONFLICT (user_id) DO UPDATE SET last_seq = excluded.last_seq
         )
         INSERT INTO events (user_id, seq, job_id, status, frame, published, created_at)
         VALUES ($1, $2, $3, 'done', $4, false, now() - make_interval(secs => $5))",
        &[&user, &seq, &job_id, &frame, &age.as_secs_f64()],
    )
    .await
    .unwrap();
    job_id
}

async fn relay_failures(db: &tokio_postgres::Client, user: &str) -> i16 {
    db.query_one(
        "SELECT relay_failures FROM events WHERE user_id = $1",
        &[&user],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_broker_refuses_is_set_aside_without_holding_back_the_rest() {
    let system = System::start(SystemOptions::default().processes()).await;
    let user = unique_user("relay");
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&user)).await;
    let db = db().await;
    // Older than every good event, so each round meets it first.
    let bad_user = format!("{}-{}", "x".repeat(300), Uuid::new_v4().simple());
    orphan_event(&db, &bad_user, 1, Duration::from_secs(600)).await;

    for seq in 1..=5 {
        let job = orphan_event(&db, &user, seq, Duration::from_secs(30)).await;
        loop {
            match client.receive(Duration::from_secs(15)).await {
                Received::Frame(ServerFrame::Event(e)) if e.job_id == job => {
                    assert_eq!((e.seq, e.status), (seq as u64, EventStatus::Done));
                    break;
                }
                Received::Frame(_) => {}
                Received::Closed(code) => panic!("session closed ({code:?})"),
            }
        }
    }
    // Blamed once per round in which a later event got through.
    eventually(
        Duration::from_secs(10),
        "the bad event to be set aside",
        || async { (relay_failures(&db, &bad_user).await >= 5).then_some(()) },
    )
    .await;
    let published: bool = db
        .query_one(
            "SELECT published FROM events WHERE user_id = $1",
            &[&bad_user],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!published);
    let metrics_url = system.runner_metrics_url();
    eventually(
        Duration::from_secs(10),
        "sluice_outbox_set_aside{kind=\"event\"} to count it",
        || async {
            let text = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("sluice_outbox_set_aside{kind=\"event\"} "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| *v >= 1.0)
        },
    )
    .await;

    db.execute(
        "DELETE FROM events WHERE user_id = $1 OR user_id = $2",
        &[&bad_user, &user],
    )
    .await
    .unwrap();
    db.execute(
        "DELETE FROM user_seq WHERE user_id = $1 OR user_id = $2",
        &[&bad_user, &user],
    )
    .await
    .unwrap();
}

//! Backends publishing to users (PROTOCOL.md section 4): `POST /v1/publish`
//! and `publish(...)` inside an application's own transaction, delivered to
//! every session of each user on every gateway through the runners'
//! message relay, stored in the user's log so resume replays them in one
//! seq order with job events.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_proto::{EventStatus, ServerFrame};
use sluice_tests::client::Received;
use sluice_tests::system::{db, gateway_database_url};
use sluice_tests::{Client, System, SystemOptions, service_token, token, unique_user};
use tokio_postgres::NoTls;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn publish(system: &System, bearer: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut request = http().post(system.http_url("/v1/publish")).json(&body);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The next frame, which must be a message; returns (seq, data, id).
async fn next_message(client: &mut Client) -> (u64, Value, String) {
    match client.next_frame().await {
        ServerFrame::Message { seq, data, id } => (seq, data, id),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Asserts that nothing arrives within `patience`.
async fn quiet(client: &mut Client, patience: Duration, why: &str) {
    if let Some(Received::Frame(frame)) = client.try_receive(patience).await {
        panic!("{why}: got {frame:?}");
    }
}

async fn last_seq(user: &str) -> i64 {
    db().await
        .query_opt("SELECT last_seq FROM user_seq WHERE user_id = $1", &[&user])
        .await
        .unwrap()
        .map(|r| r.get(0))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_publications_reach_every_session_of_each_user_on_both_gateways() {
    let system = System::start(SystemOptions {
        gateways: 2,
        ..Default::default()
    })
    .await;
    let ada = unique_user("pub-ada");
    let bob = unique_user("pub-bob");
    let (mut ada_0, _) = Client::hello(&system.gateway_ws_url(0), &token(&ada)).await;
    let (mut ada_1, _) = Client::hello(&system.gateway_ws_url(1), &token(&ada)).await;
    let (mut bob_1, _) = Client::hello(&system.gateway_ws_url(1), &token(&bob)).await;
    let service = service_token("billing");

    let data = json!({"text": "your export is ready", "n": [1, 2.5, null], "ü": "ö"});
    let (status, body) = publish(
        &system,
        Some(&service),
        json!({"users": [bob, ada, bob], "data": data, "idempotency_key": "export-7"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let mut sorted = [ada.clone(), bob.clone()];
    sorted.sort();
    assert_eq!(
        body,
        json!({"published": [{"user": sorted[0], "seq": 1}, {"user": sorted[1], "seq": 1}]}),
        "users sorted, repeats once, each at its own first seq"
    );
    for session in [&mut ada_0, &mut ada_1, &mut bob_1] {
        assert_eq!(
            next_message(session).await,
            (1, data.clone(), "export-7".to_owned())
        );
    }

    // The same key and data again: the first seqs, nothing new.
    let (status, again) = publish(
        &system,
        Some(&service),
        json!({"users": [ada, bob], "data": data, "idempotency_key": "export-7"}),
    )
    .await;
    assert_eq!((status, again), (StatusCode::ACCEPTED, body));
    // The same key with other data: 422, and nothing published to anyone,
    // not even to a user the key is new for (all or nothing).
    let carol = unique_user("pub-carol");
    let (status, refused) = publish(
        &system,
        Some(&service),
        json!({"users": [ada, carol], "data": {"other": true}, "idempotency_key": "export-7"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_mismatch");
    quiet(
        &mut ada_0,
        Duration::from_millis(700),
        "a repeat or a refusal published",
    )
    .await;
    assert_eq!((last_seq(&ada).await, last_seq(&carol).await), (1, 0));

    // Without a key every call is a new message with a generated id.
    let (status, body) =
        publish(&system, Some(&service), json!({"users": [ada], "data": 42})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["published"][0]["seq"], 2);
    let (seq, data, id) = next_message(&mut ada_1).await;
    assert_eq!((seq, data), (2, json!(42)));
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_inside_an_application_transaction_is_delivered_on_commit_only() {
    let system = System::start(SystemOptions::default()).await;
    let user = unique_user("pub-sql");
    let (mut session, _) = Client::hello(&system.ws_url(), &token(&user)).await;
    // The gateway's role stands in for an application's: it may execute
    // publish() but may not write the event log itself.
    let (mut app, connection) = tokio_postgres::connect(&gateway_database_url(), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let direct = app
        .execute(
            "INSERT INTO sluice.events (user_id, seq, message_id, frame) VALUES ($1, 99, 'x', '{}')",
            &[&user],
        )
        .await;
    assert!(direct.is_err(), "the role may not write events directly");

    let tx = app.transaction().await.unwrap();
    let seq: i64 = tx
        .query_one(
            "SELECT sluice.publish($1, '{\"rolled\": \"back\"}'::jsonb)",
            &[&user],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(seq, 1);
    tx.rollback().await.unwrap();
    quiet(
        &mut session,
        Duration::from_secs(2),
        "a rolled-back publish was delivered",
    )
    .await;
    assert_eq!(last_seq(&user).await, 0);

    let tx = app.transaction().await.unwrap();
    tx.execute("SELECT pg_sleep(0.2)", &[]).await.unwrap();
    let seq: i64 = tx
        .query_one(
            "SELECT sluice.publish($1, '{\"order\": 7}'::jsonb, 'order-7-paid')",
            &[&user],
        )
        .await
        .unwrap()
        .get(0);
    quiet(
        &mut session,
        Duration::from_millis(500),
        "delivered before the commit",
    )
    .await;
    let committed = Instant::now();
    tx.commit().await.unwrap();
    assert_eq!(
        next_message(&mut session).await,
        (seq as u64, json!({"order": 7}), "order-7-paid".to_owned())
    );
    let latency = committed.elapsed();
    // Woken by the notification, not found by the 1 s poll.
    assert!(latency < Duration::from_millis(500), "{latency:?}");

    // Bad arguments are refused with SQLSTATE 22023, naming the argument.
    for (sql, needle) in [
        ("SELECT sluice.publish('', '1'::jsonb)", "user_id"),
        ("SELECT sluice.publish($1, NULL)", "data"),
        (
            "SELECT sluice.publish($1, '1'::jsonb, 'has space')",
            "idempotency_key",
        ),
    ] {
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = if sql.contains("$1") {
            vec![&user]
        } else {
            vec![]
        };
        let e = app.query_one(sql, &params).await.unwrap_err();
        let db = e.as_db_error().expect("a database error");
        assert_eq!(db.code().code(), "22023", "{sql}");
        assert!(db.message().contains(needle), "{sql}: {}", db.message());
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_messages_and_job_events_in_one_seq_order() {
    let system = System::start(SystemOptions::default()).await;
    let user = unique_user("pub-resume");
    let service = service_token("notifier");
    let (mut live, _) = Client::hello(&system.ws_url(), &token(&user)).await;
    let job = live.submit("j1", "sleep", json!({"ms": 50})).await;
    let events = live.events_until_terminal(job).await;
    assert_eq!(
        Client::statuses(&events),
        [EventStatus::Running, EventStatus::Done]
    );
    let (status, _) = publish(
        &system,
        Some(&service),
        json!({"users": [user], "data": "m3"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(next_message(&mut live).await.0, 3);
    let job2 = live.submit("j2", "sleep", json!({"ms": 10})).await;
    live.events_until_terminal(job2).await;
    let (status, _) = publish(
        &system,
        Some(&service),
        json!({"users": [user], "data": "m6"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(next_message(&mut live).await.0, 6);
    drop(live);

    let (mut resumed, welcome) =
        Client::connect_and_resume(&system.ws_url(), &token(&user), 0).await;
    assert!(
        matches!(
            welcome,
            ServerFrame::Welcome {
                resumed: true,
                last_seq: 6,
                ..
            }
        ),
        "{welcome:?}"
    );
    let mut replay = vec![];
    for _ in 0..6 {
        replay.push(match resumed.next_frame().await {
            ServerFrame::Event(e) => (e.seq, format!("{:?}", e.status)),
            ServerFrame::Message { seq, data, .. } => (seq, data.to_string()),
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(
        replay,
        [
            (1, "Running".to_owned()),
            (2, "Done".to_owned()),
            (3, "\"m3\"".to_owned()),
            (4, "Running".to_owned()),
            (5, "Done".to_owned()),
            (6, "\"m6\"".to_owned()),
        ]
    );
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_publications_are_refused_and_publish_nothing() {
    let system =
        System::start(SystemOptions::default().gateway("SLUICE_GATEWAY__MAX_PUBLISH_BYTES", 1024))
            .await;
    let user = unique_user("pub-bad");
    let service = service_token("svc");
    let user_token = token(&user);
    let ok = json!({"users": [user], "data": {"a": 1}});
    let cases: Vec<(Option<&str>, Value, StatusCode, &str)> = vec![
        (None, ok.clone(), StatusCode::UNAUTHORIZED, "unauthorized"),
        (
            Some("garbage"),
            ok.clone(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            Some(&user_token),
            ok.clone(),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            Some(&service),
            json!({"users": [], "data": 1}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Some(&service),
            json!({"users": vec![user.clone(); 1001], "data": 1}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Some(&service),
            json!({"users": [""], "data": 1}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Some(&service),
            json!({"users": ["x".repeat(201)], "data": 1}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Some(&service),
            json!({"users": [user]}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Some(&service),
            json!({"users": [user], "data": 1, "extra": 2}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Some(&service),
            json!({"users": user, "data": 1}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Some(&service),
            json!({"users": [user], "data": "x".repeat(2000)}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            Some(&service),
            json!({"users": [user], "data": 1, "idempotency_key": "k".repeat(129)}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Some(&service),
            json!({"users": [user], "data": 1, "idempotency_key": "tab\there"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (bearer, body, want_status, want_code) in cases {
        let shown = body.to_string().chars().take(80).collect::<String>();
        let (status, answer) = publish(&system, bearer, body).await;
        assert_eq!(status, want_status, "{shown}: {answer}");
        assert_eq!(answer["error"]["code"], want_code, "{shown}");
        let message = answer["error"]["message"].as_str().unwrap_or("");
        assert!(message.len() <= 204, "{message}");
    }
    let garbage = http()
        .post(system.http_url("/v1/publish"))
        .header("authorization", format!("Bearer {service}"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
    assert_eq!(last_seq(&user).await, 0, "nothing was published");
    let stored: i64 = db()
        .await
        .query_one("SELECT count(*) FROM events WHERE user_id = $1", &[&user])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
    system.stop().await;
}

//! `Idempotency-Key` on `POST /v1/jobs` (PROTOCOL.md section 4): a repeat
//! with the same key and body within 24 h answers 200 with the first job
//! and creates nothing, even when the repeats race each other; the same key
//! with another body answers 422 `idempotency_mismatch`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::data::jobs_of;
use sluice_tests::{System, SystemOptions, token, unique_user};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn create(system: &System, user: &str, key: Option<&str>, body: &str) -> (StatusCode, Value) {
    let mut request = http()
        .post(system.http_url("/v1/jobs"))
        .header("authorization", format!("Bearer {}", token(user)))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_key_answers_the_first_job_and_another_body_is_refused() {
    let system = System::start(SystemOptions::default()).await;
    let ada = unique_user("key-ada");
    let body = r#"{"kind":"sleep","args":{"ms":20}}"#;

    let (status, first) = create(&system, &ada, Some("order-42"), body).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let id = first["id"].as_str().unwrap().to_owned();

    // Repeats: the same job, whatever its status by then.
    let (status, again) = create(&system, &ada, Some("order-42"), body).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], id.as_str());
    let done = sluice_tests::eventually(Duration::from_secs(20), "the job to end", || {
        let system = &system;
        let ada = &ada;
        async move {
            let (status, again) = create(system, ada, Some("order-42"), body).await;
            assert_eq!(status, StatusCode::OK, "{again}");
            (again["status"] == "done").then_some(again)
        }
    })
    .await;
    assert_eq!(done["id"], id.as_str());

    // The same key with another body: refused, nothing made.
    let (status, refused) = create(
        &system,
        &ada,
        Some("order-42"),
        r#"{"kind":"sleep","args":{"ms":21}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_mismatch");
    assert_eq!(jobs_of(&ada).await, 1);

    // Keys are per user.
    let bob = unique_user("key-bob");
    let (status, theirs) = create(&system, &bob, Some("order-42"), body).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(theirs["id"], id.as_str());

    // A job kept for later is repeated as `created`.
    let later = r#"{"kind":"sleep","args":{"ms":1},"run":false}"#;
    let (status, kept) = create(&system, &ada, Some("later"), later).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(kept["status"], "created");
    let (status, again) = create(&system, &ada, Some("later"), later).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&again["id"], &again["status"]),
        (&kept["id"], &json!("created"))
    );

    // Malformed keys are refused before anything is read or made.
    for bad in ["", "has space", &"k".repeat(129)] {
        let (status, answer) = create(&system, &ada, Some(bad), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {answer}");
        assert_eq!(answer["error"]["code"], "bad_request");
    }
    assert_eq!(jobs_of(&ada).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_repeats_make_one_job() {
    let system = System::start(SystemOptions::default()).await;
    let user = unique_user("key-race");
    let body = r#"{"kind":"sleep","args":{"ms":5}}"#;
    let answers = futures_util::future::join_all(
        (0..8).map(|_| create(&system, &user, Some("same-click"), body)),
    )
    .await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:?}");
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(s, a)| {
            assert!(matches!(*s, StatusCode::CREATED | StatusCode::OK), "{a}");
            a["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(jobs_of(&user).await, 1);
}

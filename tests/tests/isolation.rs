//! User A cannot see, run, cancel or delete user B's job by any route.

use serde_json::{Value, json};
use sluice_proto::{ErrorCode, OutgoingFrame, ServerFrame};
use sluice_tests::system::db;
use sluice_tests::{Client, System, SystemOptions, token, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_job_is_invisible_and_untouchable() {
    let system = System::start(SystemOptions::default()).await;
    let owner = unique_user("owner");
    let intruder = unique_user("intruder");
    let c = reqwest::Client::new();
    let as_owner = format!("Bearer {}", token(&owner));
    let as_intruder = format!("Bearer {}", token(&intruder));

    // The owner's job, created but not run.
    let created: Value = c
        .post(system.http_url("/v1/jobs"))
        .header("authorization", &as_owner)
        .json(&json!({ "kind": "sleep", "args": { "ms": 1 }, "run": false }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let url = system.http_url(&format!("/v1/jobs/{id}"));

    let not_found = |r: reqwest::Response| async move {
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (reqwest::StatusCode::NOT_FOUND, Some("not_found"))
        );
    };
    not_found(
        c.get(&url)
            .header("authorization", &as_intruder)
            .send()
            .await
            .unwrap(),
    )
    .await;
    not_found(
        c.post(format!("{url}/run"))
            .header("authorization", &as_intruder)
            .send()
            .await
            .unwrap(),
    )
    .await;
    not_found(
        c.delete(&url)
            .header("authorization", &as_intruder)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let list: Value = c
        .get(system.http_url("/v1/jobs"))
        .header("authorization", &as_intruder)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["jobs"], json!([]));

    let (mut ws, _) = Client::hello(&system.ws_url(), &token(&intruder)).await;
    ws.send_frame(&OutgoingFrame::Cancel { job_id: id.clone() })
        .await;
    match ws.next_frame().await {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::NotFound),
        other => panic!("{other:?}"),
    }

    // Untouched: still created, still visible to its owner.
    let row = db()
        .await
        .query_one(
            "SELECT status, hidden, cancel_requested FROM jobs WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0).as_str(),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2)
        ),
        ("created", false, false)
    );
    let mine = c
        .get(&url)
        .header("authorization", &as_owner)
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), reqwest::StatusCode::OK);
}

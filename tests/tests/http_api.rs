//! The HTTP jobs API, every status code, by a real HTTP client against the
//! running gateway.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::{System, SystemOptions, eventually, token, token_with, unique_user};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn code_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_read_list_run_delete_and_every_error() {
    let system = System::start(
        SystemOptions::default().gateway("SLUICE_GATEWAY__MAX_MESSAGE_BYTES", 65_536),
    )
    .await;
    let user = unique_user("http");
    let bearer = format!("Bearer {}", token(&user));
    let jobs = system.http_url("/v1/jobs");
    let c = http();

    // 401: no token, garbage, expired.
    for auth in [
        None,
        Some("Bearer nope".to_owned()),
        Some(format!("Bearer {}", token_with(&user, -5, None))),
    ] {
        let mut request = c.get(&jobs);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        assert_eq!(
            code_of(request.send().await.unwrap()).await,
            (StatusCode::UNAUTHORIZED, "unauthorized".into())
        );
    }

    // 201 with Location, and a GET right after sees the job.
    let response = c
        .post(&jobs)
        .header("authorization", &bearer)
        .json(&json!({ "kind": "sleep", "args": { "ms": 10 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["status"], "queued");
    assert_eq!(
        location,
        format!("/v1/jobs/{}", created["id"].as_str().unwrap())
    );
    let got = c
        .get(system.http_url(&location))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    let got: Value = got.json().await.unwrap();
    assert_eq!(got["id"], created["id"]);
    assert_eq!(got["kind"], "sleep");
    for field in [
        "status",
        "progress",
        "result",
        "error",
        "created_at",
        "updated_at",
    ] {
        assert!(got.get(field).is_some(), "GET lacks {field}: {got}");
    }
    // ...and it finishes.
    let done: Value = eventually(Duration::from_secs(20), "the HTTP job to finish", || {
        let request = c
            .get(system.http_url(&location))
            .header("authorization", &bearer);
        async move {
            let job: Value = request.send().await.ok()?.json().await.ok()?;
            (job["status"] == "done").then_some(job)
        }
    })
    .await;
    assert_eq!(done["result"], json!({ "slept_ms": 10 }));

    // 400s on create.
    let cases = [
        (
            json!({ "kind": "dig", "args": {} }).to_string(),
            "unknown_kind",
        ),
        ("not json".to_owned(), "bad_request"),
        (json!({ "args": {} }).to_string(), "bad_request"),
        (
            json!({ "kind": "sleep", "args": { "ms": "x" } }).to_string(),
            "bad_args",
        ),
        (json!({ "kind": "sleep" }).to_string(), "bad_args"),
    ];
    for (body, code) in cases {
        let response = c
            .post(&jobs)
            .header("authorization", &bearer)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            code_of(response).await,
            (StatusCode::BAD_REQUEST, code.into()),
            "{body}"
        );
    }
    // 413.
    let big = json!({ "kind": "sleep", "args": { "ms": 1, "pad": "x".repeat(70_000) } });
    let response = c
        .post(&jobs)
        .header("authorization", &bearer)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // run: false -> created; run -> 202; run again -> 409.
    let response = c
        .post(&jobs)
        .header("authorization", &bearer)
        .json(&json!({ "kind": "sleep", "args": { "ms": 5 }, "run": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let later: Value = response.json().await.unwrap();
    assert_eq!(later["status"], "created");
    let later_url = system.http_url(&format!("/v1/jobs/{}", later["id"].as_str().unwrap()));
    let job: Value = c
        .get(&later_url)
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["status"], "created");
    let run = c
        .post(format!("{later_url}/run"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), StatusCode::ACCEPTED);
    assert_eq!(run.json::<Value>().await.unwrap()["status"], "queued");
    let again = c
        .post(format!("{later_url}/run"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code_of(again).await,
        (StatusCode::CONFLICT, "conflict".into())
    );

    // bad ids and unknown ids.
    for (method, path) in [
        ("GET", "/v1/jobs/xyz"),
        ("DELETE", "/v1/jobs/xyz"),
        ("POST", "/v1/jobs/xyz/run"),
    ] {
        let request = c
            .request(method.parse().unwrap(), system.http_url(path))
            .header("authorization", &bearer);
        assert_eq!(
            code_of(request.send().await.unwrap()).await,
            (StatusCode::BAD_REQUEST, "bad_id".into()),
            "{method} {path}"
        );
    }
    let unknown = format!("/v1/jobs/{}", uuid::Uuid::now_v7());
    for method in ["GET", "DELETE"] {
        let request = c
            .request(method.parse().unwrap(), system.http_url(&unknown))
            .header("authorization", &bearer);
        assert_eq!(
            code_of(request.send().await.unwrap()).await,
            (StatusCode::NOT_FOUND, "not_found".into())
        );
    }
    let request = c
        .post(system.http_url(&format!("{unknown}/run")))
        .header("authorization", &bearer);
    assert_eq!(
        code_of(request.send().await.unwrap()).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );

    // list: newest first, status filter, limit, bad parameters.
    let list: Value = c
        .get(&jobs)
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            later["id"].as_str().unwrap(),
            created["id"].as_str().unwrap()
        ],
        "newest first"
    );
    let one: Value = c
        .get(format!("{jobs}?limit=1"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["jobs"].as_array().unwrap().len(), 1);
    let done_only: Value = c
        .get(format!("{jobs}?status=done"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        done_only["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["status"] == "done")
    );
    assert!(
        done_only["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == created["id"])
    );
    for query in ["?status=bogus", "?limit=0", "?limit=abc", "?limit=-3"] {
        let request = c
            .get(format!("{jobs}{query}"))
            .header("authorization", &bearer);
        assert_eq!(
            code_of(request.send().await.unwrap()).await,
            (StatusCode::BAD_REQUEST, "bad_request".into()),
            "{query}"
        );
    }

    // delete: 200, then gone for GET and the list; a second DELETE (a
    // proxy may resend one whose answer it lost) answers as the first.
    let created_url = system.http_url(&location);
    let deleted = c
        .delete(&created_url)
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let deleted: Value = deleted.json().await.unwrap();
    assert_eq!(
        deleted["status"], "done",
        "a finished job is hidden, not cancelled"
    );
    let gone = c
        .get(&created_url)
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let again = c
        .delete(&created_url)
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["status"], "done", "{again}");
    let list: Value = c
        .get(&jobs)
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        list["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["id"] != created["id"])
    );

    // An unknown route answers in the same JSON shape.
    let nowhere = c.get(system.http_url("/v1/nowhere")).send().await.unwrap();
    assert_eq!(
        code_of(nowhere).await,
        (StatusCode::NOT_FOUND, "no_route".into())
    );
}

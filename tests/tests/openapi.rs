//! `/v1/openapi.json` documents exactly the HTTP routes the gateway serves.

use std::collections::BTreeSet;

use serde_json::Value;
use sluice_tests::{System, SystemOptions, token, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_matches_the_routes() {
    let system = System::start(SystemOptions::default()).await;
    let c = reqwest::Client::new();
    let doc: Value = c
        .get(system.http_url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let expected: BTreeSet<(String, String)> = [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/jobs/{id}"),
        ("DELETE", "/v1/jobs/{id}"),
        ("POST", "/v1/jobs/{id}/run"),
        ("POST", "/v1/publish"),
        ("GET", "/v1/kinds"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(documented, expected);

    // Every documented operation reaches a handler: not the router's JSON
    // fallback (`no_route`), and not 405.
    let bearer = format!("Bearer {}", token(&unique_user("doc")));
    for (method, path) in &documented {
        let url = system.http_url(&path.replace("{id}", &uuid::Uuid::now_v7().to_string()));
        let response = c
            .request(method.parse().unwrap(), url)
            .header("authorization", &bearer)
            .header("content-type", "application/json")
            .body(r#"{"kind":"sleep","args":{"ms":1}}"#)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(
            status,
            reqwest::StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_ne!(
            body["error"]["code"], "no_route",
            "{method} {path} is documented but not routed"
        );
    }
}

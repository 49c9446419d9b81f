//! The Python publishing example (`example/python/publish_from_python.py`)
//! against the real system: over HTTP with a service token (a repeated key
//! publishes nothing new, another body under it is refused), and from
//! inside its own psycopg transaction (delivered on commit, never on
//! rollback). The user's session gets exactly the two messages.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_proto::ServerFrame;
use sluice_tests::client::Received;
use sluice_tests::system::{database_url, db};
use sluice_tests::{Client, System, SystemOptions, service_token, token, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_publishes_over_http_and_inside_its_transaction() {
    let system = System::start(SystemOptions::default()).await;
    let user = unique_user("py");
    let item_id = 8_000_000_000 + (uuid::Uuid::new_v4().as_u128() % 1_000_000_000) as i64;
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&user)).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../example/python/publish_from_python.py");
    let out = tokio::process::Command::new("/usr/bin/python3")
        .arg(&script)
        .env("SLUICE_URL", system.http_url(""))
        .env("SLUICE_SERVICE_TOKEN", service_token("billing"))
        .env("DATABASE_URL", database_url())
        .env("SLUICE_USER", &user)
        .env("SLUICE_ITEM_ID", item_id.to_string())
        .output()
        .await
        .expect("running /usr/bin/python3 (deploy/test.sh installs python3-psycopg)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let done: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    let seq = done["http"][0]["seq"].as_u64().unwrap();
    assert_eq!(done["http"][0]["user"], user.as_str());
    assert_eq!(
        done["http_repeat"], done["http"],
        "a repeated key publishes nothing new"
    );
    assert_eq!(done["http_mismatch"], "idempotency_mismatch");
    assert_eq!(done["sql_seq"].as_u64(), Some(seq + 1));
    assert_eq!(done["rolled_back"], true);

    let mut got = Vec::new();
    while got.len() < 2 {
        match client.next_frame().await {
            ServerFrame::Message { seq, data, .. } => got.push((seq, data)),
            other => panic!("expected messages, got {other:?}"),
        }
    }
    assert_eq!(
        got,
        [
            (seq, json!({"text": "your export is ready"})),
            (seq + 1, json!({"item": item_id, "value": "ready"})),
        ]
    );
    if let Some(Received::Frame(frame)) = client.try_receive(Duration::from_millis(1500)).await {
        panic!("the rolled-back message arrived: {frame:?}");
    }
    let value: String = db()
        .await
        .query_one("SELECT value FROM public.items WHERE id = $1", &[&item_id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        value, "ready",
        "the application's change committed with its message"
    );
}

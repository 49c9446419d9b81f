//! The example crate's runner binary (`sluice-example`: Sluice's runner
//! plus its own `relabel_items`, written as a Rust `Job`) serves its kind
//! end to end: listed with the schema derived from its args type, run in
//! chunks with progress, refused with `bad_args` by that schema, and
//! cancelled at a clean point with nothing changed.

use std::time::Duration;

use serde_json::json;
use sluice_proto::{ErrorCode, EventStatus, ServerFrame};
use sluice_tests::system::db;
use sluice_tests::{Client, System, SystemOptions, token, unique_user};

async fn items(first: i64, n: i64, value: &str) {
    db().await
        .execute(
            "INSERT INTO public.items (id, value) SELECT g, $3 FROM generate_series($1::int8, $1::int8 + $2 - 1) g
             ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value",
            &[&first, &n, &value],
        )
        .await
        .unwrap();
}

async fn labelled(first: i64, n: i64, value: &str) -> i64 {
    db().await
        .query_one(
            "SELECT count(*) FROM public.items WHERE id >= $1 AND id < $1 + $2 AND value = $3",
            &[&first, &n, &value],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_runner_serves_its_own_kind() {
    let mut options = SystemOptions::default().processes();
    options.runner_binary = Some("sluice-example".into());
    let system = System::start(options).await;
    let user = unique_user("example");
    let first = 7_000_000_000 + (uuid::Uuid::new_v4().as_u128() % 1_000_000) as i64 * 10_000;
    items(first, 2_500, "old").await;

    let kind = system.kind(&user, "relabel_items").await;
    assert_eq!(kind["timeout_ms"], 120_000);
    assert_eq!(kind["args_schema"]["properties"]["label"]["maxLength"], 200);

    let (mut client, _) = Client::hello(&system.ws_url(), &token(&user)).await;
    let job = client
        .submit(
            "r",
            "relabel_items",
            json!({"from": first, "to": first + 2_499, "label": "new"}),
        )
        .await;
    let events = client.events_until_terminal(job).await;
    let progress: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| e.progress.map(|p| (p.done, p.total)))
        .collect();
    assert_eq!(progress, [(1, 3), (2, 3), (3, 3)]);
    let done = events.last().unwrap();
    assert_eq!(done.status, EventStatus::Done);
    assert_eq!(done.result, Some(json!({"updated": 2_500})));
    assert_eq!(labelled(first, 2_500, "new").await, 2_500);

    client
        .send(json!({"type": "submit", "ref": "bad", "job": {"kind": "relabel_items", "args": {"from": 1, "to": 2, "label": ""}}}))
        .await;
    match client.next_frame().await {
        ServerFrame::Error { code, message, .. } => {
            assert_eq!(code, ErrorCode::BadArgs);
            assert!(message.contains("args/label"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    // A long relabel cancelled while it runs changes nothing.
    items(first, 2_500, "kept").await;
    let long = client
        .submit(
            "long",
            "relabel_items",
            json!({"from": first - 5_000_000, "to": first + 2_499, "label": "never"}),
        )
        .await;
    // Cancel once it has made progress.
    loop {
        if let ServerFrame::Event(e) = client.next_frame().await
            && e.job_id == long
            && e.progress.is_some()
        {
            break;
        }
    }
    client.cancel(long).await;
    let events = client.events_until_terminal(long).await;
    assert_eq!(events.last().unwrap().status, EventStatus::Cancelled);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(labelled(first, 2_500, "kept").await, 2_500);
}

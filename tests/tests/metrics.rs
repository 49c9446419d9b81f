//! `/metrics` on the gateway and on the runner parse as Prometheus text, and
//! their counters move as jobs and sessions come and go.

use std::collections::HashMap;

use serde_json::json;
use sluice_proto::{ErrorCode, ServerFrame};
use sluice_tests::{Client, System, SystemOptions, token, unique_user};

/// Scrapes `url` and returns each sample as `name{sorted labels}` -> value.
async fn scrape(url: &str) -> HashMap<String, f64> {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => f64::NAN,
            };
            (format!("{}{{{}}}", s.metric, labels.join(",")), value)
        })
        .collect()
}

fn get(samples: &HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_runner_metrics_move_with_the_work() {
    // Each process exports its own metrics; in one process they would
    // share one recorder.
    let system = System::start(SystemOptions::default().processes()).await;
    let gateway = system.http_url("/metrics");
    let runner = system.runner_metrics_url();
    let before = scrape(&gateway).await;

    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("m"))).await;
    for i in 0..3 {
        let job = client
            .submit(&format!("m{i}"), "sleep", json!({ "ms": 5 }))
            .await;
        client.events_until_terminal(job).await;
    }
    client
        .send(json!({ "type": "submit", "ref": "x", "job": { "kind": "nope", "args": {} } }))
        .await;
    match client.next_frame().await {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::UnknownKind),
        other => panic!("{other:?}"),
    }

    let after = scrape(&gateway).await;
    let delta = |key: &str| get(&after, key) - get(&before, key);
    assert_eq!(delta("sluice_jobs_submitted_total{}"), 3.0);
    assert_eq!(delta("sluice_jobs_accepted_total{}"), 3.0);
    assert_eq!(
        delta("sluice_jobs_rejected_total{reason=unknown_kind}"),
        1.0
    );
    assert_eq!(delta("sluice_sessions_opened_total{}"), 1.0);
    assert_eq!(get(&after, "sluice_sessions_open{}"), 1.0);
    assert!(delta("sluice_frames_in_total{}") >= 4.0);
    assert!(
        delta("sluice_frames_out_total{}") >= 10.0,
        "welcome, 3 accepted, 6 events, 1 error"
    );
    assert!(
        get(&after, "sluice_event_delivery_seconds_count{}") >= 6.0,
        "{after:?}"
    );
    assert_eq!(get(&after, "sluice_broker_connected{}"), 1.0);
    assert!(get(&after, "sluice_db_pool_connections{}") >= 1.0);

    drop(client);
    let closed = sluice_tests::eventually(
        std::time::Duration::from_secs(5),
        "the close to be counted",
        || {
            let gateway = gateway.clone();
            async move {
                let now = scrape(&gateway).await;
                let closed: f64 = now
                    .iter()
                    .filter(|(k, _)| k.starts_with("sluice_sessions_closed_total"))
                    .map(|(_, v)| v)
                    .sum();
                (closed >= 1.0 && get(&now, "sluice_sessions_open{}") == 0.0).then_some(closed)
            }
        },
    )
    .await;
    assert!(closed >= 1.0);

    // The runner counts a job once its outcome is published, which is a
    // moment after the client can have seen the event: wait for the count.
    let runner_samples = sluice_tests::eventually(
        std::time::Duration::from_secs(5),
        "the runner to count its third job",
        || {
            let runner = runner.clone();
            async move {
                let now = scrape(&runner).await;
                (get(&now, "sluice_jobs_finished_total{kind=sleep,outcome=done}") >= 3.0)
                    .then_some(now)
            }
        },
    )
    .await;
    assert_eq!(
        get(
            &runner_samples,
            "sluice_jobs_finished_total{kind=sleep,outcome=done}"
        ),
        3.0
    );
    assert_eq!(
        get(
            &runner_samples,
            "sluice_job_duration_seconds_count{kind=sleep}"
        ),
        3.0
    );
    assert_eq!(get(&runner_samples, "sluice_broker_connected{}"), 1.0);
    assert_eq!(get(&runner_samples, "sluice_jobs_in_flight{}"), 0.0);
}

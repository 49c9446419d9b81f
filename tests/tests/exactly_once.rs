//! Exactly once under broker faults: a job whose delivery comes back while
//! it still executes (the broker killed, or the runner's connections cut)
//! runs once, commits its effect once and ends with one terminal event; a
//! cancel answered with success while the broker is down still ends the job
//! `cancelled`.
//!
//! Executions are counted by a `sleep` handler that also inserts a row in
//! the job's transaction (`sluice_tests::counting`): an effect that is not
//! idempotent.

use std::time::Duration;

use serde_json::json;
use sluice_proto::{EventStatus, ServerFrame};
use sluice_tests::client::Received;
use sluice_tests::counting::Executions;
use sluice_tests::system::{RestoreServices, db, services};
use sluice_tests::{Client, System, SystemOptions, eventually, token, unique_user};
use uuid::Uuid;

/// A system whose runner counts `sleep` executions (with one more gateway
/// setting), warmed up: one job end to end and queues that have existed
/// for a while (RabbitMQ 3.10 killed right after creating a quorum queue
/// can bring it back leaderless). Returns it with a session and its user.
async fn counting_system(
    executions: &Executions,
    (key, value): (&str, u64),
) -> (System, Client, String) {
    let handlers = executions.clone();
    let system = System::start(
        SystemOptions::default()
            .handlers(move || handlers.handlers())
            .gateway(key, value),
    )
    .await;
    let user = unique_user("once");
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&user)).await;
    let warm = client.submit("warm", "sleep", json!({ "ms": 1 })).await;
    client.events_until_terminal(warm).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    (system, client, user)
}

/// A short publish timeout, so a submit during an outage is refused fast.
const PUBLISH_TIMEOUT: (&str, u64) = ("SLUICE_AMQP__PUBLISH_TIMEOUT_MS", 1000);

/// Waits for `job`'s `running` event.
async fn until_running(client: &mut Client, job: Uuid) {
    loop {
        match client.receive(Duration::from_secs(30)).await {
            Received::Frame(ServerFrame::Event(e)) if e.job_id == job => {
                assert_eq!(e.status, EventStatus::Running, "{e:?}");
                return;
            }
            Received::Frame(_) => {}
            Received::Closed(code) => panic!("session closed ({code:?})"),
        }
    }
}

/// The job's stored statuses after `running`, until `quiet` passes with
/// nothing new; the session must stay open throughout.
async fn statuses_until_quiet(
    client: &mut Client,
    job: Uuid,
    first_patience: Duration,
    quiet: Duration,
) -> Vec<EventStatus> {
    let mut statuses = Vec::new();
    let mut patience = first_patience;
    loop {
        match client.try_receive(patience).await {
            None if !statuses.is_empty() => return statuses,
            None => panic!("no terminal event within {patience:?}"),
            Some(Received::Frame(ServerFrame::Event(e))) if e.job_id == job => {
                if e.status != EventStatus::Progress {
                    statuses.push(e.status);
                }
                if e.status.is_terminal() {
                    patience = quiet;
                }
            }
            Some(Received::Frame(_)) => {}
            Some(Received::Closed(code)) => panic!("session closed ({code:?})"),
        }
    }
}

/// (status, attempts, terminal event rows) of `job` in the database.
async fn stored(job: Uuid) -> (String, i32, i64) {
    let db = db().await;
    let row = db
        .query_one("SELECT status, attempts FROM jobs WHERE id = $1", &[&job])
        .await
        .unwrap();
    let terminal: i64 = db
        .query_one(
            "SELECT count(*) FROM events
             WHERE job_id = $1 AND status IN ('done', 'failed', 'cancelled')",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    (row.get(0), row.get(1), terminal)
}

/// The confirmed defect: a 30 s job, RabbitMQ SIGKILLed when it starts and
/// started again (back after about 13 s, well inside the job). The broker
/// redelivers the unacknowledged message to the reconnected runner while
/// the first execution still runs; before the lease the runner ran it a
/// second time and the session got two `done` events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_job_leaves_one_execution_and_one_done() {
    let executions = Executions::new().await;
    let (_system, mut client, _) = counting_system(&executions, PUBLISH_TIMEOUT).await;
    let job = client
        .submit("long", "sleep", json!({ "ms": 30_000 }))
        .await;
    until_running(&mut client, job).await;

    let guard = RestoreServices;
    services(&["kill-rabbit"]);
    drop(guard); // start-rabbit: waits until the node has booted

    let statuses = statuses_until_quiet(
        &mut client,
        job,
        Duration::from_secs(60),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(statuses, [EventStatus::Done], "events after running");
    assert_eq!(executions.started(job), 1, "executions begun");
    assert_eq!(executions.committed(job).await, 1, "effects committed");
    assert_eq!(stored(job).await, ("done".to_owned(), 1, 1));
}

/// RabbitMQ closes every client connection (`close_all_connections`, as an
/// operator or a failing node does) while a 20 s job runs: the runner
/// reconnects, the redelivery waits for the first execution, and the job
/// runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_by_the_broker_mid_job_leave_one_execution() {
    let executions = Executions::new().await;
    let (_system, mut client, _) = counting_system(&executions, PUBLISH_TIMEOUT).await;
    let job = client
        .submit("long", "sleep", json!({ "ms": 20_000 }))
        .await;
    until_running(&mut client, job).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    services(&[
        "rabbitmqctl",
        "close_all_connections",
        "sluice test: cut mid-job",
    ]);

    let statuses = statuses_until_quiet(
        &mut client,
        job,
        Duration::from_secs(60),
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(statuses, [EventStatus::Done], "events after running");
    assert_eq!(executions.started(job), 1, "executions begun");
    assert_eq!(executions.committed(job).await, 1, "effects committed");
    assert_eq!(stored(job).await, ("done".to_owned(), 1, 1));
}

/// `DELETE /v1/jobs/{id}` while RabbitMQ is down: the cancel is recorded
/// and answered with success though its wake-up message cannot be sent;
/// the runner finds it at its next poll, stops the job, and the job ends
/// `cancelled` with its work rolled back. Before, the failed publish
/// answered 503, a retry answered 404 (already hidden), and the job ended
/// `done`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_answered_during_a_broker_outage_ends_the_job_cancelled() {
    let executions = Executions::new().await;
    let (system, mut client, user) = counting_system(&executions, PUBLISH_TIMEOUT).await;
    let job = client
        .submit("long", "sleep", json!({ "ms": 30_000 }))
        .await;
    until_running(&mut client, job).await;

    let guard = RestoreServices;
    services(&["kill-rabbit"]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = http
        .delete(system.http_url(&format!("/v1/jobs/{job}")))
        .header("authorization", format!("Bearer {}", token(&user)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);

    // Stopped by the runner's poll while the broker is still down.
    eventually(
        Duration::from_secs(10),
        "the job to end cancelled",
        || async {
            let (status, _, _) = stored(job).await;
            (status == "cancelled").then_some(())
        },
    )
    .await;
    drop(guard); // start-rabbit

    // The session hears of it once the broker is back (the outbox relay).
    let statuses = statuses_until_quiet(
        &mut client,
        job,
        Duration::from_secs(60),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(statuses, [EventStatus::Cancelled]);
    assert_eq!(executions.started(job), 1, "executions begun");
    assert_eq!(executions.committed(job).await, 0, "the work rolled back");
    assert_eq!(stored(job).await, ("cancelled".to_owned(), 1, 1));
}

/// A cancel that fails because PostgreSQL is down is answered with an
/// error the client can retry (503 `unavailable`, nothing changed); once
/// the database is back the retry succeeds and the job ends `cancelled`,
/// whatever its interrupted attempt was doing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_refused_while_the_database_is_down_can_be_retried() {
    let executions = Executions::new().await;
    let (system, mut client, user) =
        counting_system(&executions, ("SLUICE_DATABASE__POOL_WAIT_MS", 1000)).await;
    let job = client
        .submit("long", "sleep", json!({ "ms": 30_000 }))
        .await;
    until_running(&mut client, job).await;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let delete = || {
        http.delete(system.http_url(&format!("/v1/jobs/{job}")))
            .header("authorization", format!("Bearer {}", token(&user)))
            .send()
    };
    let guard = RestoreServices;
    services(&["stop-pg", "fast"]);
    let refused = delete().await.unwrap();
    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    drop(guard); // start-pg (and start-rabbit, already up)

    let retried = eventually(
        Duration::from_secs(20),
        "the retried cancel to succeed",
        || async {
            let response = delete().await.ok()?;
            (response.status() == 200).then_some(response)
        },
    )
    .await;
    let body: serde_json::Value = retried.json().await.unwrap();
    assert_eq!(body["id"], job.to_string(), "{body}");

    eventually(
        Duration::from_secs(30),
        "the job to end cancelled",
        || async {
            let (status, _, terminal) = stored(job).await;
            (status == "cancelled" && terminal == 1).then_some(())
        },
    )
    .await;
    let statuses = statuses_until_quiet(
        &mut client,
        job,
        Duration::from_secs(30),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| s.is_terminal())
            .collect::<Vec<_>>(),
        [&EventStatus::Cancelled],
        "{statuses:?}"
    );
    assert_eq!(executions.committed(job).await, 0, "no work committed");
}

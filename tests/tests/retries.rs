//! Transient failures are retried through the broker's delay queues;
//! exhausted jobs fail once and are dead-lettered; the dead-letter tooling
//! replays them; poison messages are dead-lettered without harm. The faults
//! are real: the job's own database backend is terminated mid-query.

use std::time::Duration;

use serde_json::json;
use sluice_proto::{EventStatus, ServerFrame};
use sluice_tests::system::db;
use sluice_tests::{Client, System, SystemOptions, eventually, token, unique_user};

/// Waits for the job's `pg_sleep` to be running, then kills its backend.
async fn kill_sleeping_backend() {
    let conn = db().await;
    eventually(Duration::from_secs(20), "the job's query to be running", || async {
        let killed: i64 = conn
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE state = 'active' AND query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .ok()?
            .get(0);
        (killed > 0).then_some(())
    })
    .await;
}

async fn job_row(job: uuid::Uuid) -> (String, i32, Option<String>) {
    let row = db()
        .await
        .query_one(
            "SELECT status, attempts, last_error FROM jobs WHERE id = $1",
            &[&job],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

fn options() -> SystemOptions {
    SystemOptions::default()
        .runner("SLUICE_RUNNER__RETRY_DELAY_MS", 200)
        .runner("SLUICE_RUNNER__MAX_ATTEMPTS", 4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_transient_failures_then_success_is_done_with_4_attempts() {
    let system = System::start(options()).await;
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("t3"))).await;
    let job = client.submit("t", "sleep", json!({ "ms": 800 })).await;
    for _ in 0..3 {
        kill_sleeping_backend().await;
    }
    let events = client.events_until_terminal(job).await;
    assert_eq!(
        Client::statuses(&events),
        [EventStatus::Running, EventStatus::Done],
        "{events:?}"
    );
    let (status, attempts, last_error) = job_row(job).await;
    assert_eq!((status.as_str(), attempts), ("done", 4));
    assert!(
        last_error.unwrap_or_default().contains("transient"),
        "the retries' cause is recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_failing_job_is_dead_lettered_once_and_replayable() {
    let system = System::start(options()).await;
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("dl"))).await;
    let job = client.submit("d", "sleep", json!({ "ms": 800 })).await;
    for _ in 0..4 {
        kill_sleeping_backend().await;
    }
    let events = client.events_until_terminal(job).await;
    assert_eq!(
        Client::statuses(&events),
        [EventStatus::Running, EventStatus::Failed],
        "{events:?}"
    );
    let error = events.last().unwrap().error.clone().unwrap();
    assert!(
        error.message.contains("gave up after 4 attempts"),
        "{error:?}"
    );

    let listing = eventually(
        Duration::from_secs(10),
        "the job in the dead-letter queue",
        || async {
            let out = system.jobs_cli(&["dead", "list"]);
            out.contains(&job.to_string()).then_some(out)
        },
    )
    .await;
    assert!(
        listing.contains("reason=exhausted") && listing.contains("attempts=4"),
        "{listing}"
    );

    // Replay: the job runs again, this time untouched, and succeeds.
    let out = system.jobs_cli(&["dead", "replay", &job.to_string()]);
    assert!(out.contains("1 job(s) replayed"), "{out}");
    let events = client.events_until_terminal(job).await;
    assert_eq!(
        Client::statuses(&events),
        [EventStatus::Running, EventStatus::Done],
        "{events:?}"
    );
    assert_eq!(job_row(job).await.0, "done");
    let after = system.jobs_cli(&["dead", "list"]);
    assert!(
        !after.contains(&job.to_string()),
        "replayed jobs leave the queue: {after}"
    );
    // Exactly one failed event was ever stored for it.
    let failed: i64 = db()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE job_id = $1 AND status = 'failed'",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_and_the_runner_keeps_serving() {
    let system = System::start(options()).await;
    let (_conn, channel) = sluice_tests::system::broker_channel().await;
    channel
        .basic_publish(
            "".into(),
            format!("{}.jobs", system.prefix).as_str().into(),
            lapin::options::BasicPublishOptions::default(),
            b"\x00\x01 this is not a job",
            lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap();
    let listing = eventually(
        Duration::from_secs(10),
        "the poison message to be dead-lettered",
        || async {
            let out = system.jobs_cli(&["dead", "list"]);
            out.contains("undecodable").then_some(out)
        },
    )
    .await;
    assert!(listing.contains("reason=rejected"), "{listing}");

    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("p"))).await;
    let job = client.submit("ok", "sleep", json!({ "ms": 1 })).await;
    match client.events_until_terminal(job).await.last() {
        Some(e) => assert_eq!(e.status, EventStatus::Done),
        None => unreachable!(),
    }
    let out = system.jobs_cli(&["dead", "purge", "--all"]);
    assert!(out.contains("1 message(s) purged"), "{out}");
    let _ = ServerFrame::Pong { id: 0 };
}

/// A job the broker gives up on by itself: every delivery handed back
/// unclaimed (as by runners that die before their claim) until the jobs
/// queue's delivery limit dead-letters it. The runner's settle consumer
/// then fails it, so it does not stay `queued` forever: one `failed`
/// event, and the operators' dead-letter copy stays for replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_dead_lettered_at_the_delivery_limit_ends_failed_with_one_event() {
    use lapin::options::{BasicGetOptions, BasicNackOptions};
    let mut system = System::start(SystemOptions {
        no_runner: true,
        ..options()
    })
    .await;
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("limit"))).await;
    let job = client.submit("j", "sleep", json!({ "ms": 1 })).await;

    let (conn, channel) = sluice_tests::system::broker_channel().await;
    let queue = format!("{}.jobs", system.prefix);
    let mut deliveries = 0;
    while let Some(message) = channel
        .basic_get(queue.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
    {
        deliveries += 1;
        assert!(deliveries <= 100, "never dead-lettered");
        let requeue = BasicNackOptions {
            requeue: true,
            ..Default::default()
        };
        message.delivery.nack(requeue).await.unwrap();
    }
    assert!(
        deliveries > sluice_broker::DELIVERY_LIMIT,
        "gone after {deliveries} deliveries"
    );
    let _ = conn.close(200, "done".into()).await;

    system.start_runner();
    let events = client.events_until_terminal(job).await;
    assert_eq!(Client::statuses(&events), [EventStatus::Failed]);
    let error = events[0].error.as_ref().expect("an error");
    assert_eq!(error.code, sluice_proto::ErrorCode::Internal);
    assert!(
        error.message.contains("delivery_limit"),
        "{}",
        error.message
    );
    let (status, attempts, _) = job_row(job).await;
    assert_eq!((status.as_str(), attempts), ("failed", 0));
    let terminal: i64 = db()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE job_id = $1 AND status IN ('done', 'failed', 'cancelled')",
            &[&job],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(terminal, 1);
    let listing = system.jobs_cli(&["dead", "list"]);
    assert!(listing.contains(&job.to_string()), "{listing}");
    if let Some(received) = client.try_receive(Duration::from_millis(500)).await {
        panic!("nothing may follow the terminal event, got {received:?}");
    }
}

/// A handler that panics (a bug in an application's handler) does not
/// take the runner down or strand the job: the panic is caught, the
/// delivery settled as a transient failure (its effect rolled back), and
/// the retry runs it to `done` with one terminal event. The runner keeps
/// serving other jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_retried_and_the_runner_keeps_serving() {
    let executions = sluice_tests::counting::Executions::new().await;
    let handlers = executions.clone();
    let system = System::start(options().handlers(move || handlers.panicking_handlers())).await;
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("panic"))).await;
    let job = client.submit("p", "sleep", json!({ "ms": 10 })).await;
    let events = client.events_until_terminal(job).await;
    assert_eq!(
        Client::statuses(&events),
        [EventStatus::Running, EventStatus::Done]
    );
    assert_eq!(executions.started(job), 2, "the panicked one and the retry");
    assert_eq!(
        executions.committed(job).await,
        1,
        "the panicked one rolled back"
    );
    let (status, attempts, last_error) = job_row(job).await;
    assert_eq!((status.as_str(), attempts), ("done", 2));
    assert!(
        last_error
            .as_deref()
            .is_some_and(|e| e.contains("panicked")),
        "{last_error:?}"
    );
    // Still serving: a second job (its own first execution panics too).
    let next = client.submit("q", "sleep", json!({ "ms": 10 })).await;
    let events = client.events_until_terminal(next).await;
    assert_eq!(events.last().map(|e| e.status), Some(EventStatus::Done));
}

//! Submission has one writer per fact: the job row and its outbox entry are
//! committed before anything is published. Tried with real faults: a
//! gateway SIGKILLed between recording and publishing, and a broker that
//! does not confirm in time (a RabbitMQ memory alarm).

use std::time::Duration;

use serde_json::json;
use sluice_proto::{ErrorCode, EventStatus, ServerFrame};
use sluice_tests::client::Received;
use sluice_tests::data::stored_statuses;
use sluice_tests::system::{MemoryAlarm, RestoreServices, db};
use sluice_tests::{Client, System, SystemOptions, eventually, token, unique_user};
use uuid::Uuid;

/// Short confirm waits, so the faults below play out in seconds. The runner
/// reads the same setting to know when a submission's entry is its to relay.
/// Processes: the gateway is killed with SIGKILL, and the runner's own
/// metrics are read.
fn options() -> SystemOptions {
    SystemOptions::default()
        .processes()
        .gateway("SLUICE_AMQP__PUBLISH_TIMEOUT_MS", 2_000)
        .runner("SLUICE_AMQP__PUBLISH_TIMEOUT_MS", 2_000)
}

/// The user's job ids and how many outbox entries they have.
async fn jobs_of(user: &str) -> (Vec<Uuid>, i64) {
    let client = db().await;
    let ids = client
        .query("SELECT id FROM jobs WHERE user_id = $1", &[&user])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let entries: i64 = client
        .query_one(
            "SELECT count(*) FROM job_outbox o JOIN jobs j ON j.id = o.job_id WHERE j.user_id = $1",
            &[&user],
        )
        .await
        .unwrap()
        .get(0);
    (ids, entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_after_recording_a_job_still_runs_it_exactly_once() {
    let _restore = RestoreServices;
    let mut system = System::start(options()).await;
    let user = unique_user("killed");
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&user)).await;

    // With the alarm up the broker takes at most the first publish of a
    // connection and then stops reading it, so no confirm comes: the gateway
    // records both jobs and is killed while it waits. The second message
    // never left the gateway; only the outbox has it.
    let alarm = MemoryAlarm::raise().await;
    for reference in ["k1", "k2"] {
        client
            .send(json!({ "type": "submit", "ref": reference, "job": { "kind": "sleep", "args": { "ms": 10 } } }))
            .await;
    }
    let jobs = eventually(
        Duration::from_secs(5),
        "both jobs to be recorded",
        || async {
            match jobs_of(&user).await {
                (ids, 2) if ids.len() == 2 => Some(ids),
                _ => None,
            }
        },
    )
    .await;
    system.kill_gateway(0);
    alarm.clear().await;

    // After the restart the relay publishes what the broker never had; the
    // events of both jobs reach the user (resuming from the start of the log).
    system.start_gateway_again(0).await;
    let (mut client, welcome) =
        Client::connect_and_resume(&system.ws_url(), &token(&user), 0).await;
    assert!(
        matches!(welcome, ServerFrame::Welcome { .. }),
        "{welcome:?}"
    );
    // The two jobs may run side by side, so their events interleave: read
    // until both have ended, then check each job's own sequence.
    let mut events: std::collections::HashMap<_, Vec<_>> =
        jobs.iter().map(|&job| (job, Vec::new())).collect();
    while events.values().any(|seen| {
        !seen
            .last()
            .is_some_and(|e: &sluice_proto::EventFrame| e.status.is_terminal())
    }) {
        if let ServerFrame::Event(event) = client.next_frame().await
            && let Some(seen) = events.get_mut(&event.job_id)
        {
            seen.push(event);
        }
    }
    for &job in &jobs {
        let events = &events[&job];
        assert_eq!(
            Client::statuses(events),
            [EventStatus::Running, EventStatus::Done],
            "{events:?}"
        );
        assert_eq!(stored_statuses(job).await, ["running", "done"]);
        let attempts: i32 = db()
            .await
            .query_one("SELECT attempts FROM jobs WHERE id = $1", &[&job])
            .await
            .unwrap()
            .get(0);
        assert_eq!(attempts, 1, "job {job} ran more than once");
    }
    // The relay also clears the entry of the job the broker did have.
    eventually(Duration::from_secs(15), "the outbox to empty", || async {
        (jobs_of(&user).await.1 == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_refused_for_want_of_a_confirm_never_runs() {
    let _restore = RestoreServices;
    let system = System::start(options()).await;
    let user = unique_user("refused");
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&user)).await;

    let alarm = MemoryAlarm::raise().await;
    client
        .send(json!({ "type": "submit", "ref": "r", "job": { "kind": "sleep", "args": { "ms": 10 } } }))
        .await;
    let accepted = match client.receive(Duration::from_secs(10)).await {
        Received::Frame(ServerFrame::Error {
            reference, code, ..
        }) => {
            assert_eq!(
                (reference.as_deref(), code),
                (Some("r"), ErrorCode::Unavailable)
            );
            None
        }
        // The broker's first publish may still reach a runner before the
        // confirm wait ends; then the job stands and the client is told so.
        Received::Frame(ServerFrame::Accepted { reference, job_id }) if reference == "r" => {
            Some(job_id)
        }
        other => panic!("expected unavailable or accepted, got {other:?}"),
    };
    if accepted.is_none() {
        assert_eq!(
            jobs_of(&user).await,
            (vec![], 0),
            "the refused job was withdrawn"
        );
    }
    alarm.clear().await;

    let Some(job) = accepted else {
        // The broker takes the stalled message once the alarm clears, and
        // the runner receives it: it must skip it, not run it.
        let metrics = system.runner_metrics_url();
        eventually(
            Duration::from_secs(20),
            "the runner to skip the late delivery",
            || async {
                let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
                text.lines()
                    .any(|l| {
                        l.contains("sluice_jobs_finished_total")
                            && l.contains("outcome=\"withdrawn\"")
                    })
                    .then_some(())
            },
        )
        .await;
        // Past the relay's wait as well: nothing ran, nothing was told.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(jobs_of(&user).await, (vec![], 0));
        let events: i64 = db()
            .await
            .query_one("SELECT count(*) FROM events WHERE user_id = $1", &[&user])
            .await
            .unwrap()
            .get(0);
        assert_eq!(events, 0, "a refused job produced events");
        while let Some(received) = client.try_receive(Duration::from_millis(300)).await {
            match received {
                Received::Frame(ServerFrame::Pong { .. }) => {}
                other => panic!("the client heard about a refused job: {other:?}"),
            }
        }
        return after_the_alarm(&mut client).await;
    };
    // Accepted: it runs, exactly once.
    let events = client.events_until_terminal(job).await;
    assert_eq!(
        Client::statuses(&events),
        [EventStatus::Running, EventStatus::Done]
    );
    assert_eq!(stored_statuses(job).await, ["running", "done"]);
    after_the_alarm(&mut client).await;
}

/// The gateway accepts and runs work again once the alarm is gone.
async fn after_the_alarm(client: &mut Client) {
    let job = client.submit("after", "sleep", json!({ "ms": 1 })).await;
    let events = client.events_until_terminal(job).await;
    assert_eq!(events.last().map(|e| e.status), Some(EventStatus::Done));
}

//! A runner killed (SIGKILL) after taking a job and before acknowledging
//! it: after a restart the job completes exactly once.

use serde_json::json;
use sluice_proto::{EventStatus, ServerFrame};
use sluice_tests::data::{count_tagged, stored_statuses, tagged_rows};
use sluice_tests::system::db;
use sluice_tests::{Client, System, SystemOptions, token, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runner_job_completes_exactly_once_after_restart() {
    // Kills the runner process with SIGKILL.
    let mut system = System::start(SystemOptions::default().processes()).await;
    let user = unique_user("crash");
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&user)).await;

    let first = 4_000_000i64;
    let count = 150_000i64;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let rows = tagged_rows(first, count, &tag);
    let job = client
        .submit(
            "crash",
            "batch_upsert",
            json!({ "table": "items", "key": ["id"], "rows": rows }),
        )
        .await;

    // `running` is committed and published once the runner has claimed the job.
    match client.next_frame().await {
        ServerFrame::Event(e) if e.job_id == job && e.status == EventStatus::Running => {}
        other => panic!("expected running, got {other:?}"),
    }
    system.kill_runner();

    let conn = db().await;
    let status: String = conn
        .query_one("SELECT status FROM jobs WHERE id = $1", &[&job])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        status, "running",
        "the kill must land before the job finished"
    );

    system.start_runner();
    let events = client.events_until_terminal(job).await;
    assert_eq!(
        events.last().unwrap().status,
        EventStatus::Done,
        "{events:?}"
    );
    assert_eq!(
        events.last().unwrap().result,
        Some(json!({ "rows": count }))
    );

    let row = conn
        .query_one("SELECT status, attempts FROM jobs WHERE id = $1", &[&job])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "done");
    assert_eq!(
        row.get::<_, i32>(1),
        2,
        "delivered twice: once to the killed runner"
    );

    assert_eq!(
        stored_statuses(job).await,
        ["running", "done"],
        "one running, exactly one done"
    );

    assert_eq!(count_tagged(first, count, &tag).await, count);

    // The redelivery after the restart is not run a third time: nothing more arrives.
    client.ping(1).await;
}

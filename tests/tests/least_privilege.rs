//! Each process its own broker user and database role (made by
//! `deploy/provision.sh`, granted by `sluice-jobs migrate`; the harness
//! gives them to every gateway and runner it starts, so the whole suite
//! runs with them): the gateway's may not publish to the events exchange
//! nor write an event, a sequence, a job's status or outcome, so whoever
//! holds the gateway's credentials cannot send frames to any user or make
//! up results, while the runner's may; neither is an administrator nor
//! may create anything. A queued job the gateway cancels still gets its
//! `cancelled` event, which a runner writes and publishes.

use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use serde_json::json;
use sluice_proto::EventStatus;
use sluice_tests::system::{
    db, gateway_amqp_url, gateway_database_url, runner_amqp_url, runner_database_url,
};
use sluice_tests::{Client, System, SystemOptions, token, unique_user};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

/// Publishes one message to `exchange` as the user of `url` and waits for
/// the broker's answer: `Ok` if it confirmed, `Err` with why not.
async fn publish_as(url: &str, exchange: &str, routing_key: &str) -> Result<(), String> {
    let config = sluice_broker::AmqpConfig {
        url: url.into(),
        ..Default::default()
    };
    let connection = sluice_broker::connect(&config, "least privilege test")
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let attempt = async {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                b"{\"type\":\"pong\",\"id\":1}",
                BasicProperties::default(),
            )
            .await?
            .await?;
        Ok::<_, lapin::Error>(confirm.is_ack())
    };
    let outcome = tokio::time::timeout(Duration::from_secs(10), attempt).await;
    sluice_broker::close(&connection, "done").await;
    match outcome {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err("nacked".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer in 10 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_broker_user_cannot_publish_events_and_the_runners_can() {
    // The system declares its topology under its own prefix.
    let system = System::start(SystemOptions::default()).await;
    let events = format!("{}.events", system.prefix);
    let control = format!("{}.control", system.prefix);

    let refused = publish_as(&gateway_amqp_url(), &events, "alice")
        .await
        .expect_err("the gateway's user published to the events exchange");
    assert!(
        refused.contains("ACCESS_REFUSED") || refused.contains("403"),
        "{refused}"
    );
    publish_as(&gateway_amqp_url(), &control, "")
        .await
        .expect("the gateway's user sends control messages");
    publish_as(&runner_amqp_url(), &events, "nobody-listens")
        .await
        .expect("the runner's user publishes events");

    // Neither is an administrator (no tags at all).
    let script = std::env::var("SLUICE_SERVICES_SH").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/services.sh").to_owned()
    });
    let listed = std::process::Command::new("bash")
        .args([script.as_str(), "rabbitmqctl", "-q", "list_users"])
        .output()
        .expect("rabbitmqctl list_users");
    let users = String::from_utf8_lossy(&listed.stdout);
    for user in ["sluice_gateway", "sluice_runner"] {
        let line = users
            .lines()
            .find(|l| l.split_whitespace().next() == Some(user))
            .unwrap_or_else(|| panic!("{user} missing: {users}"));
        assert!(!line.contains("administrator"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_the_gateway_cancels_gets_its_event_from_a_runner() {
    // The one runner slot is busy, so the second job stays queued behind
    // it: the gateway records the cancel, and a runner that does not hold
    // the job writes and publishes its event at once.
    let system =
        System::start(SystemOptions::default().runner("SLUICE_RUNNER__CONCURRENCY", 1)).await;
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("lp"))).await;
    let busy = client
        .submit("busy", "sleep", json!({ "ms": 60_000 }))
        .await;
    loop {
        if let sluice_proto::ServerFrame::Event(e) = client.next_frame().await
            && e.job_id == busy
            && e.status == EventStatus::Running
        {
            break;
        }
    }
    let queued = client.submit("q", "sleep", json!({ "ms": 10 })).await;
    let started = std::time::Instant::now();
    client.cancel(queued).await;
    let events = client.events_until_terminal(queued).await;
    assert_eq!(
        Client::statuses(&events),
        [EventStatus::Cancelled],
        "it never ran: {events:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "cancelled event after {:?}: a runner ends it at once, not at a sweep",
        started.elapsed()
    );
    client.cancel(busy).await;
    client.events_until_terminal(busy).await;
}

/// Connects as the role of `url`.
async fn connect_as(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting as {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// Runs `sql` and returns PostgreSQL's error code, or `None` if it worked.
async fn refusal(client: &tokio_postgres::Client, sql: &str) -> Option<SqlState> {
    match client.batch_execute(sql).await {
        Ok(()) => None,
        Err(e) => Some(e.code().cloned().unwrap_or(SqlState::INTERNAL_ERROR)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_database_role_cannot_write_events_outcomes_or_statuses() {
    let owner = db().await;
    let user = unique_user("lp-db");
    // A finished job of the user, with its event, written as a runner would.
    let done = uuid::Uuid::now_v7();
    owner
        .execute(
            "INSERT INTO sluice.jobs (id, user_id, kind, status, result)
             VALUES ($1, $2, 'sleep', 'done', '{\"slept_ms\": 1}')",
            &[&done, &user],
        )
        .await
        .unwrap();

    let gateway = connect_as(&gateway_database_url()).await;
    let denied = Some(SqlState::INSUFFICIENT_PRIVILEGE);
    let id = uuid::Uuid::now_v7();
    for (what, sql) in [
        (
            "append an event",
            format!(
                "INSERT INTO sluice.events (user_id, seq, job_id, status, frame)
                 VALUES ('{user}', 1, '{done}', 'done', '{{\"type\":\"event\"}}')"
            ),
        ),
        (
            "advance a user's seq",
            format!("INSERT INTO sluice.user_seq VALUES ('{user}', 1)"),
        ),
        (
            "mark an event published",
            "UPDATE sluice.events SET published = true".to_owned(),
        ),
        (
            "set a status",
            format!("UPDATE sluice.jobs SET status = 'failed' WHERE id = '{done}'"),
        ),
        (
            "write a result",
            format!("UPDATE sluice.jobs SET result = '1' WHERE id = '{done}'"),
        ),
        (
            "record a finished job",
            format!(
                "INSERT INTO sluice.jobs (id, user_id, kind, status)
                 VALUES ('{id}', '{user}', 'sleep', 'done')"
            ),
        ),
        (
            "create a table in Sluice's schema",
            "CREATE TABLE sluice.mine (x int)".to_owned(),
        ),
        (
            "create a table in public",
            "CREATE TABLE public.mine (x int)".to_owned(),
        ),
        (
            "write the application's table",
            "INSERT INTO public.items (id, value) VALUES (-1, 'x')".to_owned(),
        ),
    ] {
        assert_eq!(
            refusal(&gateway, &sql).await,
            denied,
            "the gateway could {what}"
        );
    }
    // Deleting a finished job is filtered out by row security: nothing goes.
    let deleted = gateway
        .execute("DELETE FROM sluice.jobs WHERE id = $1", &[&done])
        .await
        .unwrap();
    assert_eq!(deleted, 0, "the gateway deleted a finished job");
    // What it does need, it may: read the log and jobs, record a queued job.
    gateway
        .batch_execute(&format!(
            "SELECT count(*) FROM sluice.events WHERE user_id = '{user}';
             INSERT INTO sluice.jobs (id, user_id, kind, status)
             VALUES ('{id}', '{user}', 'sleep', 'queued');
             DELETE FROM sluice.jobs WHERE id = '{id}';"
        ))
        .await
        .expect("the gateway's own work");

    let runner = connect_as(&runner_database_url()).await;
    assert_eq!(
        refusal(&runner, "CREATE TABLE sluice.mine (x int)").await,
        denied,
        "the runner could create a table"
    );
    let row = runner
        .query_one(
            "SELECT has_table_privilege('sluice.events', 'INSERT'),
                    has_table_privilege('sluice.jobs', 'UPDATE'),
                    has_table_privilege('public.items', 'INSERT')",
            &[],
        )
        .await
        .unwrap();
    assert!(
        row.get::<_, bool>(0) && row.get::<_, bool>(1) && row.get::<_, bool>(2),
        "the runner writes events, outcomes and the allow-listed table"
    );

    // Neither role is more than a login.
    for role in ["sluice_gateway", "sluice_runner"] {
        let row = owner
            .query_one(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolreplication
                 FROM pg_roles WHERE rolname = $1",
                &[&role],
            )
            .await
            .unwrap_or_else(|e| panic!("{role}: {e}"));
        for i in 0..5 {
            assert!(!row.get::<_, bool>(i), "{role} has admin attribute {i}");
        }
    }
    owner
        .execute("DELETE FROM sluice.jobs WHERE id = $1", &[&done])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_role_may_not_migrate_a_stale_schema_says_so() {
    // A scratch database with no Sluice schema at all: the gateway's role
    // may not create it, and the start fails with one line saying what to
    // run, instead of half a schema.
    let name = format!("lp_{}", uuid::Uuid::new_v4().simple());
    let owner = db().await;
    owner
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = {
        let base = gateway_database_url();
        let (server, _) = base.rsplit_once('/').expect("a URL with a database name");
        format!("{server}/{name}")
    };
    let out = std::process::Command::new(sluice_tests::system::bin_dir().join("sluice-gateway"))
        .env_remove("SLUICE_CONFIG")
        .env("SLUICE_DATABASE__URL", &url)
        .env("SLUICE_AUTH__JWT_SECRET", sluice_tests::TEST_SECRET)
        .env("SLUICE_GATEWAY__LISTEN", "127.0.0.1:0")
        .env("SLUICE_LOG__FILTER", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running sluice-gateway");
    owner
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on a stale schema: {stderr}");
    assert!(
        stderr.contains("may not migrate") && stderr.contains("sluice-jobs migrate"),
        "{stderr}"
    );
}

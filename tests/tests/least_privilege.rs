//! Each process its own broker user (made by `deploy/provision.sh`; the
//! harness gives them to every gateway and runner it starts): the
//! gateway's may not publish to the events exchange, so whoever holds the
//! gateway's credentials cannot send frames to any user, while the
//! runner's may; neither is an administrator. A queued job the gateway
//! cancels still gets its `cancelled` event, which a runner publishes.

use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use serde_json::json;
use sluice_proto::EventStatus;
use sluice_tests::system::{gateway_amqp_url, runner_amqp_url};
use sluice_tests::{Client, System, SystemOptions, token, unique_user};

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
    // The one runner slot is busy, so the second job stays queued and the
    // gateway cancels it on its own: the event is the gateway's to commit
    // and a runner's to publish.
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
        "cancelled event after {:?}: a runner publishes it at once, not at a relay round",
        started.elapsed()
    );
    client.cancel(busy).await;
    client.events_until_terminal(busy).await;
}

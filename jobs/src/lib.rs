//! The Sluice job runner: takes jobs from RabbitMQ, does all blocking
//! database work, commits each job's outcome together with its event, then
//! publishes the event. See `docs/architecture.md`.

pub mod catalog;
pub mod consumer;
pub mod error;
pub mod handlers;
pub mod lifecycle;
pub mod publisher;
pub mod relay;
pub mod rows;

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use sluice_common::amqp::{self, Topology};
use sluice_common::{Config, db};
use tokio_util::sync::CancellationToken;

/// How long start-up waits for PostgreSQL and RabbitMQ to answer.
const START_PATIENCE: Duration = Duration::from_secs(60);
/// How long shutdown waits for the jobs in hand.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Applies the schema migrations and returns.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let pool = db::pool(&config.database)?;
    db::wait_ready(&pool, START_PATIENCE).await?;
    db::migrate(&pool).await?;
    Ok(())
}

/// Runs the runner until `shutdown` is cancelled (or the broker consumer
/// ends, which is an error so that a supervisor restarts the process).
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = db::pool(&config.database)?;
    db::wait_ready(&pool, START_PATIENCE).await?;
    db::migrate(&pool).await?;

    let topology = Topology::new(&config.amqp.prefix);
    let conn = amqp::connect(&config.amqp.url, "sluice-jobs", START_PATIENCE).await?;
    let events_channel = amqp::confirm_channel(&conn).await?;
    topology.declare_events(&events_channel).await?;
    let jobs_channel = conn.create_channel().await?;
    topology.declare_jobs(&jobs_channel).await?;
    jobs_channel
        .basic_qos(config.runner.concurrency, BasicQosOptions::default())
        .await?;
    let consumer = jobs_channel
        .basic_consume(
            topology.jobs_queue.as_str().into(),
            format!("sluice-jobs-{}", std::process::id()).into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let publisher = Arc::new(publisher::EventPublisher::new(
        events_channel,
        topology.events_exchange.clone(),
        Duration::from_millis(config.amqp.publish_timeout_ms),
    ));
    let relay = tokio::spawn(relay::run(
        pool.clone(),
        publisher.clone(),
        Duration::from_millis(config.runner.relay_interval_ms),
        shutdown.clone(),
    ));
    tracing::info!(
        queue = %topology.jobs_queue,
        concurrency = config.runner.concurrency,
        "runner consuming jobs"
    );
    let runner = Arc::new(consumer::Runner {
        pool,
        handlers: handlers::Handlers::builtin(),
        settings: config.runner.clone(),
        events: publisher,
    });
    let outcome = consumer::consume(runner, consumer, shutdown.clone(), SHUTDOWN_GRACE).await;
    shutdown.cancel();
    let _ = relay.await;
    let _ = conn.close(200, "runner stopping".into()).await;
    outcome
}

//! The Sluice job runner: takes jobs from RabbitMQ, does all blocking
//! database work, commits each job's outcome together with its event, then
//! publishes the event. See `docs/architecture.md`.

pub mod announce;
mod attempt;
pub mod catalog;
pub mod config;
pub mod consumer;
pub mod control;
pub mod dead;
pub mod error;
pub mod handle;
pub mod handlers;
pub mod metrics;
pub mod retention;
pub mod retry;
pub mod rows;
pub mod settle;
pub mod sql_kinds;

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use sluice_broker::{self as amqp, Topology};
use sluice_outbox::Publisher;
use sluice_outbox::relay;

use crate::config::Config;
use tokio_util::sync::CancellationToken;

pub use crate::handle::{JobRunner, RunError, RunnerBuilder, RunnerHandle, StartError};

/// How long start-up waits for PostgreSQL and RabbitMQ to answer.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// Applies the schema migrations and returns.
pub async fn migrate(config: &Config) -> Result<(), sluice_store::StoreError> {
    let pool = sluice_store::pool(&config.database)?;
    wait_for_database(&pool).await?;
    sluice_store::migrate(&pool, &config.database).await?;
    Ok(())
}

async fn wait_for_database(pool: &deadpool_postgres::Pool) -> Result<(), sluice_store::StoreError> {
    sluice_process::retry("reaching the database", START_PATIENCE, || {
        sluice_store::check(pool)
    })
    .await
}

/// The runner's AMQP side, set up as one unit so it can be retried whole.
struct Broker {
    conn: Arc<lapin::Connection>,
    events_channel: amqp::ConfirmChannel,
    retrier: retry::Retrier,
    jobs_channel: lapin::Channel,
    consumer: lapin::Consumer,
}

/// Connects, declares and starts consuming, retrying the whole sequence for
/// up to [`START_PATIENCE`]. A retry is needed even with the broker up:
/// RabbitMQ 3.10 answers a consume on a quorum queue that another client is
/// declaring at the same moment with a hard INTERNAL_ERROR (its Raft
/// process does not exist yet), which closes the connection.
async fn connect_broker(config: &Config, topology: &Topology) -> Result<Broker, RunError> {
    sluice_process::retry("broker setup", START_PATIENCE, || async {
        // An operation on a connection the broker closed with a hard error
        // can wait forever for a recovery that never comes: bound each try.
        tokio::time::timeout(amqp::SETUP_ATTEMPT, try_connect_broker(config, topology))
            .await
            .map_err(|_| RunError::BrokerSetupTimeout(amqp::SETUP_ATTEMPT))?
    })
    .await
}

async fn try_connect_broker(config: &Config, topology: &Topology) -> Result<Broker, RunError> {
    // One try: the caller retries the whole setup.
    let conn = Arc::new(amqp::connect(&config.amqp, "sluice-jobs").await?);
    let setup = async {
        let events_channel = amqp::ConfirmChannel::open(conn.clone().into()).await?;
        let declare = conn.create_channel().await?;
        topology.declare_events(&declare).await?;
        let _ = declare.close(200, "declared".into()).await;
        let jobs_channel = conn.create_channel().await?;
        topology.declare_jobs(&jobs_channel).await?;
        let retry_base = Duration::from_millis(config.runner.retry_delay_ms);
        topology
            .declare_retry(&jobs_channel, retry_base, retry::TIERS)
            .await?;
        let retrier = retry::Retrier::new(
            amqp::ConfirmChannel::open(conn.clone().into()).await?,
            topology.clone(),
            retry_base,
            Duration::from_millis(config.amqp.publish_timeout_ms),
        );
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
        Ok::<_, lapin::Error>((events_channel, retrier, jobs_channel, consumer))
    };
    match setup.await {
        Ok((events_channel, retrier, jobs_channel, consumer)) => Ok(Broker {
            conn,
            events_channel,
            retrier,
            jobs_channel,
            consumer,
        }),
        Err(e) => {
            let _ = conn.close(200, "setup failed".into()).await;
            Err(e.into())
        }
    }
}

/// Runs the runner until `shutdown` is cancelled, through any number of
/// lost and rebuilt broker connections. [`JobRunner::start`] spawns it and
/// returns a handle.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    run_with(config, handlers::Handlers::builtin(), shutdown).await
}

/// [`run`] with these handlers instead of the built-in ones.
pub async fn run_with(
    config: Config,
    handlers: handlers::Handlers,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    if !config.runner.metrics_listen.is_empty() {
        let addr = config.runner.metrics_listen.parse()?;
        sluice_process::metrics::install_listener(addr, crate::metrics::describe)?;
        tracing::info!(%addr, "serving metrics");
    }
    let (pool, tls) = sluice_store::pool_and_connector(&config.database)?;
    wait_for_database(&pool).await?;
    sluice_store::ensure_current(&pool, &config.database).await?;
    let mut handlers = handlers;
    let mut declared = Vec::with_capacity(config.kinds.len());
    for (name, kind) in &config.kinds {
        declared.push(sql_kinds::declare(name, kind).map_err(announce::KindsError::from)?);
    }
    for kind in sql_kinds::prepare(&pool, declared).await? {
        handlers.register(Box::new(kind));
    }
    let kinds = handlers.specs(&config.runner);
    announce::check(&kinds, &config.runner.kind_timeouts_ms)?;
    let announcer = sluice_store::kinds::Announcer {
        runner_id: uuid::Uuid::new_v4(),
        amqp_prefix: config.amqp.prefix.clone(),
        heartbeat: Duration::from_millis(config.runner.kinds_heartbeat_ms),
    };
    announce::announce(&pool, &announcer, &kinds).await?;
    tracing::info!(runner = %announcer.runner_id, kinds = kinds.len(), "announced the kinds this runner serves");
    let heartbeat = tokio::spawn(announce::keep_alive(
        pool.clone(),
        announcer,
        kinds,
        shutdown.clone(),
    ));
    let retention = tokio::spawn(retention::run(
        pool.clone(),
        retention::Retention {
            events: Duration::from_secs(config.runner.event_retention_hours * 3600),
            jobs: Duration::from_secs(config.runner.job_retention_hours * 3600),
        },
        shutdown.clone(),
    ));

    let topology = Topology::new(&config.amqp.prefix);
    // Shared by every broker incarnation: jobs in hand outlive a lost
    // connection, and their cancel tokens and the hand-back signal with them.
    let handlers = Arc::new(handlers);
    let in_flight = Arc::new(consumer::InFlight::default());
    let hand_back = CancellationToken::new();
    let broker_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gauges = {
        let pool = pool.clone();
        let broker_up = broker_up.clone();
        tokio::spawn(async move {
            loop {
                let up = broker_up.load(std::sync::atomic::Ordering::Relaxed);
                sluice_process::metrics::record_dependencies(&pool, up);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let cancel_poll = tokio::spawn(consumer::poll_cancels(
        pool.clone(),
        in_flight.clone(),
        Duration::from_millis(config.runner.cancel_poll_ms),
    ));
    let grace = Duration::from_millis(config.runner.shutdown_grace_ms);

    // One iteration per broker connection: when it is lost, everything that
    // used it (consumer, control queue, relay, publishers) is built again.
    let outcome = loop {
        let broker = tokio::select! {
            broker = connect_broker(&config, &topology) => broker?,
            _ = shutdown.cancelled() => break Ok(()),
        };
        broker_up.store(true, std::sync::atomic::Ordering::Relaxed);
        sluice_process::metrics::record_dependencies(&pool, true);
        let incarnation = CancellationToken::new();
        let publisher = Arc::new(Publisher::new(
            broker.events_channel,
            &topology,
            Duration::from_millis(config.amqp.publish_timeout_ms),
        ));
        let control = {
            let conn = broker.conn.clone();
            let topology = topology.clone();
            let in_flight = in_flight.clone();
            let incarnation = incarnation.clone();
            let pool = pool.clone();
            let publisher = publisher.clone();
            let cancel_poll_ms = config.runner.cancel_poll_ms;
            tokio::spawn(async move {
                let sweep = Duration::from_millis(cancel_poll_ms);
                if let Err(e) =
                    control::consume(&conn, &topology, in_flight, pool, publisher, sweep).await
                {
                    tracing::warn!(error = %e, "control consumer ended");
                }
                // Without it cancels are missed: rebuild the broker side.
                incarnation.cancel();
            })
        };
        let settle = {
            let conn = broker.conn.clone();
            let topology = topology.clone();
            let pool = pool.clone();
            let publisher = publisher.clone();
            let incarnation = incarnation.clone();
            tokio::spawn(async move {
                if let Err(e) = settle::consume(&conn, &topology, pool, publisher).await {
                    tracing::warn!(error = %e, "dead-letter settle consumer ended");
                }
                // Without it a job the broker gave up on stays running.
                incarnation.cancel();
            })
        };
        let relay = tokio::spawn(relay::run(
            pool.clone(),
            publisher.clone(),
            Duration::from_millis(config.runner.relay_interval_ms),
            config.amqp.publish_timeout(),
            incarnation.clone(),
            |round| {
                ::metrics::gauge!(crate::metrics::OUTBOX_BACKLOG, "kind" => "event")
                    .set(round.events_left as f64);
                ::metrics::gauge!(crate::metrics::OUTBOX_BACKLOG, "kind" => "job")
                    .set(round.jobs_left as f64);
                ::metrics::gauge!(crate::metrics::OUTBOX_SET_ASIDE, "kind" => "event")
                    .set(round.events_set_aside as f64);
                ::metrics::gauge!(crate::metrics::OUTBOX_SET_ASIDE, "kind" => "job")
                    .set(round.jobs_set_aside as f64);
            },
        ));
        let messages = tokio::spawn(sluice_outbox::messages::run(
            pool.clone(),
            config.database.clone(),
            publisher.clone(),
            Duration::from_millis(config.runner.relay_interval_ms),
            incarnation.clone(),
        ));
        tracing::info!(
            queue = %topology.jobs_queue,
            concurrency = config.runner.concurrency,
            "runner consuming jobs"
        );
        let runner = Arc::new(consumer::Runner {
            pool: pool.clone(),
            tls: tls.clone(),
            handlers: handlers.clone(),
            settings: config.runner.clone(),
            events: publisher,
            in_flight: in_flight.clone(),
            retrier: broker.retrier,
            hand_back: hand_back.clone(),
        });
        let ended = consumer::consume(
            runner,
            broker.jobs_channel,
            broker.consumer,
            shutdown.clone(),
            incarnation.clone(),
            grace,
        )
        .await;
        incarnation.cancel();
        let _ = relay.await;
        let _ = messages.await;
        control.abort();
        settle.abort();
        broker_up.store(false, std::sync::atomic::Ordering::Relaxed);
        sluice_process::metrics::record_dependencies(&pool, false);
        amqp::close(&broker.conn, "runner stopping").await;
        match ended {
            consumer::Stopped::Shutdown => break Ok(()),
            consumer::Stopped::BrokerLost(reason) => {
                tracing::warn!(%reason, "broker connection lost; reconnecting");
            }
        }
    };
    gauges.abort();
    heartbeat.abort();
    cancel_poll.abort();
    retention.abort();
    outcome
}

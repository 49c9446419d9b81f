//! The Sluice gateway: WebSocket sessions, authentication, job submission
//! over AMQP with publisher confirms, and fan-out of job events to every
//! session of their user. It never runs job work and never waits on it.
//! See `docs/architecture.md`.

pub mod api;
pub mod auth;
pub mod broker;
pub mod config;
pub mod demo;
pub mod handle;
pub mod http;
pub mod jobs;
pub mod kinds;
pub mod limits;
pub mod listener;
pub mod mailbox;
pub mod metrics;
pub mod quota;
pub mod registry;
pub mod session;
pub mod state;
pub mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use sluice_broker::ControlPublisher;
use sluice_broker::{self as amqp, Topology};
use sluice_outbox::Publisher;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::state::AppState;

pub use crate::handle::{Gateway, GatewayError, GatewayHandle, StartError};

/// How long start-up waits for PostgreSQL and RabbitMQ to answer.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// Serves on `listener` until `shutdown` is cancelled, then closes every
/// session with 1012 and waits (up to the drain grace) for them to end.
/// Meanwhile `verifier`'s key files are read again on SIGHUP and every
/// `auth.keys_reload_secs` (see [`auth::reload`]).
/// [`Gateway::start`] reads the keys, spawns it and returns a handle.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    verifier: auth::Verifier,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    if !verifier.kids().is_empty() || !verifier.skipped().is_empty() {
        tracing::info!(
            kids = ?verifier.kids(),
            skipped = ?verifier.skipped(),
            "verification keys"
        );
    }
    // First, before any wait: from here on SIGHUP reloads the keys rather
    // than ending the process. Stopped with the gateway, however it ends.
    let reload_period = (config.auth.keys_reload_secs > 0)
        .then(|| Duration::from_secs(config.auth.keys_reload_secs));
    let _key_reloads =
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(auth::reload::keep_fresh(
            verifier.clone(),
            auth::reload::hangups(),
            reload_period,
            shutdown.clone(),
        )));
    if config.gateway.dev_mode {
        tracing::warn!(
            listen = %config.gateway.listen,
            dev_secret = config.uses_dev_secret(),
            "development mode: POST /v1/dev/token signs tokens for anyone; loopback only, never in production"
        );
    }
    let metrics = sluice_process::metrics::install_recorder(crate::metrics::describe)?;
    let pool = sluice_store::pool(&config.database)?;
    sluice_process::retry("reaching the database", START_PATIENCE, || {
        sluice_store::check(&pool)
    })
    .await?;
    sluice_store::ensure_current(&pool, &config.database).await?;

    let topology = Topology::new(&config.amqp.prefix);
    let publish_timeout = Duration::from_millis(config.amqp.publish_timeout_ms);
    // Retried whole: a declare racing another client's on a new quorum queue
    // can make RabbitMQ close the connection (see sluice-jobs' start-up).
    let (link, outbox, control) = sluice_process::retry("broker setup", START_PATIENCE, || async {
        let link = amqp::Link::new(broker::connect_bounded(&config, &topology).await?);
        let publishers = async {
            let outbox = Publisher::new(
                amqp::ConfirmChannel::open(link.clone()).await?,
                &topology,
                publish_timeout,
            );
            let control = ControlPublisher::new(
                amqp::ConfirmChannel::open(link.clone()).await?,
                &topology,
                publish_timeout,
            );
            Ok::<_, lapin::Error>((outbox, control))
        };
        match tokio::time::timeout(amqp::SETUP_ATTEMPT, publishers).await {
            Ok(Ok((outbox, control))) => Ok((link, outbox, control)),
            failed => {
                amqp::close(&link.connection(), "setup failed").await;
                Err(match failed {
                    Ok(Err(e)) => e.into(),
                    _ => GatewayError::BrokerSetupTimeout(amqp::SETUP_ATTEMPT),
                })
            }
        }
    })
    .await?;
    let instance = config
        .gateway
        .instance_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());

    let gateway = &config.gateway;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(gateway.ws_read_buffer_bytes)
        .write_buffer_size(0)
        .max_message_size(Some(gateway.max_message_bytes))
        .max_frame_size(Some(gateway.max_message_bytes));
    let state = Arc::new(AppState {
        verifier,
        registry: Arc::new(registry::Registry::new(
            registry::MailboxLimits {
                frames: gateway.outbound_queue,
                bytes: gateway.outbound_queue_bytes,
            },
            gateway.max_sessions_per_user,
        )),
        connect_limiter: limits::ConnectLimiter::new(
            gateway.connect_rate_per_address,
            gateway.connect_burst_per_address,
        ),
        submit_quota: quota::SubmitQuota::new(
            gateway.submits_per_user_per_sec,
            gateway.submit_burst_per_user,
        ),
        unauthenticated: Arc::new(limits::Unauthenticated::new(
            gateway.max_unauthenticated,
            gateway.max_unauthenticated_per_address,
        )),
        outbox,
        control,
        kinds: Arc::new(kinds::Kinds::new(
            &config.amqp.prefix,
            std::time::Duration::from_secs(gateway.kind_grace_secs),
        )),
        pool,
        amqp: link,
        shutdown: shutdown.clone(),
        sessions: TaskTracker::new(),
        broker_reconnects: tokio::sync::watch::Sender::new(0),
        // The start-up just reached it.
        database_up: std::sync::atomic::AtomicBool::new(true),
        ws_config,
        metrics,
        per_frame: state::PerFrameMetrics::new(),
        config,
    });

    let events = tokio::spawn(broker::keep_events_flowing(
        state.clone(),
        topology.clone(),
        instance,
    ));
    let database_watch = tokio::spawn(watch_database(state.clone()));
    let kinds_watch = tokio::spawn(kinds::keep_fresh(
        state.kinds.clone(),
        state.pool.clone(),
        shutdown.clone(),
    ));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "gateway listening");
    let app = http::router(state.clone());
    // The listener stays open while draining, so /readyz can say 503 and
    // new upgrades get a 503 that a proxy retries elsewhere.
    let stop_http = CancellationToken::new();
    let options = listener::ConnectionOptions {
        header_timeout: Duration::from_millis(state.config.gateway.http_header_timeout_ms),
        send_buffer_bytes: state.config.gateway.socket_send_buffer_bytes,
    };
    let server = listener::serve(listener, app, options, stop_http.clone());
    let mut server = tokio::spawn(server);
    tokio::select! {
        _ = shutdown.cancelled() => {}
        ended = &mut server => {
            shutdown.cancel();
            ended?;
            return Ok(());
        }
    }

    let grace = Duration::from_millis(state.config.gateway.drain_grace_ms);
    tracing::info!(
        sessions = state.registry.session_count(),
        spread_ms = state.config.gateway.drain_spread_ms,
        "draining: closing sessions with 1012"
    );
    state.sessions.close();
    if tokio::time::timeout(grace, state.sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = state.registry.session_count(),
            "sessions still open after the drain grace"
        );
    }
    stop_http.cancel();
    server.await?;
    tracing::info!("drained");
    database_watch.abort();
    kinds_watch.abort();
    events.abort();
    amqp::close(&state.amqp.connection(), "gateway stopping").await;
    Ok(())
}

/// Checks the database once a second (each check bounded to a second) and
/// keeps the answer in [`AppState::database_up`] for `/readyz`, so that a
/// flood of readiness probes costs no connections.
pub async fn watch_database(state: Arc<AppState>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let up = tokio::time::timeout(Duration::from_secs(1), sluice_store::check(&state.pool))
            .await
            .is_ok_and(|checked| checked.is_ok());
        state
            .database_up
            .store(up, std::sync::atomic::Ordering::Relaxed);
    }
}

//! The gateway as a library entry: [`Gateway::start`] spawns [`serve`] on
//! a listener the caller bound and returns a [`GatewayHandle`] with its
//! address, its shutdown trigger and a `join()` that reports how it ended,
//! a panic included. The binary and the end-to-end tests start it alike.

use sluice_process::config::Settings;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use sluice_process::ConfigError;
use sluice_process::metrics::MetricsError;
use sluice_store::StoreError;
use tokio::net::TcpListener;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::auth::Verifier;
use crate::config::Config;
use crate::serve;

/// Why a gateway could not be started at all.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is out of range (the same checks as at load).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listener has no local address (it is not bound).
    #[error("the listener has no local address: {0}")]
    Listener(#[source] std::io::Error),
}

/// Why a gateway stopped other than by a clean drain.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The metrics recorder could not be installed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// PostgreSQL could not be reached or migrated within the start-up
    /// patience.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// RabbitMQ could not be reached or set up within the start-up patience.
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    /// One broker setup attempt took longer than its bound, the last time.
    #[error("broker setup took over {0:?}")]
    BrokerSetupTimeout(Duration),
    /// The HTTP server failed.
    #[error("serving HTTP: {0}")]
    Serve(#[from] std::io::Error),
    /// A task of the gateway panicked (or was cancelled); its message says
    /// which.
    #[error("gateway task failed: {0}")]
    Task(#[from] JoinError),
}

/// The gateway as a library entry.
pub struct Gateway;

impl Gateway {
    /// Checks `config` and reads its key files, then spawns [`serve`] on
    /// `listener` (already bound: the caller chooses the address, and
    /// `127.0.0.1:0` cannot race) and returns at once; start-up (database,
    /// migrations, broker) goes on in the task and its failure comes out of
    /// [`GatewayHandle::join`].
    ///
    /// Must be called inside a tokio runtime; the gateway runs on it.
    /// Several gateways may run in one process: they share the process's
    /// metrics recorder (see `sluice_process::metrics`).
    pub fn start(config: Config, listener: TcpListener) -> Result<GatewayHandle, StartError> {
        config.validate()?;
        // The key files are read now: a bad one stops the start here, with
        // one line naming the setting and the file.
        let verifier = Verifier::new(&config.auth).map_err(ConfigError::from)?;
        let local_addr = listener.local_addr().map_err(StartError::Listener)?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, config, verifier, shutdown.clone()));
        Ok(GatewayHandle {
            local_addr,
            shutdown,
            task,
        })
    }
}

/// A running gateway. Dropping the handle does not stop it: call
/// [`GatewayHandle::shutdown`], then [`GatewayHandle::join`].
#[derive(Debug)]
pub struct GatewayHandle {
    /// Where the listener is bound.
    local_addr: SocketAddr,
    /// Cancelled to begin the drain; [`serve`] also cancels it itself when
    /// its event consumer fails.
    shutdown: CancellationToken,
    /// The [`serve`] task.
    task: JoinHandle<Result<(), GatewayError>>,
}

impl GatewayHandle {
    /// The address the gateway serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Begins the graceful drain, as SIGTERM does for the binary: `/readyz`
    /// and new upgrades answer 503, sessions close with 1012 spread over
    /// `gateway.drain_spread_ms`, then the server stops. Returns at once.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Whether the gateway has stopped (drained, failed or panicked).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the gateway to stop: `Ok` after a clean drain, the error
    /// that stopped it otherwise, and [`GatewayError::Task`] if it panicked.
    pub async fn join(self) -> Result<(), GatewayError> {
        self.task.await?
    }

    /// Waits for `signal` and then shuts down and joins, as the binary does
    /// with SIGTERM; if the gateway stops first (it failed to start, or its
    /// event consumer ended), returns how it ended without waiting longer.
    pub async fn shutdown_on(self, signal: impl Future<Output = ()>) -> Result<(), GatewayError> {
        let GatewayHandle {
            shutdown, mut task, ..
        } = self;
        tokio::select! {
            ended = &mut task => return ended?,
            () = signal => shutdown.cancel(),
        }
        task.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_of_the_gateway_task_comes_out_of_join() {
        let handle = GatewayHandle {
            local_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            shutdown: CancellationToken::new(),
            task: tokio::spawn(async { panic!("boom") }),
        };
        let err = handle.join().await.unwrap_err();
        assert!(
            matches!(&err, GatewayError::Task(e) if e.is_panic()),
            "{err}"
        );
        assert!(err.to_string().contains("boom"), "{err}");
    }

    #[tokio::test]
    async fn start_refuses_a_bad_config_before_spawning() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = Config::default();
        config.gateway.outbound_queue = 0;
        let err = Gateway::start(config, listener).unwrap_err();
        assert!(err.to_string().contains("gateway.outbound_queue"), "{err}");
    }

    #[tokio::test]
    async fn start_refuses_an_unreadable_key_file_naming_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = Config::default();
        config.auth.jwt_secret = "0123456789abcdef0123456789abcdef".into();
        config.auth.jwks_file = Some("/nonexistent/sluice/jwks.json".into());
        let err = Gateway::start(config, listener).unwrap_err().to_string();
        assert!(
            err.contains("auth.jwks_file") && err.contains("/nonexistent/sluice/jwks.json"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

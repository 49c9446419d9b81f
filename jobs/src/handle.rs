//! The runner as a library entry: [`JobRunner::start`] spawns [`run`] and
//! returns a [`RunnerHandle`] with its shutdown trigger and a `join()` that
//! reports how it ended, a panic included. The binary and the end-to-end
//! tests start it alike.
//!
//! Named `JobRunner`, not `Runner`: [`crate::consumer::Runner`] is the
//! state the job tasks share.

use sluice_process::config::Settings;
use std::future::Future;
use std::time::Duration;

use sluice_process::ConfigError;
use sluice_process::metrics::MetricsError;
use sluice_store::StoreError;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::handlers::Handlers;
use crate::run_with;

/// Why a runner could not be started at all.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is out of range (the same checks as at load).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Why a runner stopped other than by a clean shutdown.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `runner.metrics_listen` is not a socket address.
    #[error("runner.metrics_listen: {0}")]
    MetricsListen(#[from] std::net::AddrParseError),
    /// The metrics recorder or its listener could not be installed.
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
    /// The kinds could not be announced as they are (a schema that does
    /// not compile, a time limit for a kind not served, a declaration).
    #[error(transparent)]
    Kinds(#[from] crate::announce::KindsError),
    /// The database refused a declared kind's statement.
    #[error(transparent)]
    Prepare(#[from] crate::sql_kinds::PrepareError),
    /// The runner task panicked (or was cancelled); its message says which.
    #[error("runner task failed: {0}")]
    Task(#[from] JoinError),
}

/// The runner as a library entry.
pub struct JobRunner;

/// Builds a runner with a deployment's own kinds beside the built-in ones:
/// `JobRunner::builder(config).job(MyJob)?.start()`.
pub struct RunnerBuilder {
    config: Config,
    handlers: Handlers,
}

impl RunnerBuilder {
    /// Adds a kind written as a [`crate::handlers::Job`].
    pub fn job<J: crate::handlers::Job>(
        mut self,
        job: J,
    ) -> Result<Self, crate::handlers::BadKindName> {
        self.handlers.job(job)?;
        Ok(self)
    }

    /// Adds a [`crate::handlers::Handler`] (the untyped form).
    pub fn handler(mut self, handler: impl crate::handlers::Handler + 'static) -> Self {
        self.handlers.register(Box::new(handler));
        self
    }

    /// Starts the runner, as [`JobRunner::start`] does.
    pub fn start(self) -> Result<RunnerHandle, StartError> {
        JobRunner::start_with(self.config, self.handlers)
    }
}

impl JobRunner {
    /// Checks `config`, then spawns [`run`] and returns at once; start-up
    /// (database, migrations, broker) goes on in the task and its failure
    /// comes out of [`RunnerHandle::join`].
    ///
    /// Must be called inside a tokio runtime; the runner runs on it. With
    /// `runner.metrics_listen` set it serves `/metrics` there, which only
    /// the first metrics install of a process can do; a runner started
    /// in-process beside a gateway or another runner leaves it empty and
    /// shares the process's recorder (see `sluice_process::metrics`).
    pub fn start(config: Config) -> Result<RunnerHandle, StartError> {
        Self::start_with(config, Handlers::builtin())
    }

    /// A runner with the built-in kinds, to which a deployment adds its
    /// own (see [`RunnerBuilder`]).
    pub fn builder(config: Config) -> RunnerBuilder {
        RunnerBuilder {
            config,
            handlers: Handlers::builtin(),
        }
    }

    /// [`JobRunner::start`] with these handlers instead of the built-in
    /// ones: an application's own Rust handlers, registered on
    /// [`Handlers`] by kind.
    pub fn start_with(config: Config, handlers: Handlers) -> Result<RunnerHandle, StartError> {
        config.validate()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_with(config, handlers, shutdown.clone()));
        Ok(RunnerHandle { shutdown, task })
    }
}

/// A running runner. Dropping the handle does not stop it: call
/// [`RunnerHandle::shutdown`], then [`RunnerHandle::join`].
#[derive(Debug)]
pub struct RunnerHandle {
    /// Cancelled to stop taking jobs.
    shutdown: CancellationToken,
    /// The [`run`] task.
    task: JoinHandle<Result<(), RunError>>,
}

impl RunnerHandle {
    /// Begins the shutdown, as SIGTERM does for the binary: no new jobs;
    /// jobs in hand may finish within `runner.shutdown_grace_ms`, the rest
    /// are handed back to the queue. Returns at once.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Whether the runner has stopped (shut down, failed or panicked).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the runner to stop: `Ok` after a clean shutdown, the error
    /// that stopped it otherwise, and [`RunError::Task`] if it panicked.
    pub async fn join(self) -> Result<(), RunError> {
        self.task.await?
    }

    /// Waits for `signal` and then shuts down and joins, as the binary does
    /// with SIGTERM; if the runner stops first (it failed to start),
    /// returns how it ended without waiting longer.
    pub async fn shutdown_on(self, signal: impl Future<Output = ()>) -> Result<(), RunError> {
        let RunnerHandle { shutdown, mut task } = self;
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
    async fn a_panic_of_the_runner_task_comes_out_of_join() {
        let handle = RunnerHandle {
            shutdown: CancellationToken::new(),
            task: tokio::spawn(async { panic!("boom") }),
        };
        let err = handle.join().await.unwrap_err();
        assert!(matches!(&err, RunError::Task(e) if e.is_panic()), "{err}");
        assert!(err.to_string().contains("boom"), "{err}");
    }

    #[tokio::test]
    async fn start_refuses_a_bad_config_before_spawning() {
        let mut config = Config::default();
        config.runner.concurrency = 0;
        let err = JobRunner::start(config).unwrap_err();
        assert!(err.to_string().contains("runner.concurrency"), "{err}");
    }
}

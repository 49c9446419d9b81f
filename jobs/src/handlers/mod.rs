//! Job handlers: one per kind, behind a trait so new kinds plug in.
//!
//! A handler does the job's database work inside the transaction it is
//! given; the runner then records the outcome and its event in that same
//! transaction and commits. A handler never commits.

mod batch_upsert;
mod sleep;

use std::collections::HashMap;

use crate::config::RunnerConfig;
use futures_util::future::BoxFuture;
use sluice_proto::{JobKind, OwnedJobEnvelope};

use crate::error::JobFailure;
use sluice_outbox::Publisher;

/// What a handler gets to do its work.
pub struct JobContext<'a, 't> {
    /// The job's transaction; the outcome commits with it.
    pub tx: &'a tokio_postgres::Transaction<'t>,
    /// The job as delivered.
    pub job: &'a OwnedJobEnvelope,
    /// Runner settings (allow-list, chunk size).
    pub settings: &'a RunnerConfig,
    /// For advisory `progress` events.
    pub events: &'a Publisher,
}

/// Runs one kind of job.
pub trait Handler: Send + Sync {
    /// The kind this handler runs.
    fn kind(&self) -> JobKind;
    /// Does the work; the returned value becomes the job's `result`.
    fn run<'a>(
        &'a self,
        ctx: JobContext<'a, '_>,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobFailure>>;
}

/// The handlers of every kind this runner serves.
pub struct Handlers {
    by_kind: HashMap<JobKind, Box<dyn Handler>>,
}

impl Handlers {
    /// The built-in handlers (`batch_upsert`, `sleep`).
    pub fn builtin() -> Self {
        let mut handlers = Self {
            by_kind: HashMap::new(),
        };
        handlers.register(Box::new(batch_upsert::BatchUpsert));
        handlers.register(Box::new(sleep::Sleep));
        handlers
    }

    /// Adds (or replaces) the handler of its kind.
    pub fn register(&mut self, handler: Box<dyn Handler>) {
        self.by_kind.insert(handler.kind(), handler);
    }

    /// The handler for `kind`, if registered.
    pub fn get(&self, kind: JobKind) -> Option<&dyn Handler> {
        self.by_kind.get(&kind).map(|h| h.as_ref())
    }
}

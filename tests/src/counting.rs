//! A `sleep` handler that counts how often each job executes, for the
//! exactly-once tests. It replaces the built-in `sleep` through the runner's
//! own handler registry ([`sluice_jobs::JobRunner::start_with`]), so every
//! other part of the runner is the product's.
//!
//! It counts two ways:
//! - [`Executions::started`]: every execution that began, whether its work
//!   was later committed or rolled back (in memory, in this process);
//! - [`Executions::committed`]: rows of `public.sluice_test_effects`, one
//!   inserted by each execution inside the job's transaction. An insert is
//!   not idempotent: two committed executions leave two rows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use sluice_jobs::error::JobFailure;
use sluice_jobs::handlers::{Handler, Handlers, JobContext};
use uuid::Uuid;

/// Executions begun per job, shared by the handler and the test.
#[derive(Clone, Default)]
pub struct Executions {
    started: Arc<Mutex<HashMap<Uuid, u32>>>,
}

impl Executions {
    /// Creates the effects table (once per database) and an empty count.
    pub async fn new() -> Executions {
        crate::system::db()
            .await
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS public.sluice_test_effects (
                     job_id uuid NOT NULL,
                     at timestamptz NOT NULL DEFAULT clock_timestamp()
                 );
                 GRANT SELECT, INSERT ON public.sluice_test_effects TO sluice_runner",
            )
            .await
            .expect("creating public.sluice_test_effects");
        Executions::default()
    }

    /// The built-in handlers with `sleep` replaced by the counting one.
    pub fn handlers(&self) -> Handlers {
        let mut handlers = Handlers::builtin();
        handlers.register(Box::new(CountingSleep {
            executions: self.clone(),
            panic_first: false,
            builtin: Handlers::builtin(),
        }));
        handlers
    }

    /// Like [`Executions::handlers`], but the first execution of every job
    /// panics inside the handler (after its effect was written in the
    /// job's transaction), as a bug in an application's handler would.
    pub fn panicking_handlers(&self) -> Handlers {
        let mut handlers = Handlers::builtin();
        handlers.register(Box::new(CountingSleep {
            executions: self.clone(),
            panic_first: true,
            builtin: Handlers::builtin(),
        }));
        handlers
    }

    /// Executions of `job_id` that began.
    pub fn started(&self, job_id: Uuid) -> u32 {
        self.started
            .lock()
            .map(|m| m.get(&job_id).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Executions of `job_id` whose effect committed.
    pub async fn committed(&self, job_id: Uuid) -> i64 {
        crate::system::db()
            .await
            .query_one(
                "SELECT count(*) FROM public.sluice_test_effects WHERE job_id = $1",
                &[&job_id],
            )
            .await
            .expect("counting effects")
            .get(0)
    }
}

/// Counts, writes its effect, then runs the product's own `sleep`.
struct CountingSleep {
    executions: Executions,
    panic_first: bool,
    builtin: Handlers,
}

impl Handler for CountingSleep {
    fn spec(&self) -> sluice_jobs::handlers::HandlerSpec {
        // Stands in for the product's own `sleep`, under its name and schema.
        let mut spec = self
            .builtin
            .specs(&Default::default())
            .into_iter()
            .find(|s| s.name.as_str() == sluice_proto::kind::SLEEP)
            .expect("the built-in sleep");
        spec.description.insert_str(0, "(counting) ");
        sluice_jobs::handlers::HandlerSpec {
            name: spec.name,
            description: spec.description,
            args_schema: spec.args_schema,
            timeout: None,
            max_attempts: None,
        }
    }

    fn run<'a>(
        &'a self,
        ctx: JobContext<'a, '_>,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobFailure>> {
        Box::pin(async move {
            let nth = match self.executions.started.lock() {
                Ok(mut started) => {
                    let n = started.entry(ctx.job.job_id).or_default();
                    *n += 1;
                    *n
                }
                Err(_) => 0,
            };
            ctx.tx
                .execute(
                    "INSERT INTO public.sluice_test_effects (job_id) VALUES ($1)",
                    &[&ctx.job.job_id],
                )
                .await?;
            if self.panic_first && nth == 1 {
                panic!(
                    "a handler bug (test): first execution of {}",
                    ctx.job.job_id
                );
            }
            let sleep = self
                .builtin
                .get(sluice_proto::kind::SLEEP)
                .ok_or_else(|| JobFailure::Transient("no built-in sleep handler".into()))?;
            sleep.run(ctx).await
        })
    }
}

//! Job handlers: one per kind, behind a trait so new kinds plug in.
//!
//! A handler does the job's database work inside the transaction it is
//! given; the runner then records the outcome and its event in that same
//! transaction and commits. A handler never commits.

mod batch_upsert;
mod sleep;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::RunnerConfig;
use futures_util::future::BoxFuture;
use sluice_proto::{KindName, KindSpec, OwnedJobEnvelope};

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
    /// Cancelled when the user cancels the job (or its time limit or a
    /// shutdown ends it). The runner then drops the handler's future and
    /// cancels its query on the server anyway; a handler doing work
    /// between queries can look here to stop at a clean point.
    pub cancel: &'a tokio_util::sync::CancellationToken,
}

impl JobContext<'_, '_> {
    /// Sends the user's sessions a `progress` event (`done` of `total`);
    /// advisory, so a failure to send is only logged.
    pub async fn progress(&self, done: u64, total: u64) {
        self.events
            .progress(&self.job.user, self.job.job_id, done, total)
            .await;
    }

    /// Whether the job was cancelled (see [`JobContext::cancel`]).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// A kind written as a Rust type: its name, description and args type
/// (whose JSON Schema is derived with `schemars`) are the type's, and
/// `run` gets the args already decoded. Register it with
/// [`Handlers::job`] or `JobRunner::builder(config).job(...)`.
pub trait Job: Send + Sync + 'static {
    /// The args, decoded from the submission (validated against their
    /// schema by the gateway first).
    type Args: serde::de::DeserializeOwned + schemars::JsonSchema + Send;
    /// The kind's name, `[a-z][a-z0-9_]{0,63}`.
    const NAME: &'static str;
    /// What the kind does, for `GET /v1/kinds`.
    const DESCRIPTION: &'static str;
    /// The kind's own time limit (`runner.kind_timeouts_ms` overrides it).
    fn timeout(&self) -> Option<Duration> {
        None
    }
    /// Does the work in `ctx.tx`; the returned value becomes the result.
    fn run<'a>(
        &'a self,
        args: Self::Args,
        ctx: JobContext<'a, '_>,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobFailure>>;
}

/// A [`Job`] as a [`Handler`], with its name checked once, when registered.
struct Typed<J> {
    name: KindName,
    job: J,
}

impl<J: Job> Handler for Typed<J> {
    fn spec(&self) -> HandlerSpec {
        HandlerSpec {
            name: self.name.clone(),
            description: J::DESCRIPTION.to_owned(),
            args_schema: schema_of::<J::Args>(),
            timeout: self.job.timeout(),
            max_attempts: None,
        }
    }

    fn run<'a>(
        &'a self,
        ctx: JobContext<'a, '_>,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobFailure>> {
        match serde_json::from_str::<J::Args>(ctx.job.args.get()) {
            Ok(args) => self.job.run(args, ctx),
            Err(e) => Box::pin(async move {
                Err(JobFailure::bad_args(format!(
                    "args do not fit {}: {e}",
                    J::NAME
                )))
            }),
        }
    }
}

/// Why a handler could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a kind name: {1}")]
pub struct BadKindName(pub String, pub sluice_proto::kind::KindNameError);

/// What a handler says of its kind: the runner announces it (with the
/// time limit it settles on) to the gateways, which validate submissions
/// against `args_schema` and list it at `GET /v1/kinds`.
#[derive(Debug, Clone)]
pub struct HandlerSpec {
    /// The kind's name.
    pub name: KindName,
    /// What the kind does, for people choosing one.
    pub description: String,
    /// A JSON Schema (draft 2020-12) of the args; [`schema_of`] derives one.
    pub args_schema: serde_json::Value,
    /// The kind's own time limit; `runner.kind_timeouts_ms` overrides it,
    /// `runner.default_timeout_ms` stands in when neither is set.
    pub timeout: Option<Duration>,
    /// Deliveries before a job of this kind fails for good; else
    /// `runner.max_attempts`.
    pub max_attempts: Option<u32>,
}

/// A built-in kind's name (a constant that fits the pattern).
fn builtin_name(name: &'static str) -> KindName {
    KindName::parse(name).expect("built-in kind names fit the pattern")
}

/// The JSON Schema of `T`, as a handler's `args_schema`.
pub fn schema_of<T: schemars::JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(serde_json::Value::Bool(true))
}

/// Runs one kind of job.
pub trait Handler: Send + Sync {
    /// The kind this handler runs, and what the gateways check of its args.
    fn spec(&self) -> HandlerSpec;
    /// Does the work; the returned value becomes the job's `result`.
    fn run<'a>(
        &'a self,
        ctx: JobContext<'a, '_>,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobFailure>>;
}

struct Registered {
    spec: HandlerSpec,
    handler: Box<dyn Handler>,
}

/// The handlers of every kind this runner serves.
pub struct Handlers {
    by_kind: BTreeMap<KindName, Registered>,
}

impl Handlers {
    /// The built-in handlers (`batch_upsert`, `sleep`).
    pub fn builtin() -> Self {
        let mut handlers = Self {
            by_kind: BTreeMap::new(),
        };
        handlers.register(Box::new(batch_upsert::BatchUpsert));
        handlers.register(Box::new(sleep::Sleep));
        handlers
    }

    /// Adds (or replaces) the [`Job`] of its kind.
    pub fn job<J: Job>(&mut self, job: J) -> Result<(), BadKindName> {
        let name = KindName::parse(J::NAME).map_err(|e| BadKindName(J::NAME.to_owned(), e))?;
        self.register(Box::new(Typed { name, job }));
        Ok(())
    }

    /// Adds (or replaces) the handler of its kind.
    pub fn register(&mut self, handler: Box<dyn Handler>) {
        let spec = handler.spec();
        self.by_kind
            .insert(spec.name.clone(), Registered { spec, handler });
    }

    /// The handler for `kind`, if registered.
    pub fn get(&self, kind: &str) -> Option<&dyn Handler> {
        self.by_kind.get(kind).map(|r| r.handler.as_ref())
    }

    /// Whether a handler runs `kind`.
    pub fn serves(&self, kind: &str) -> bool {
        self.by_kind.contains_key(kind)
    }

    /// The time limit of one attempt of `kind` under `settings`.
    pub fn timeout(&self, kind: &str, settings: &RunnerConfig) -> Duration {
        let own = self.by_kind.get(kind).and_then(|r| r.spec.timeout);
        settings.timeout(kind, own)
    }

    /// Deliveries before a job of `kind` fails for good.
    pub fn max_attempts(&self, kind: &str, settings: &RunnerConfig) -> u32 {
        self.by_kind
            .get(kind)
            .and_then(|r| r.spec.max_attempts)
            .unwrap_or(settings.max_attempts)
    }

    /// What this runner announces: every kind, with its settled time limit.
    pub fn specs(&self, settings: &RunnerConfig) -> Vec<KindSpec> {
        self.by_kind
            .values()
            .map(|r| KindSpec {
                name: r.spec.name.clone(),
                description: r.spec.description.clone(),
                args_schema: r.spec.args_schema.clone(),
                timeout_ms: u64::try_from(self.timeout(r.spec.name.as_str(), settings).as_millis())
                    .unwrap_or(u64::MAX),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_specs_carry_schemas_and_settled_time_limits() {
        let mut settings = RunnerConfig::default();
        settings.kind_timeouts_ms.insert("sleep".into(), 60_000);
        let specs = Handlers::builtin().specs(&settings);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["batch_upsert", "sleep"]);
        assert_eq!(specs[0].timeout_ms, settings.default_timeout_ms);
        assert_eq!(specs[1].timeout_ms, 60_000);
        let sleep = &specs[1].args_schema;
        assert_eq!(sleep["properties"]["ms"]["maximum"], 86_400_000);
        assert_eq!(sleep["required"], serde_json::json!(["ms"]));
        assert!(!specs[0].description.is_empty());
    }
}

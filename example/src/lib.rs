//! An application's own kind, as a deployment would write it: `relabel_items`
//! sets the `value` of a range of the demo table's rows, a thousand ids at a
//! time in the job's one transaction, reporting progress after each chunk
//! and stopping at a clean point when the user cancels.
//!
//! Register it with [`runner`] (or `Handlers::job`), and the gateways list
//! it at `GET /v1/kinds` with the JSON Schema derived from [`RelabelArgs`].

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_jobs::config::Config;
use sluice_jobs::error::JobFailure;
use sluice_jobs::handlers::{BadKindName, Job, JobContext};
use sluice_jobs::{JobRunner, RunnerBuilder};

/// Ids relabelled per statement.
pub const CHUNK_IDS: i64 = 1_000;

/// The args of `relabel_items`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelabelArgs {
    /// First id of the range.
    pub from: i64,
    /// Last id of the range (inclusive).
    #[schemars(range(min = 0))]
    pub to: i64,
    /// The new `value`.
    #[schemars(length(min = 1, max = 200))]
    pub label: String,
}

/// Relabels a range of `public.items`.
pub struct RelabelItems;

impl Job for RelabelItems {
    type Args = RelabelArgs;
    const NAME: &'static str = "relabel_items";
    const DESCRIPTION: &'static str = "Sets `value` of the items with ids from..=to to `label`, a thousand at a time, with progress";

    fn timeout(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(120))
    }

    fn run<'a>(
        &'a self,
        args: RelabelArgs,
        ctx: JobContext<'a, '_>,
    ) -> BoxFuture<'a, Result<Value, JobFailure>> {
        Box::pin(async move {
            if args.to < args.from {
                return Err(JobFailure::bad_args("`to` is below `from`"));
            }
            let span = args.to - args.from + 1;
            let chunks = u64::try_from((span + CHUNK_IDS - 1) / CHUNK_IDS).unwrap_or(u64::MAX);
            let statement = ctx
                .tx
                .prepare(
                    "UPDATE public.items SET value = $1, updated_at = now()
                     WHERE id BETWEEN $2 AND $3 AND value IS DISTINCT FROM $1",
                )
                .await?;
            let mut updated = 0;
            let mut start = args.from;
            let mut done = 0;
            while start <= args.to {
                if ctx.is_cancelled() {
                    // Stop at a clean point between chunks: the runner's
                    // race sees the cancel, rolls back and records
                    // `cancelled`.
                    return std::future::pending().await;
                }
                let end = start.saturating_add(CHUNK_IDS - 1).min(args.to);
                updated += ctx
                    .tx
                    .execute(&statement, &[&args.label, &start, &end])
                    .await?;
                done += 1;
                ctx.progress(done, chunks).await;
                start = match end.checked_add(1) {
                    Some(next) => next,
                    None => break,
                };
            }
            Ok(json!({ "updated": updated }))
        })
    }
}

/// Sluice's runner with this deployment's kinds beside the built-in ones.
pub fn runner(config: Config) -> Result<RunnerBuilder, BadKindName> {
    JobRunner::builder(config).job(RelabelItems)
}

//! `sleep`: holds one pooled connection in `pg_sleep`, the stand-in for a
//! slow query.

use futures_util::future::BoxFuture;
use serde_json::json;
use sluice_proto::job::SleepArgs;

use super::{Handler, HandlerSpec, JobContext};
use crate::error::JobFailure;

pub(super) struct Sleep;

impl Handler for Sleep {
    fn spec(&self) -> HandlerSpec {
        HandlerSpec {
            name: super::builtin_name(sluice_proto::kind::SLEEP),
            description: "Holds one pooled connection in `pg_sleep` for `ms` milliseconds: the stand-in for a slow query.".into(),
            args_schema: super::schema_of::<SleepArgs>(),
            timeout: None,
            max_attempts: None,
        }
    }

    fn run<'a>(
        &'a self,
        ctx: JobContext<'a, '_>,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobFailure>> {
        Box::pin(async move {
            let args =
                SleepArgs::parse(&ctx.job.args).map_err(|e| JobFailure::bad_args(e.to_string()))?;
            let seconds = args.ms as f64 / 1000.0;
            ctx.tx.execute("SELECT pg_sleep($1)", &[&seconds]).await?;
            Ok(json!({ "slept_ms": args.ms }))
        })
    }
}

//! `sleep`: holds one pooled connection in `pg_sleep`, the stand-in for a
//! slow query.

use futures_util::future::BoxFuture;
use serde_json::json;
use sluice_proto::JobKind;
use sluice_proto::job::SleepArgs;

use super::{Handler, JobContext};
use crate::error::JobFailure;

pub(super) struct Sleep;

impl Handler for Sleep {
    fn kind(&self) -> JobKind {
        JobKind::Sleep
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

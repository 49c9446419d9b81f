//! Running a declared kind: its statements prepared once at the runner's
//! start (so a bad declaration stops the runner with the database's own
//! complaint), then executed with the job's args as one bound jsonb.

use deadpool_postgres::Pool;
use futures_util::future::BoxFuture;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tokio_postgres::types::{Json, Type};

use super::{Declared, MAX_RESULT_BYTES, USER_PARAM};
use crate::error::JobFailure;
use crate::handlers::{Handler, HandlerSpec, JobContext};

/// Why the declared kinds could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The database refused a statement.
    #[error("kinds.{kind}: statement {statement}: {message}")]
    Statement {
        /// The kind.
        kind: String,
        /// Which statement, from 1.
        statement: usize,
        /// The database's complaint.
        message: String,
    },
    /// No connection to prepare on.
    #[error("preparing the declared kinds: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// A declared kind, prepared: a [`Handler`] like any other.
pub struct SqlKind {
    declared: Declared,
    /// The last statement, wrapped to return its rows as JSON, when it
    /// returns rows at all.
    rows_query: Option<String>,
}

/// Prepares every statement of every declared kind (against the database
/// the jobs will run on) and checks its parameter types.
pub async fn prepare(pool: &Pool, declared: Vec<Declared>) -> Result<Vec<SqlKind>, PrepareError> {
    if declared.is_empty() {
        return Ok(Vec::new());
    }
    let client = pool.get().await?;
    let mut kinds = Vec::with_capacity(declared.len());
    for d in declared {
        let refuse = |statement: usize, e: tokio_postgres::Error| PrepareError::Statement {
            kind: d.name.to_string(),
            statement,
            message: e
                .as_db_error()
                .map(|db| db.message().to_owned())
                .unwrap_or_else(|| e.to_string()),
        };
        let mut rows_query = None;
        let last = d.statements.len();
        for (i, sql) in d.statements.iter().enumerate() {
            let statement = client
                .prepare_typed(sql, &[Type::JSONB])
                .await
                .map_err(|e| refuse(i + 1, e))?;
            if i + 1 == last && !statement.columns().is_empty() {
                let wrapped = format!(
                    "WITH sluice_result AS ({sql}) SELECT to_jsonb(sluice_result)::text FROM sluice_result LIMIT {}",
                    d.config.result_rows + 1
                );
                client
                    .prepare_typed(&wrapped, &[Type::JSONB])
                    .await
                    .map_err(|e| refuse(i + 1, e))?;
                rows_query = Some(wrapped);
            }
        }
        kinds.push(SqlKind {
            declared: d,
            rows_query,
        });
    }
    Ok(kinds)
}

/// What the last statement gave, summed over chunks.
#[derive(Default)]
struct Outcome {
    affected: u64,
    rows: Vec<Box<RawValue>>,
    bytes: usize,
    truncated: bool,
}

impl SqlKind {
    async fn run_once(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        args: &Value,
        outcome: &mut Outcome,
    ) -> Result<(), JobFailure> {
        let bound = Json(args);
        let param: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 1] =
            [(&bound, Type::JSONB)];
        let statements = &self.declared.statements;
        for (i, sql) in statements.iter().enumerate() {
            let last = i + 1 == statements.len();
            match (&self.rows_query, last) {
                (Some(query), true) => {
                    for row in tx.query_typed(query, &param).await? {
                        let text: String = row.get(0);
                        if outcome.rows.len() >= self.declared.config.result_rows
                            || outcome.bytes + text.len() > MAX_RESULT_BYTES
                        {
                            outcome.truncated = true;
                            break;
                        }
                        outcome.bytes += text.len() + 1;
                        let raw = RawValue::from_string(text).map_err(|e| {
                            JobFailure::Transient(format!("a result row is not JSON: {e}"))
                        })?;
                        outcome.rows.push(raw);
                    }
                }
                (_, true) => outcome.affected += tx.execute_typed(sql, &param).await?,
                (_, false) => {
                    tx.execute_typed(sql, &param).await?;
                }
            }
        }
        Ok(())
    }
}

impl Handler for SqlKind {
    fn spec(&self) -> HandlerSpec {
        HandlerSpec {
            name: self.declared.name.clone(),
            description: self.declared.config.description.clone(),
            args_schema: self.declared.args_schema(),
            timeout: self
                .declared
                .config
                .timeout_ms
                .map(std::time::Duration::from_millis),
            max_attempts: self.declared.config.max_attempts,
        }
    }

    fn run<'a>(&'a self, ctx: JobContext<'a, '_>) -> BoxFuture<'a, Result<Value, JobFailure>> {
        Box::pin(async move {
            let mut args: Map<String, Value> = serde_json::from_str(ctx.job.args.get())
                .map_err(|e| JobFailure::bad_args(format!("args must be an object: {e}")))?;
            args.insert(USER_PARAM.into(), ctx.job.user.clone().into());
            let mut outcome = Outcome::default();
            match &self.declared.config.chunk {
                None => {
                    self.run_once(ctx.tx, &Value::Object(args), &mut outcome)
                        .await?
                }
                Some(chunk) => {
                    let items = match args.remove(&chunk.param) {
                        Some(Value::Array(items)) => items,
                        None | Some(Value::Null) => Vec::new(),
                        Some(_) => {
                            return Err(JobFailure::bad_args(format!(
                                "`{}` must be an array",
                                chunk.param
                            )));
                        }
                    };
                    let total = items.len().div_ceil(chunk.size).max(1) as u64;
                    let mut done = 0;
                    for part in items.chunks(chunk.size.max(1)) {
                        args.insert(chunk.param.clone(), Value::Array(part.to_vec()));
                        self.run_once(ctx.tx, &Value::Object(args.clone()), &mut outcome)
                            .await?;
                        done += 1;
                        ctx.events
                            .progress(&ctx.job.user, ctx.job.job_id, done, total)
                            .await;
                    }
                    if items.is_empty() {
                        args.insert(chunk.param.clone(), Value::Array(Vec::new()));
                        self.run_once(ctx.tx, &Value::Object(args), &mut outcome)
                            .await?;
                    }
                }
            }
            Ok(if self.rows_query.is_some() {
                json!({ "rows": outcome.rows, "truncated": outcome.truncated })
            } else {
                json!({ "affected": outcome.affected })
            })
        })
    }
}

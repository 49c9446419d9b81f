//! `batch_upsert`: all rows into an allow-listed table, in one transaction,
//! as `UNNEST` array bind parameters, chunk by chunk.

use futures_util::future::BoxFuture;
use serde_json::json;
use sluice_proto::job::BatchUpsertHead;
use tokio_postgres::types::ToSql;

use super::{Handler, HandlerSpec, JobContext};
use crate::catalog::{self, Table, quote_ident};
use crate::error::JobFailure;
use crate::rows::{self, Columns};

pub(super) struct BatchUpsert;

impl Handler for BatchUpsert {
    fn spec(&self) -> HandlerSpec {
        HandlerSpec {
            name: super::builtin_name(sluice_proto::kind::BATCH_UPSERT),
            description: "Upserts `rows` into an allow-listed `table` on the conflict columns `key`, all in one transaction.".into(),
            args_schema: super::schema_of::<sluice_proto::BatchUpsertArgs>(),
            timeout: None,
            max_attempts: None,
        }
    }

    fn run<'a>(
        &'a self,
        ctx: JobContext<'a, '_>,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobFailure>> {
        Box::pin(async move {
            let head = BatchUpsertHead::parse(&ctx.job.args)
                .map_err(|e| JobFailure::bad_args(e.to_string()))?;
            let table = catalog::table(ctx.tx, &ctx.settings.tables, &head.table).await?;
            let columns = rows::decode(head.rows.get(), &table).map_err(JobFailure::bad_args)?;
            let sql = upsert_sql(&table, &columns, &head.key)?;
            let statement = ctx.tx.prepare(&sql).await?;
            let total = columns.len;
            let chunk = ctx.settings.chunk_rows;
            let mut start = 0;
            while start < total {
                let end = (start + chunk).min(total);
                let slices: Vec<&[Option<String>]> =
                    columns.values.iter().map(|c| &c[start..end]).collect();
                let params: Vec<&(dyn ToSql + Sync)> =
                    slices.iter().map(|s| s as &(dyn ToSql + Sync)).collect();
                ctx.tx.execute(&statement, &params).await?;
                start = end;
                if total > chunk {
                    ctx.events
                        .progress(&ctx.job.user, ctx.job.job_id, start as u64, total as u64)
                        .await;
                }
            }
            Ok(json!({ "rows": total }))
        })
    }
}

/// `INSERT ... SELECT * FROM UNNEST($1::text[]::<t1>[], ...) ON CONFLICT (key)
/// DO UPDATE SET <other columns>`. Identifiers come from the catalog.
fn upsert_sql(table: &Table, columns: &Columns, key: &[String]) -> Result<String, JobFailure> {
    for k in key {
        if !columns.names.contains(k) {
            return Err(JobFailure::bad_args(format!(
                "key column `{k}` is not present in the rows"
            )));
        }
    }
    let mut casts = Vec::with_capacity(columns.names.len());
    for (i, name) in columns.names.iter().enumerate() {
        // decode() only admits catalog columns, so this lookup succeeds.
        let column = table
            .column(name)
            .ok_or_else(|| JobFailure::bad_args(format!("unknown column `{name}`")))?;
        casts.push(format!("${}::text[]::{}[]", i + 1, column.sql_type));
    }
    let names: Vec<String> = columns.names.iter().map(|n| quote_ident(n)).collect();
    let keys: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
    let mut updates: Vec<String> = columns
        .names
        .iter()
        .filter(|n| !key.contains(n))
        .map(|n| format!("{0} = EXCLUDED.{0}", quote_ident(n)))
        .collect();
    let touches_updated_at =
        table.column("updated_at").is_some() && !columns.names.iter().any(|n| n == "updated_at");
    if touches_updated_at {
        updates.push("\"updated_at\" = now()".into());
    }
    let conflict = if updates.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    Ok(format!(
        "INSERT INTO public.{} ({}) SELECT * FROM UNNEST({}) ON CONFLICT ({}) {}",
        quote_ident(&table.name),
        names.join(", "),
        casts.join(", "),
        keys.join(", "),
        conflict
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Column, ValueClass};

    #[test]
    fn sql_binds_every_value_and_refreshes_updated_at() {
        let table = Table {
            name: "items".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    sql_type: "bigint".into(),
                    class: ValueClass::Number,
                },
                Column {
                    name: "value".into(),
                    sql_type: "text".into(),
                    class: ValueClass::Text,
                },
                Column {
                    name: "updated_at".into(),
                    sql_type: "timestamp with time zone".into(),
                    class: ValueClass::Parsed,
                },
            ],
        };
        let columns =
            rows::decode(r#"[{"id":1,"value":"x'); DROP TABLE items;--"}]"#, &table).unwrap();
        let sql = upsert_sql(&table, &columns, &["id".into()]).unwrap();
        assert_eq!(
            sql,
            "INSERT INTO public.\"items\" (\"id\", \"value\") SELECT * FROM UNNEST($1::text[]::bigint[], $2::text[]::text[]) \
             ON CONFLICT (\"id\") DO UPDATE SET \"value\" = EXCLUDED.\"value\", \"updated_at\" = now()"
        );
        assert!(upsert_sql(&table, &columns, &["nope".into()]).is_err());
    }
}

//! The allow-list and the database catalog: which tables `batch_upsert` may
//! touch and what type each column has.

use tokio_postgres::GenericClient;

use crate::error::JobFailure;

/// How a JSON value must look to go into a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueClass {
    /// Numeric types: a JSON number.
    Number,
    /// Text types: a JSON string.
    Text,
    /// boolean: a JSON bool.
    Bool,
    /// json / jsonb: any JSON, stored as given.
    Json,
    /// Everything else (timestamps, uuid, dates...): a JSON string that
    /// PostgreSQL parses.
    Parsed,
}

/// One column of an allow-listed table.
#[derive(Debug, Clone)]
pub struct Column {
    /// Its name in the catalog.
    pub name: String,
    /// `format_type` spelling, used in the array cast.
    pub sql_type: String,
    /// How values for it are bound.
    pub class: ValueClass,
}

/// An allow-listed table as the catalog describes it.
#[derive(Debug, Clone)]
pub struct Table {
    /// The table name (schema `public`).
    pub name: String,
    /// Its columns, in catalog order.
    pub columns: Vec<Column>,
}

impl Table {
    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Checks `name` against the allow-list and reads its columns (schema `public`).
pub async fn table<C: GenericClient>(
    client: &C,
    allowed: &[String],
    name: &str,
) -> Result<Table, JobFailure> {
    if !allowed.iter().any(|t| t == name) {
        return Err(JobFailure::bad_args(format!(
            "table `{name}` is not allow-listed"
        )));
    }
    // Typed: one round trip, no separate prepare.
    let rows = client
        .query_typed(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typcategory::text, t.typname::text
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_type t ON t.oid = a.atttypid
             WHERE n.nspname = 'public' AND c.relname = $1 AND c.relkind = 'r'
               AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[(&name, tokio_postgres::types::Type::TEXT)],
        )
        .await?;
    if rows.is_empty() {
        return Err(JobFailure::bad_args(format!(
            "table `{name}` does not exist"
        )));
    }
    let columns = rows
        .into_iter()
        .map(|r| {
            let category: String = r.get(2);
            let typname: String = r.get(3);
            Column {
                name: r.get(0),
                sql_type: r.get(1),
                class: class_of(&category, &typname),
            }
        })
        .collect();
    Ok(Table {
        name: name.to_owned(),
        columns,
    })
}

fn class_of(category: &str, typname: &str) -> ValueClass {
    match (category, typname) {
        (_, "json" | "jsonb") => ValueClass::Json,
        ("N", _) => ValueClass::Number,
        ("S", _) => ValueClass::Text,
        ("B", _) => ValueClass::Bool,
        _ => ValueClass::Parsed,
    }
}

/// Quotes an identifier for SQL text (doubling embedded quotes).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_quoting() {
        assert_eq!(class_of("N", "int8"), ValueClass::Number);
        assert_eq!(class_of("S", "text"), ValueClass::Text);
        assert_eq!(class_of("U", "jsonb"), ValueClass::Json);
        assert_eq!(class_of("D", "timestamptz"), ValueClass::Parsed);
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
    }
}

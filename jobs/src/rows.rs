//! Decoding `batch_upsert` rows straight into per-column text arrays.
//!
//! The rows arrive as raw JSON. One streaming pass checks every value
//! against its column's class and appends it, as text, to that column's
//! vector; the vectors become `UNNEST($n::text[]::<type>[])` bind
//! parameters. No JSON tree of the whole batch is ever built, and no value
//! is ever spliced into SQL text.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::catalog::{Table, ValueClass};

/// The decoded rows, column by column.
#[derive(Debug, Default)]
pub struct Columns {
    /// Column names, in the order of the first row.
    pub names: Vec<String>,
    /// One vector per column, each `len` long; `None` is SQL NULL.
    pub values: Vec<Vec<Option<String>>>,
    /// Number of rows.
    pub len: usize,
}

/// Decodes `rows` (a JSON array of objects) for `table`. Every row must
/// have exactly the columns of the first row.
pub fn decode(rows: &str, table: &Table) -> Result<Columns, String> {
    let mut columns = Columns::default();
    let mut de = serde_json::Deserializer::from_str(rows);
    RowsSeed {
        table,
        out: &mut columns,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    if columns.len == 0 {
        return Err("`rows` is empty".into());
    }
    Ok(columns)
}

struct RowsSeed<'a> {
    table: &'a Table,
    out: &'a mut Columns,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of row objects")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(RowSeed {
                table: self.table,
                out: &mut *self.out,
            })?
            .is_some()
        {
            self.out.len += 1;
        }
        Ok(())
    }
}

struct RowSeed<'a> {
    table: &'a Table,
    out: &'a mut Columns,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let row = self.out.len;
        let first = row == 0;
        let mut seen = 0usize;
        while let Some(key) = map.next_key::<String>()? {
            let index = match self.out.names.iter().position(|n| *n == key) {
                Some(i) => i,
                None if first => {
                    if self.table.column(&key).is_none() {
                        return Err(de::Error::custom(format!(
                            "column `{key}` does not exist in table `{}`",
                            self.table.name
                        )));
                    }
                    self.out.names.push(key.clone());
                    self.out.values.push(Vec::new());
                    self.out.names.len() - 1
                }
                None => {
                    return Err(de::Error::custom(format!(
                        "row {row} has column `{key}` that the first row does not"
                    )));
                }
            };
            let column = &mut self.out.values[index];
            if column.len() != row {
                return Err(de::Error::custom(format!(
                    "row {row} repeats column `{key}`"
                )));
            }
            let value: Value = map.next_value()?;
            // The name was checked against the catalog when first seen.
            let class = self
                .table
                .column(&key)
                .map(|c| c.class)
                .unwrap_or(ValueClass::Parsed);
            let text = to_text(value, class).map_err(|expected| {
                de::Error::custom(format!("row {row}, column `{key}`: expected {expected}"))
            })?;
            column.push(text);
            seen += 1;
        }
        if seen != self.out.names.len() {
            return Err(de::Error::custom(format!(
                "row {row} has {seen} columns, the first row has {}",
                self.out.names.len()
            )));
        }
        Ok(())
    }
}

/// The text form PostgreSQL parses for `value`, or what was expected.
fn to_text(value: Value, class: ValueClass) -> Result<Option<String>, &'static str> {
    match (class, value) {
        (_, Value::Null) => Ok(None),
        (ValueClass::Json, v) => Ok(Some(v.to_string())),
        (ValueClass::Number, Value::Number(n)) => Ok(Some(n.to_string())),
        (ValueClass::Number, _) => Err("a number"),
        (ValueClass::Bool, Value::Bool(b)) => Ok(Some(b.to_string())),
        (ValueClass::Bool, _) => Err("a boolean"),
        (ValueClass::Text | ValueClass::Parsed, Value::String(s)) => Ok(Some(s)),
        (ValueClass::Text, _) => Err("a string"),
        (ValueClass::Parsed, _) => Err("a string in the column type's text format"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Column;

    fn items() -> Table {
        let col = |name: &str, sql_type: &str, class| Column {
            name: name.into(),
            sql_type: sql_type.into(),
            class,
        };
        Table {
            name: "items".into(),
            columns: vec![
                col("id", "bigint", ValueClass::Number),
                col("value", "text", ValueClass::Text),
                col("updated_at", "timestamp with time zone", ValueClass::Parsed),
            ],
        }
    }

    #[test]
    fn decodes_columnwise_in_first_row_order() {
        let cols = decode(
            r#"[{"value":"a","id":1},{"id":2,"value":null},{"id":3,"value":"c"}]"#,
            &items(),
        )
        .unwrap();
        assert_eq!(cols.names, ["value", "id"]);
        assert_eq!(cols.len, 3);
        assert_eq!(
            cols.values[1],
            [Some("1".into()), Some("2".into()), Some("3".into())]
        );
        assert_eq!(cols.values[0], [Some("a".into()), None, Some("c".into())]);
    }

    #[test]
    fn refuses_bad_rows_with_a_reason() {
        let cases = [
            (r#"[{"id":"x","value":"a"}]"#, "expected a number"),
            (r#"[{"id":1,"value":5}]"#, "expected a string"),
            (r#"[{"id":1,"nope":"a"}]"#, "does not exist"),
            (r#"[{"id":1,"value":"a"},{"id":2}]"#, "has 1 columns"),
            (r#"[{"id":1},{"id":2,"value":"a"}]"#, "first row does not"),
            (r#"[{"id":1,"id":2}]"#, "repeats column"),
            (r#"[]"#, "empty"),
            (r#"[1]"#, "row object"),
            (r#"{"id":1}"#, "array"),
        ];
        for (rows, needle) in cases {
            let err = decode(rows, &items()).unwrap_err();
            assert!(err.contains(needle), "{rows}: {err}");
        }
    }
}

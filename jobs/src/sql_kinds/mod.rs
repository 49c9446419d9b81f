//! Kinds declared as SQL in the configuration file (`[kinds.<name>]`), so
//! a team moves its batch update out of the request path without writing
//! Rust: typed named parameters, statements run in order in the job's
//! transaction, the result the last statement's rows or its row count.
//!
//! ```toml
//! [kinds.archive_orders]
//! description = "Archives a customer's delivered orders"
//! statements = [
//!   "UPDATE public.orders SET archived = true WHERE customer_id = :customer_id AND owner = :user_id AND status = 'delivered'",
//! ]
//! timeout_ms = 60000
//! [kinds.archive_orders.params]
//! customer_id = { type = "int8" }
//! ```

mod handler;
pub mod placeholders;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_proto::KindName;

pub use handler::{PrepareError, SqlKind, prepare};

/// The parameter every statement may use besides the declared ones: the
/// submitting user's id (`text`).
pub const USER_PARAM: &str = "user_id";

/// Most rows a result holds; more are cut and `truncated` is set.
pub const MAX_RESULT_ROWS: usize = 10_000;

/// Most bytes of JSON a result holds; past it rows are cut and
/// `truncated` is set. The result travels in the `done` event, so it stays
/// well below `gateway.outbound_queue_bytes`.
pub const MAX_RESULT_BYTES: usize = 64 * 1024;

/// One declared kind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqlKindConfig {
    /// What the kind does, shown by `GET /v1/kinds`.
    pub description: String,
    /// The named parameters: the job's args, validated against the JSON
    /// Schema derived from these types.
    #[serde(default)]
    pub params: BTreeMap<String, ParamConfig>,
    /// Run in order in the job's one transaction.
    pub statements: Vec<String>,
    /// The time limit of one attempt (else `runner.kind_timeouts_ms`, else
    /// `runner.default_timeout_ms`).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Deliveries before the job fails for good (else `runner.max_attempts`).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Run the statements once per chunk of an array parameter, with a
    /// `progress` event after each chunk, all in the one transaction.
    #[serde(default)]
    pub chunk: Option<ChunkConfig>,
    /// Most rows of the last statement kept in the result (default 100).
    #[serde(default = "default_result_rows")]
    pub result_rows: usize,
}

fn default_result_rows() -> usize {
    100
}

/// One named parameter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParamConfig {
    /// Its PostgreSQL type.
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// May the args leave it out (it is then SQL `NULL`, or `{}` for an
    /// array)?
    #[serde(default)]
    pub optional: bool,
    /// Shown in the kind's schema.
    #[serde(default)]
    pub description: String,
}

/// Chunking over an array parameter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChunkConfig {
    /// The array parameter to split.
    pub param: String,
    /// Elements per chunk.
    pub size: usize,
}

/// The parameter types a declared kind may use.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ParamType {
    /// `text`
    #[serde(rename = "text")]
    Text,
    /// `int4`
    #[serde(rename = "int4")]
    Int4,
    /// `int8`
    #[serde(rename = "int8")]
    Int8,
    /// `float8`
    #[serde(rename = "float8")]
    Float8,
    /// `numeric`
    #[serde(rename = "numeric")]
    Numeric,
    /// `bool`
    #[serde(rename = "bool")]
    Bool,
    /// `uuid`
    #[serde(rename = "uuid")]
    Uuid,
    /// `date`
    #[serde(rename = "date")]
    Date,
    /// `timestamptz`
    #[serde(rename = "timestamptz")]
    Timestamptz,
    /// `jsonb`: any JSON value.
    #[serde(rename = "jsonb")]
    Jsonb,
    /// `text[]`
    #[serde(rename = "text[]")]
    TextArray,
    /// `int4[]`
    #[serde(rename = "int4[]")]
    Int4Array,
    /// `int8[]`
    #[serde(rename = "int8[]")]
    Int8Array,
    /// `float8[]`
    #[serde(rename = "float8[]")]
    Float8Array,
    /// `numeric[]`
    #[serde(rename = "numeric[]")]
    NumericArray,
    /// `bool[]`
    #[serde(rename = "bool[]")]
    BoolArray,
    /// `uuid[]`
    #[serde(rename = "uuid[]")]
    UuidArray,
}

impl ParamType {
    /// The SQL type name.
    pub fn sql(self) -> &'static str {
        match self {
            ParamType::Text => "text",
            ParamType::Int4 => "int4",
            ParamType::Int8 => "int8",
            ParamType::Float8 => "float8",
            ParamType::Numeric => "numeric",
            ParamType::Bool => "bool",
            ParamType::Uuid => "uuid",
            ParamType::Date => "date",
            ParamType::Timestamptz => "timestamptz",
            ParamType::Jsonb => "jsonb",
            ParamType::TextArray => "text[]",
            ParamType::Int4Array => "int4[]",
            ParamType::Int8Array => "int8[]",
            ParamType::Float8Array => "float8[]",
            ParamType::NumericArray => "numeric[]",
            ParamType::BoolArray => "bool[]",
            ParamType::UuidArray => "uuid[]",
        }
    }

    /// The element type of an array type.
    pub fn element(self) -> Option<ParamType> {
        Some(match self {
            ParamType::TextArray => ParamType::Text,
            ParamType::Int4Array => ParamType::Int4,
            ParamType::Int8Array => ParamType::Int8,
            ParamType::Float8Array => ParamType::Float8,
            ParamType::NumericArray => ParamType::Numeric,
            ParamType::BoolArray => ParamType::Bool,
            ParamType::UuidArray => ParamType::Uuid,
            _ => return None,
        })
    }

    /// The JSON Schema of a value of this type.
    pub fn schema(self) -> Value {
        if let Some(element) = self.element() {
            return json!({ "type": "array", "items": element.schema() });
        }
        match self {
            ParamType::Int4 => {
                json!({ "type": "integer", "minimum": i32::MIN, "maximum": i32::MAX })
            }
            ParamType::Int8 => {
                json!({ "type": "integer", "minimum": i64::MIN, "maximum": i64::MAX })
            }
            ParamType::Float8 | ParamType::Numeric => json!({ "type": "number" }),
            ParamType::Bool => json!({ "type": "boolean" }),
            ParamType::Uuid => json!({ "type": "string", "format": "uuid" }),
            ParamType::Date => json!({ "type": "string", "format": "date" }),
            ParamType::Timestamptz => json!({ "type": "string", "format": "date-time" }),
            ParamType::Jsonb => json!({}),
            _ => json!({ "type": "string" }),
        }
    }

    /// The SQL that reads parameter `name` of this type from `$1`.
    fn read(self, name: &str) -> String {
        if self == ParamType::Jsonb {
            return format!("(($1::jsonb) -> '{name}')");
        }
        match self.element() {
            Some(_) => format!(
                "(ARRAY(SELECT jsonb_array_elements_text(coalesce(($1::jsonb) -> '{name}', '[]'))))::{}",
                self.sql()
            ),
            None => format!("((($1::jsonb) ->> '{name}')::{})", self.sql()),
        }
    }
}

/// Why a declaration is refused; the message names the kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kinds.{kind}: {reason}")]
pub struct DeclarationError {
    /// The kind.
    pub kind: String,
    /// What is wrong.
    pub reason: String,
}

/// A declaration checked and its statements rewritten: ready to prepare.
#[derive(Debug, Clone)]
pub struct Declared {
    /// The kind's name.
    pub name: KindName,
    /// As configured.
    pub config: SqlKindConfig,
    /// The statements with `:name` rewritten to reads of `$1`.
    pub statements: Vec<String>,
}

/// Checks one declaration (everything but what only the database can say).
pub fn declare(name: &str, config: &SqlKindConfig) -> Result<Declared, DeclarationError> {
    let refuse = |reason: String| DeclarationError {
        kind: name.to_owned(),
        reason,
    };
    let kind = KindName::parse(name).map_err(|e| refuse(e.to_string()))?;
    if [sluice_proto::kind::SLEEP, sluice_proto::kind::BATCH_UPSERT].contains(&name) {
        return Err(refuse("is a built-in kind".into()));
    }
    if config.statements.is_empty() {
        return Err(refuse("needs at least one statement".into()));
    }
    for param in config.params.keys() {
        if param == USER_PARAM {
            return Err(refuse(format!(
                "`{USER_PARAM}` is the submitting user's id, given to every statement; it cannot be declared"
            )));
        }
        if KindName::parse(param).is_err() {
            return Err(refuse(format!(
                "parameter `{param}`: a name is a lowercase letter then a-z, 0-9 and _"
            )));
        }
    }
    if let Some(ms) = config.timeout_ms
        && !(1..=crate::config::MAX_JOB_MS).contains(&ms)
    {
        return Err(refuse(format!(
            "timeout_ms must be 1 to {}",
            crate::config::MAX_JOB_MS
        )));
    }
    if let Some(n) = config.max_attempts
        && !(1..=100).contains(&n)
    {
        return Err(refuse("max_attempts must be 1 to 100".into()));
    }
    if !(1..=MAX_RESULT_ROWS).contains(&config.result_rows) {
        return Err(refuse(format!(
            "result_rows must be 1 to {MAX_RESULT_ROWS}"
        )));
    }
    if let Some(chunk) = &config.chunk {
        match config.params.get(&chunk.param) {
            Some(p) if p.ty.element().is_some() => {}
            _ => {
                return Err(refuse(format!(
                    "chunk.param `{}` must be a declared array parameter",
                    chunk.param
                )));
            }
        }
        if chunk.size == 0 {
            return Err(refuse("chunk.size must be at least 1".into()));
        }
    }
    let mut statements = Vec::with_capacity(config.statements.len());
    for (i, sql) in config.statements.iter().enumerate() {
        let rewritten = placeholders::rewrite(sql, |param| {
            if param == USER_PARAM {
                return Some(ParamType::Text.read(USER_PARAM));
            }
            config.params.get(param).map(|p| p.ty.read(param))
        })
        .map_err(|e| refuse(format!("statement {}: {e}", i + 1)))?;
        statements.push(rewritten);
    }
    Ok(Declared {
        name: kind,
        config: config.clone(),
        statements,
    })
}

impl Declared {
    /// The JSON Schema of the kind's args, from the declared types.
    pub fn args_schema(&self) -> Value {
        let mut properties = serde_json::Map::new();
        let mut required = Vec::new();
        for (name, param) in &self.config.params {
            let mut schema = param.ty.schema();
            if param.optional {
                schema = json!({ "anyOf": [schema, { "type": "null" }] });
            } else {
                required.push(name.clone());
            }
            if !param.description.is_empty()
                && let Some(object) = schema.as_object_mut()
            {
                object.insert("description".into(), param.description.clone().into());
            }
            properties.insert(name.clone(), schema);
        }
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> SqlKindConfig {
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(toml_text))
            .extract()
            .unwrap()
    }

    #[test]
    fn a_declaration_becomes_statements_reading_one_bound_parameter() {
        let c = config(
            r#"
            description = "d"
            statements = ["UPDATE public.t SET v = :v WHERE id = ANY(:ids) AND owner = :user_id"]
            [params]
            v = { type = "text", optional = true }
            ids = { type = "int8[]" }
            "#,
        );
        let d = declare("touch", &c).unwrap();
        let sql = &d.statements[0];
        assert!(sql.contains("((($1::jsonb) ->> 'v')::text)"), "{sql}");
        assert!(sql.contains("jsonb_array_elements_text"), "{sql}");
        assert!(sql.contains("->> 'user_id')::text"), "{sql}");
        let schema = d.args_schema();
        assert_eq!(schema["required"], json!(["ids"]));
        assert_eq!(schema["properties"]["ids"]["items"]["type"], "integer");
        assert_eq!(schema["additionalProperties"], false);
        jsonschema::validator_for(&schema).unwrap();
    }

    #[test]
    fn bad_declarations_name_the_kind_and_the_fault() {
        let base = config(
            r#"description = "d"
            statements = ["SELECT 1"]"#,
        );
        let refused = |name: &str, edit: &dyn Fn(&mut SqlKindConfig)| {
            let mut c = base.clone();
            edit(&mut c);
            declare(name, &c).unwrap_err().to_string()
        };
        assert!(refused("sleep", &|_| {}).contains("built-in"));
        assert!(refused("Bad Name", &|_| {}).starts_with("kinds.Bad Name"));
        assert!(refused("k", &|c| c.statements.clear()).contains("at least one"));
        assert!(
            refused("k", &|c| c.statements = vec!["SELECT :nope".into()])
                .contains("statement 1: unknown parameter :nope")
        );
        assert!(
            refused("k", &|c| {
                c.params.insert(
                    "user_id".into(),
                    ParamConfig {
                        ty: ParamType::Text,
                        optional: false,
                        description: String::new(),
                    },
                );
            })
            .contains("user_id")
        );
        assert!(
            refused("k", &|c| {
                c.chunk = Some(ChunkConfig {
                    param: "x".into(),
                    size: 10,
                });
            })
            .contains("chunk.param")
        );
        assert!(refused("k", &|c| c.result_rows = 0).contains("result_rows"));
        assert!(refused("k", &|c| c.max_attempts = Some(0)).contains("max_attempts"));
    }
}

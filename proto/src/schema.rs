//! The JSON Schema of the wire types, from which `proto/js` generates its
//! TypeScript types (`npm run gen` there). Test-only: `schemars` is a
//! dev-dependency and its derives exist only in test builds.
//!
//! `schema_is_up_to_date` fails when `proto/js/schema/protocol.schema.json`
//! no longer matches these types; `SLUICE_UPDATE_SCHEMA=1 cargo test -p
//! sluice-proto schema` rewrites it.

use schemars::JsonSchema;

use crate::job::SleepArgs;
use crate::{BatchUpsertArgs, ErrorCode, EventStatus, JobRequest, OutgoingFrame, ServerFrame};

/// The job kinds this version of Sluice runs (PROTOCOL.md section 2).
// Kinds are open on the wire (`KindName`); this names the built-in ones for
// the TypeScript client's types.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum JobKind {
    /// Upsert rows into an allow-listed table in one transaction.
    BatchUpsert,
    /// Hold one pooled connection in `pg_sleep`; the slow-query stand-in.
    Sleep,
}

/// Every type a client needs, as one root so each lands in `$defs`.
#[derive(JsonSchema)]
#[schemars(title = "SluiceProtocol")]
#[allow(dead_code)]
struct SluiceProtocol {
    client_frame: OutgoingFrame,
    server_frame: ServerFrame,
    job_request: JobRequest,
    batch_upsert_args: BatchUpsertArgs,
    sleep_args: SleepArgs,
    job_kind: JobKind,
    event_status: EventStatus,
    error_code: ErrorCode,
}

const SCHEMA_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/js/schema/protocol.schema.json"
);

fn generate() -> String {
    let schema = schemars::schema_for!(SluiceProtocol);
    let mut text = serde_json::to_string_pretty(&schema).expect("schema serializes");
    text.push('\n');
    text
}

#[test]
fn schema_is_up_to_date() {
    let fresh = generate();
    if std::env::var_os("SLUICE_UPDATE_SCHEMA").is_some() {
        std::fs::write(SCHEMA_PATH, &fresh).expect("writing the schema");
        return;
    }
    let committed = std::fs::read_to_string(SCHEMA_PATH).unwrap_or_default();
    assert!(
        committed == fresh,
        "{SCHEMA_PATH} is out of date with the proto types: run \
         `SLUICE_UPDATE_SCHEMA=1 cargo test -p sluice-proto schema` and then \
         `npm run gen` in proto/js"
    );
}

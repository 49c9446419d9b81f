//! PostgreSQL as Sluice uses it. Every SQL statement of the product lives
//! in this crate: the pool and its settings, the migrations into Sluice's
//! own schema, the job repository (the one place a job's status changes),
//! the event log with its per-user sequence, the messages backends publish, the kinds runners serve, the outbox of what was
//! committed but not yet published, and retention.
//!
//! Each change is made inside the caller's transaction together with the
//! event that reports it; publishing is the `sluice-outbox` crate's job.

pub mod config;
pub mod events;
pub mod grants;
pub mod job_keys;
pub mod jobs;
pub mod kinds;
pub mod lease;
pub mod listen;
pub mod migrate;
pub mod outbox;
pub mod pool;
pub mod publish;
pub mod retention;
pub mod status;
pub mod tls;

pub use config::DatabaseConfig;
pub use events::{NewEvent, StoredEvent};
pub use migrate::{ensure_current, migrate};
pub use pool::{StoreError, check, pool, pool_and_connector};
pub use status::JobStatus;

/// Sluice's own tables, which no job may write through the application's
/// allow-lists.
pub const OWN_TABLES: [&str; 8] = [
    "jobs",
    "job_keys",
    "runner_kinds",
    "events",
    "publications",
    "user_seq",
    "job_outbox",
    "refinery_schema_history",
];

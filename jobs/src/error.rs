//! What the runner does next with a failed job: the error classes.

use sluice_proto::{ErrorCode, JobError};

/// How a job attempt failed, by what happens next (STYLE: errors by what the
/// caller does next).
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum JobFailure {
    /// The job can never succeed as submitted (bad args, constraint
    /// violation): it fails now, its transaction rolled back.
    #[error("permanent: {}", .0.message)]
    Permanent(JobError),
    /// The world was in the way (connection lost, deadlock, serialization
    /// failure, shutdown): the job is handed back and tried again.
    #[error("transient: {0}")]
    Transient(String),
}

impl JobFailure {
    /// A permanent `bad_args` failure.
    pub fn bad_args(message: impl Into<String>) -> Self {
        JobFailure::Permanent(JobError {
            code: ErrorCode::BadArgs,
            message: message.into(),
        })
    }
}

impl From<tokio_postgres::Error> for JobFailure {
    fn from(e: tokio_postgres::Error) -> Self {
        classify(&e)
    }
}

impl From<deadpool_postgres::PoolError> for JobFailure {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        JobFailure::Transient(format!("database pool: {e}"))
    }
}

/// Sorts a database error by SQLSTATE class: data and integrity errors are
/// the submitter's (permanent, `bad_args`); everything else, including a
/// lost connection, is transient.
pub fn classify(e: &tokio_postgres::Error) -> JobFailure {
    let Some(db) = e.as_db_error() else {
        return JobFailure::Transient(format!("database connection: {e}"));
    };
    let code = db.code().code();
    if code == "57014" {
        // query_canceled: the server-side statement_timeout backstop, or an
        // operator's pg_cancel_backend. Either way the job is over its time.
        return JobFailure::Permanent(sluice_proto::JobError {
            code: sluice_proto::ErrorCode::Timeout,
            message: format!("query cancelled by the server: {}", db.message()),
        });
    }
    let permanent = code.starts_with("22") // data exception: bad value
        || code.starts_with("23") // integrity constraint violation
        || code == "21000" // cardinality: same key twice in one batch
        || code.starts_with("42"); // syntax / undefined column / no unique index for key
    if permanent {
        JobFailure::bad_args(format!("{} ({code})", db.message()))
    } else {
        JobFailure::Transient(format!("{} ({code})", db.message()))
    }
}

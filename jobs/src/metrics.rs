//! The runner's metric names (one place, so dashboards have one
//! reference) and their descriptions.

use metrics::{describe_counter, describe_gauge, describe_histogram};

/// Job attempts ended, by kind and outcome.
pub const JOBS_FINISHED: &str = "sluice_jobs_finished_total";
/// Job run time, by kind.
pub const JOB_DURATION_SECONDS: &str = "sluice_job_duration_seconds";
/// Jobs this runner holds.
pub const JOBS_IN_FLIGHT: &str = "sluice_jobs_in_flight";
/// Committed events and jobs waiting in the outbox for the relay.
pub const OUTBOX_BACKLOG: &str = "sluice_outbox_backlog";
/// Outbox rows the relay set aside: the broker refused them while it took
/// their neighbours. Anything above 0 wants an operator.
pub const OUTBOX_SET_ASIDE: &str = "sluice_outbox_set_aside";

/// Describes every runner metric to the installed recorder.
pub fn describe() {
    describe_counter!(JOBS_FINISHED, "job attempts ended, by kind and outcome");
    describe_histogram!(JOB_DURATION_SECONDS, "job run time, by kind");
    describe_gauge!(JOBS_IN_FLIGHT, "jobs this runner holds");
    describe_gauge!(
        OUTBOX_BACKLOG,
        "committed but unpublished rows the relay found, by kind (`event`, `job`)"
    );
    describe_gauge!(
        OUTBOX_SET_ASIDE,
        "outbox rows set aside after failing while the broker took others, by kind"
    );
}

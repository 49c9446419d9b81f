//! The gateway's metric names (one place, so dashboards have one
//! reference) and their descriptions.

use metrics::{describe_counter, describe_gauge, describe_histogram};

/// WebSocket sessions open on this gateway.
pub const SESSIONS_OPEN: &str = "sluice_sessions_open";
/// Sessions that completed hello.
pub const SESSIONS_OPENED: &str = "sluice_sessions_opened_total";
/// Sessions ended, by close code.
pub const SESSIONS_CLOSED: &str = "sluice_sessions_closed_total";
/// Text frames received from clients.
pub const FRAMES_IN: &str = "sluice_frames_in_total";
/// Text frames sent to clients.
pub const FRAMES_OUT: &str = "sluice_frames_out_total";
/// Sessions closed with 1013 because their event queue overflowed.
pub const SLOW_CLIENT_EVICTIONS: &str = "sluice_slow_client_evictions_total";
/// Jobs submitted (WebSocket and HTTP).
pub const JOBS_SUBMITTED: &str = "sluice_jobs_submitted_total";
/// Jobs durably queued.
pub const JOBS_ACCEPTED: &str = "sluice_jobs_accepted_total";
/// Submissions refused, by reason.
pub const JOBS_REJECTED: &str = "sluice_jobs_rejected_total";
/// From the runner's publish after commit to the socket write.
pub const EVENT_DELIVERY_SECONDS: &str = "sluice_event_delivery_seconds";

/// Describes every gateway metric to the installed recorder.
pub fn describe() {
    describe_gauge!(SESSIONS_OPEN, "WebSocket sessions open on this gateway");
    describe_counter!(SESSIONS_OPENED, "sessions that completed hello");
    describe_counter!(
        SESSIONS_CLOSED,
        "sessions ended, by close code (`gone`: the peer vanished)"
    );
    describe_counter!(FRAMES_IN, "text frames received from clients");
    describe_counter!(FRAMES_OUT, "text frames sent to clients");
    describe_counter!(
        SLOW_CLIENT_EVICTIONS,
        "sessions closed with 1013 because their event queue overflowed"
    );
    describe_counter!(JOBS_SUBMITTED, "jobs submitted (WebSocket and HTTP)");
    describe_counter!(JOBS_ACCEPTED, "jobs durably queued (broker confirm)");
    describe_counter!(JOBS_REJECTED, "submissions refused, by reason");
    describe_histogram!(
        EVENT_DELIVERY_SECONDS,
        "from the runner's publish after commit to the socket write"
    );
}

//! The decisions of one job attempt, apart from its I/O: what a claim
//! means, how the handler's work races cancellation, the time limit and
//! shutdown, and what each way of ending leads to. `consumer::run_job`
//! performs the database and broker steps these decide; the unit tests
//! below drive every transition with fakes and tokio's paused clock.

use std::future::Future;
use std::time::Duration;

use sluice_proto::{ErrorCode, JobError};
use sluice_store::jobs::{self as lifecycle, Claim, Outcome};
use tokio_util::sync::CancellationToken;

use crate::error::JobFailure;

/// What to do after the claim committed.
#[derive(Debug, PartialEq)]
pub(crate) enum AfterClaim {
    /// Acknowledge and skip, counted under this label: the job ended
    /// already (`skipped`), or it has no queued row (`withdrawn`).
    Skip(&'static str),
    /// Record this outcome without running the handler; with `Some`, it
    /// used up its attempts: (attempts, last error) for the dead letter.
    Record(Outcome, Option<(i32, Option<String>)>),
    /// Run the handler (attempt number).
    Run(i32),
    /// Another attempt holds the job's lease: run nothing, send the
    /// delivery to wait and look again.
    Defer,
}

/// Reads a claim. A job whose cancel was requested while its earlier
/// holder died is recorded as cancelled; one past its attempts fails with
/// `internal` and is dead-lettered.
pub(crate) fn after_claim(claim: &Claim) -> AfterClaim {
    match claim {
        Claim::Finished => AfterClaim::Skip("skipped"),
        Claim::NotQueued => AfterClaim::Skip("withdrawn"),
        Claim::Busy => AfterClaim::Defer,
        Claim::CancelRequested => AfterClaim::Record(Outcome::Cancelled, None),
        Claim::Exhausted {
            attempts,
            last_error,
        } => AfterClaim::Record(
            Outcome::Failed(lifecycle::exhausted_error(*attempts, last_error.as_deref())),
            Some((*attempts, last_error.clone())),
        ),
        Claim::Run { attempt, .. } => AfterClaim::Run(*attempt),
    }
}

/// Why the handler did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupted {
    /// A cancel request for this job.
    Cancelled,
    /// It ran past its limit.
    TimedOut(Duration),
    /// The runner is stopping: give the job to another runner.
    HandBack,
}

/// Runs `work` until it ends, or until it is cancelled, times out after
/// `limit`, or is handed back; whichever comes first wins, and the work's
/// future is dropped.
pub(crate) async fn race<T>(
    work: impl Future<Output = T>,
    cancel: &CancellationToken,
    limit: Duration,
    hand_back: &CancellationToken,
) -> Result<T, Interrupted> {
    tokio::select! {
        result = work => Ok(result),
        _ = cancel.cancelled() => Err(Interrupted::Cancelled),
        _ = tokio::time::sleep(limit) => Err(Interrupted::TimedOut(limit)),
        _ = hand_back.cancelled() => Err(Interrupted::HandBack),
    }
}

/// What a finished race leads to.
#[derive(Debug, PartialEq)]
pub(crate) enum Settle {
    /// Commit the result with the work's own transaction.
    CommitDone(serde_json::Value),
    /// Roll the work back (cancelling its query on the server first when it
    /// was interrupted) and record this outcome in a fresh transaction.
    RollBackAndRecord {
        /// The handler's future was dropped mid-query.
        cancel_query: bool,
        /// What to record.
        outcome: Outcome,
    },
    /// Roll back and hand the delivery back for a later attempt.
    Retry {
        /// The handler's future was dropped mid-query.
        cancel_query: bool,
        /// Why, for the job's last error.
        failure: JobFailure,
    },
}

/// Sorts how the work ended into its next step: a permanent failure is
/// recorded, a transient one retried, a cancel recorded as `cancelled`, a
/// time limit as `failed` with `timeout`, a hand-back retried elsewhere.
pub(crate) fn settle(raced: Result<Result<serde_json::Value, JobFailure>, Interrupted>) -> Settle {
    match raced {
        Ok(Ok(value)) => Settle::CommitDone(value),
        Ok(Err(JobFailure::Permanent(error))) => Settle::RollBackAndRecord {
            cancel_query: false,
            outcome: Outcome::Failed(error),
        },
        Ok(Err(transient)) => Settle::Retry {
            cancel_query: false,
            failure: transient,
        },
        Err(Interrupted::Cancelled) => Settle::RollBackAndRecord {
            cancel_query: true,
            outcome: Outcome::Cancelled,
        },
        Err(Interrupted::TimedOut(limit)) => Settle::RollBackAndRecord {
            cancel_query: true,
            outcome: Outcome::Failed(JobError {
                code: ErrorCode::Timeout,
                message: format!("job exceeded its time limit of {} ms", limit.as_millis()),
            }),
        },
        Err(Interrupted::HandBack) => Settle::Retry {
            cancel_query: true,
            failure: JobFailure::Transient("runner shutting down".into()),
        },
    }
}

/// The metric label of a recorded outcome.
pub(crate) fn label(outcome: &Outcome, exhausted: bool) -> &'static str {
    match outcome {
        _ if exhausted => "exhausted",
        Outcome::Done(_) => "done",
        Outcome::Cancelled => "cancelled",
        Outcome::Failed(e) if e.code == ErrorCode::Timeout => "timeout",
        Outcome::Failed(_) => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed_code(settled: &Settle) -> Option<ErrorCode> {
        match settled {
            Settle::RollBackAndRecord {
                outcome: Outcome::Failed(e),
                ..
            } => Some(e.code),
            _ => None,
        }
    }

    #[test]
    fn claims_decide_skip_record_or_run() {
        assert_eq!(after_claim(&Claim::Finished), AfterClaim::Skip("skipped"));
        assert_eq!(
            after_claim(&Claim::NotQueued),
            AfterClaim::Skip("withdrawn")
        );
        assert_eq!(after_claim(&Claim::Busy), AfterClaim::Defer);
        assert!(matches!(
            after_claim(&Claim::CancelRequested),
            AfterClaim::Record(Outcome::Cancelled, None)
        ));
        let exhausted = after_claim(&Claim::Exhausted {
            attempts: 5,
            last_error: Some("deadlock".into()),
        });
        match exhausted {
            AfterClaim::Record(Outcome::Failed(e), Some((5, Some(last)))) => {
                assert_eq!(e.code, ErrorCode::Internal);
                assert!(e.message.contains("5 attempts") && e.message.contains("deadlock"));
                assert_eq!(last, "deadlock");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            after_claim(&Claim::Run {
                attempt: 2,
                running: None
            }),
            AfterClaim::Run(2)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_ends_in_time_wins_the_race() {
        let (cancel, hand_back) = (CancellationToken::new(), CancellationToken::new());
        let work = async {
            tokio::time::sleep(Duration::from_secs(9)).await;
            Ok::<_, JobFailure>(json!({"slept_ms": 9000}))
        };
        let raced = race(work, &cancel, Duration::from_secs(10), &hand_back).await;
        assert_eq!(settle(raced), Settle::CommitDone(json!({"slept_ms": 9000})));
    }

    #[tokio::test(start_paused = true)]
    async fn a_time_limit_fails_the_job_with_timeout_and_cancels_its_query() {
        let (cancel, hand_back) = (CancellationToken::new(), CancellationToken::new());
        let started = tokio::time::Instant::now();
        let work = std::future::pending::<Result<serde_json::Value, JobFailure>>();
        let raced = race(work, &cancel, Duration::from_millis(1500), &hand_back).await;
        assert_eq!(
            raced.as_ref().err(),
            Some(&Interrupted::TimedOut(Duration::from_millis(1500)))
        );
        assert_eq!(started.elapsed(), Duration::from_millis(1500));
        let settled = settle(raced);
        assert_eq!(failed_code(&settled), Some(ErrorCode::Timeout));
        assert!(matches!(
            settled,
            Settle::RollBackAndRecord {
                cancel_query: true,
                ..
            }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_mid_run_records_cancelled() {
        let (cancel, hand_back) = (CancellationToken::new(), CancellationToken::new());
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            trigger.cancel();
        });
        let work = std::future::pending::<Result<serde_json::Value, JobFailure>>();
        let raced = race(work, &cancel, Duration::from_secs(60), &hand_back).await;
        assert_eq!(
            settle(raced),
            Settle::RollBackAndRecord {
                cancel_query: true,
                outcome: Outcome::Cancelled
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_hands_the_job_back_for_a_retry() {
        let (cancel, hand_back) = (CancellationToken::new(), CancellationToken::new());
        hand_back.cancel();
        let work = std::future::pending::<Result<serde_json::Value, JobFailure>>();
        let settled = settle(race(work, &cancel, Duration::from_secs(60), &hand_back).await);
        assert!(matches!(
            settled,
            Settle::Retry {
                cancel_query: true,
                failure: JobFailure::Transient(_)
            }
        ));
    }

    #[test]
    fn permanent_failures_are_recorded_and_transient_ones_retried() {
        let permanent = settle(Ok(Err(JobFailure::bad_args("no such column"))));
        assert_eq!(failed_code(&permanent), Some(ErrorCode::BadArgs));
        assert!(matches!(
            permanent,
            Settle::RollBackAndRecord {
                cancel_query: false,
                ..
            }
        ));
        let transient = settle(Ok(Err(JobFailure::Transient("connection reset".into()))));
        assert!(matches!(
            transient,
            Settle::Retry {
                cancel_query: false,
                failure: JobFailure::Transient(m)
            } if m == "connection reset"
        ));
    }

    #[test]
    fn labels_name_each_ending() {
        let timeout = Outcome::Failed(JobError {
            code: ErrorCode::Timeout,
            message: String::new(),
        });
        let failed = Outcome::Failed(JobError {
            code: ErrorCode::BadArgs,
            message: String::new(),
        });
        assert_eq!(label(&Outcome::Done(json!(1)), false), "done");
        assert_eq!(label(&Outcome::Cancelled, false), "cancelled");
        assert_eq!(label(&timeout, false), "timeout");
        assert_eq!(label(&failed, false), "failed");
        assert_eq!(label(&failed, true), "exhausted");
    }
}

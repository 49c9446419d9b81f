//! The jobs consumer: one task per delivery, bounded by the prefetch, each
//! acknowledged only after its outcome is committed.
//!
//! While a job works, three things race: the handler, a cancel request
//! (from the control exchange), and the job's time limit. When the handler
//! loses, its future is dropped, its query is cancelled on the server, its
//! transaction rolled back, and the outcome (`cancelled`, or `failed` with
//! `timeout`) is recorded. The pooled connection goes back healthy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::RunnerConfig;
use crate::metrics as m;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use sluice_broker as amqp;
use sluice_outbox::Publisher;
use sluice_proto::{ErrorCode, JobError, OwnedJobEnvelope};
use sluice_store::StoredEvent;
use sluice_store::jobs::{self as lifecycle, Claim, Finish, Outcome};
use sluice_store::lease::Leased;
use std::panic::AssertUnwindSafe;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use crate::attempt::{self, AfterClaim, Settle};
use crate::error::JobFailure;
use crate::handlers::{Handlers, JobContext};

/// Extra time the server-side `statement_timeout` allows beyond the job's
/// limit: a backstop that only fires if this process stops enforcing it.
const STATEMENT_TIMEOUT_SLACK: Duration = Duration::from_secs(2);

/// Jobs this runner holds, with the token that cancels each.
#[derive(Default)]
pub struct InFlight {
    /// A plain mutex: held only to insert, remove or look up, never across an await.
    jobs: Mutex<HashMap<Uuid, CancellationToken>>,
}

impl InFlight {
    /// Registers `job_id` as held here and returns its cancel token, or
    /// `None` if this runner already holds it (a redelivery while the
    /// first delivery still executes): the second must not run.
    fn enter(&self, job_id: Uuid) -> Option<CancellationToken> {
        let mut jobs = self.jobs.lock().ok()?;
        if jobs.contains_key(&job_id) {
            return None;
        }
        let token = CancellationToken::new();
        jobs.insert(job_id, token.clone());
        Some(token)
    }

    /// The jobs held here, for the cancel poll.
    pub fn ids(&self) -> Vec<Uuid> {
        self.jobs
            .lock()
            .map(|jobs| jobs.keys().copied().collect())
            .unwrap_or_default()
    }

    fn leave(&self, job_id: Uuid) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.remove(&job_id);
        }
    }

    /// Cancels `job_id` if this runner holds it; returns whether it did.
    pub fn cancel(&self, job_id: Uuid) -> bool {
        let token = self
            .jobs
            .lock()
            .ok()
            .and_then(|jobs| jobs.get(&job_id).cloned());
        token.map(|t| t.cancel()).is_some()
    }
}

/// Every `every`, reads which of the jobs held here have a cancel recorded
/// and cancels them. The control message wakes a job at once; this is what
/// makes a cancel durable when that message was lost (a broker outage, a
/// runner that reconnected), and it survives every broker incarnation.
pub async fn poll_cancels(
    pool: deadpool_postgres::Pool,
    in_flight: Arc<InFlight>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let held = in_flight.ids();
        if held.is_empty() {
            continue;
        }
        let requested = match pool.get().await {
            Ok(client) => lifecycle::cancels_requested(&**client, &held).await,
            Err(e) => {
                tracing::debug!(error = %e, "cancel poll: no database connection");
                continue;
            }
        };
        match requested {
            Ok(ids) => {
                for job_id in ids {
                    if in_flight.cancel(job_id) {
                        tracing::info!(%job_id, "cancel found recorded; stopping the job");
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cancel poll failed"),
        }
    }
}

/// Everything a job task needs, shared by all of them.
pub struct Runner {
    /// Connections for claims, handlers and outcomes.
    pub pool: deadpool_postgres::Pool,
    /// The pool's TLS, for the query cancel, which opens a connection of
    /// its own (a TLS-only server refuses a plain one).
    pub tls: sluice_store::tls::Connector,
    /// The handler of each kind.
    pub handlers: Arc<Handlers>,
    /// Limits, attempts and retry delays.
    pub settings: RunnerConfig,
    /// Publishes events after their commit.
    pub events: Arc<Publisher>,
    /// The jobs this runner holds, for cancels.
    pub in_flight: Arc<InFlight>,
    /// Sends transiently failed jobs to their delay tier, exhausted ones to
    /// the dead-letter exchange.
    pub retrier: crate::retry::Retrier,
    /// Cancelled when the shutdown grace is over: jobs still running are
    /// rolled back and handed back to the queue for another runner.
    pub hand_back: CancellationToken,
}

/// Why [`consume`] returned.
pub enum Stopped {
    /// Shutdown was asked for; jobs in hand were finished or handed back.
    Shutdown,
    /// The broker connection (or this runner's use of it) ended; jobs in
    /// hand go on in the background and the caller connects again.
    BrokerLost(String),
}

/// Takes deliveries until `shutdown`, until the consumer ends, or until
/// `incarnation` is cancelled (its broker connection is no longer usable).
/// On shutdown it stops the consumer, lets the jobs in hand finish for up to
/// `grace`, and hands back (rolls back and requeues) any still running, so
/// none is lost and none runs twice.
pub async fn consume(
    runner: Arc<Runner>,
    channel: lapin::Channel,
    mut consumer: lapin::Consumer,
    shutdown: CancellationToken,
    incarnation: CancellationToken,
    grace: Duration,
) -> Stopped {
    let tracker = TaskTracker::new();
    loop {
        let next = tokio::select! {
            next = consumer.next() => next,
            _ = shutdown.cancelled() => break,
            _ = incarnation.cancelled() => {
                return Stopped::BrokerLost("a consumer of this connection ended".into());
            }
        };
        match next {
            Some(Ok(delivery)) => {
                let runner = runner.clone();
                tracker.spawn(async move { handle(&runner, delivery).await });
            }
            // Jobs in hand keep running: their acks will fail and the broker
            // redelivers them, which the claim turns into a skip.
            Some(Err(e)) => return Stopped::BrokerLost(format!("jobs consumer failed: {e}")),
            None => return Stopped::BrokerLost("jobs consumer ended".into()),
        }
    }
    // No new deliveries; any prefetched but unstarted ones go back when the
    // channel closes.
    let tag = consumer.tag();
    if let Err(e) = channel
        .basic_cancel(tag, lapin::options::BasicCancelOptions::default())
        .await
    {
        tracing::warn!(error = %e, "could not cancel the jobs consumer");
    }
    tracker.close();
    tracing::info!(
        in_hand = tracker.len(),
        grace_ms = grace.as_millis() as u64,
        "finishing jobs in hand"
    );
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            in_hand = tracker.len(),
            "grace over: handing running jobs back to the queue"
        );
        runner.hand_back.cancel();
        if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("jobs did not hand back in time; the broker redelivers them");
        }
    }
    let _ = channel.close(200, "runner stopping".into()).await;
    Stopped::Shutdown
}

async fn handle(runner: &Runner, delivery: Delivery) {
    let job = match OwnedJobEnvelope::decode(&delivery.data) {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(error = %e, bytes = delivery.data.len(), "poison message: dead-lettering it");
            if let Err(e) = delivery.reject(BasicRejectOptions { requeue: false }).await {
                tracing::warn!(error = %e, "could not reject poison message");
            }
            return;
        }
    };
    let span = tracing::info_span!("job", job_id = %job.job_id, kind = job.kind.as_str(), user = %job.user);
    // A metric label per kind this runner serves, one for any other: the
    // kind comes from the message, and labels must stay few.
    let kind_label = if runner.handlers.serves(job.kind.as_str()) {
        job.kind.to_string()
    } else {
        "other".to_owned()
    };
    async move {
        let Some(cancel) = runner.in_flight.enter(job.job_id) else {
            // This runner executes the job already (the broker redelivered
            // it after a lost connection): look again later.
            metrics::counter!(m::JOBS_FINISHED, "kind" => kind_label, "outcome" => "deferred")
                .increment(1);
            defer(runner, &delivery).await;
            return;
        };
        metrics::gauge!(m::JOBS_IN_FLIGHT).increment(1.0);
        let started = std::time::Instant::now();
        // A panic in a handler (or below it) is caught here so the delivery
        // is still settled and its prefetch slot freed: it counts as a
        // transient failure, retried until the job's attempts run out. The
        // job's lease went with its connection, which the unwinding closed.
        let outcome = AssertUnwindSafe(run_job(runner, &job, &cancel))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                let what = panic_message(panic.as_ref());
                tracing::error!(panic = %what, "the job's task panicked");
                Err(JobFailure::Transient(format!(
                    "the runner panicked: {what}"
                )))
            });
        let label = match &outcome {
            Ok(ended) => ended.label,
            Err(_) if runner.hand_back.is_cancelled() => "handed_back",
            Err(_) => "retried",
        };
        metrics::counter!(m::JOBS_FINISHED, "kind" => kind_label.clone(), "outcome" => label)
            .increment(1);
        metrics::histogram!(m::JOB_DURATION_SECONDS, "kind" => kind_label)
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!(m::JOBS_IN_FLIGHT).decrement(1.0);
        runner.in_flight.leave(job.job_id);
        match outcome {
            Ok(ended) if ended.deferred => defer(runner, &delivery).await,
            Ok(ended) => {
                if let Some((attempts, last_error)) = ended.dead_letter {
                    // The failure and its event are committed; keep a copy for operators.
                    match runner
                        .retrier
                        .dead_letter(&delivery.data, attempts, last_error.as_deref())
                        .await
                    {
                        Ok(()) => {
                            tracing::warn!(attempts, "job exhausted its attempts: dead-lettered")
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "could not dead-letter an exhausted job")
                        }
                    }
                }
                if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                    // The outcome is committed; a redelivery will be skipped.
                    tracing::warn!(error = %e, "ack failed");
                }
            }
            Err(failure) => retry_later(runner, &job, &delivery, &failure).await,
        }
    }
    .instrument(span)
    .await
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Another attempt executes this delivery's job: send the delivery to wait
/// in a delay tier and acknowledge it. When it comes back the job has
/// ended (it is skipped) or its holder died and freed the lease (it runs).
/// If the broker refuses the copy, requeue after a pause instead.
async fn defer(runner: &Runner, delivery: &Delivery) {
    let retries = amqp::header_count(&delivery.properties, amqp::RETRIES_HEADER);
    let deferrals =
        amqp::header_count(&delivery.properties, amqp::DEFERRALS_HEADER).saturating_add(1);
    match runner
        .retrier
        .defer(&delivery.data, retries, deferrals)
        .await
    {
        Ok(wait) => {
            tracing::info!(
                deferrals,
                wait_ms = wait.as_millis() as u64,
                "the job is executing in another attempt; looking again later"
            );
            if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                tracing::warn!(error = %e, "ack after deferring failed");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not defer a delivery; requeueing after a pause");
            tokio::time::sleep(Duration::from_millis(runner.settings.retry_delay_ms)).await;
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            if let Err(e) = delivery.nack(requeue).await {
                tracing::warn!(error = %e, "nack failed; the broker redelivers on channel close");
            }
        }
    }
}

/// A transient failure: record it, then send the job to wait in its retry
/// tier and acknowledge this delivery (no slot is held while it waits). On
/// shutdown, or if the broker refuses the retry, hand it straight back.
async fn retry_later(
    runner: &Runner,
    job: &OwnedJobEnvelope,
    delivery: &Delivery,
    failure: &JobFailure,
) {
    match runner.pool.get().await {
        Ok(client) => {
            if let Err(e) =
                lifecycle::record_transient(&**client, job.job_id, &failure.to_string()).await
            {
                tracing::warn!(error = %e, "could not record the transient failure");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not record the transient failure"),
    }
    if !runner.hand_back.is_cancelled() {
        // A header from the broker (or anyone who can publish): clamped.
        let retries =
            amqp::header_count(&delivery.properties, amqp::RETRIES_HEADER).saturating_add(1);
        match runner.retrier.schedule(&delivery.data, retries).await {
            Ok(wait) => {
                tracing::warn!(error = %failure, retries, wait_ms = wait.as_millis() as u64, "job attempt failed; retrying later");
                if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                    // The retry copy exists; a redelivery of this one is
                    // skipped or run once by the claim's row lock.
                    tracing::warn!(error = %e, "ack after scheduling a retry failed");
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not schedule a retry; requeueing after a pause");
                tokio::time::sleep(Duration::from_millis(runner.settings.retry_delay_ms)).await;
            }
        }
    } else {
        tracing::info!(error = %failure, "handing the job back for another runner");
    }
    let requeue = BasicNackOptions {
        requeue: true,
        ..Default::default()
    };
    if let Err(e) = delivery.nack(requeue).await {
        tracing::warn!(error = %e, "nack failed; the broker redelivers on channel close");
    }
}

/// How an attempt ended, when it did not need a retry.
pub struct Ended {
    /// The metric label of the outcome.
    pub label: &'static str,
    /// For a job that used up its attempts: (attempts, last error), to
    /// dead-letter a copy.
    pub dead_letter: Option<(i32, Option<String>)>,
    /// Another attempt holds the job: nothing ran; defer the delivery.
    pub deferred: bool,
}

impl Ended {
    fn plain(label: &'static str) -> Self {
        Self {
            label,
            dead_letter: None,
            deferred: false,
        }
    }
}

/// One attempt at a job, under its lease. `Ok` (with the outcome's metric
/// label) means its outcome is committed, or it had already ended, or
/// another attempt holds it, and the delivery may be settled; `Err` means
/// hand it back. The lease is released only after the outcome committed.
async fn run_job(
    runner: &Runner,
    job: &OwnedJobEnvelope,
    cancel: &CancellationToken,
) -> Result<Ended, JobFailure> {
    let mut client = Leased::new(runner.pool.get().await?, job.job_id);
    let ended = attempt_under_lease(runner, &mut client, job, cancel).await;
    client.release().await;
    ended
}

async fn attempt_under_lease(
    runner: &Runner,
    client: &mut Leased,
    job: &OwnedJobEnvelope,
    cancel: &CancellationToken,
) -> Result<Ended, JobFailure> {
    let tx = client.transaction().await?;
    let max_attempts = runner
        .handlers
        .max_attempts(job.kind.as_str(), &runner.settings);
    let claim = lifecycle::claim(&*tx, job, max_attempts).await?;
    tx.commit().await?;
    if !claim.holds_lease() {
        client.not_held();
    }

    let (outcome, dead_letter) = match attempt::after_claim(&claim) {
        AfterClaim::Skip(label) => {
            tracing::info!(label, "nothing to run for this delivery; skipping it");
            return Ok(Ended::plain(label));
        }
        AfterClaim::Defer => {
            return Ok(Ended {
                deferred: true,
                ..Ended::plain("deferred")
            });
        }
        AfterClaim::Record(outcome, dead_letter) => (outcome, dead_letter),
        AfterClaim::Run(attempt) => {
            if let Claim::Run {
                running: Some(event),
                ..
            } = &claim
            {
                runner.events.publish_stored(&****client, event).await;
            }
            match execute(runner, client, job, cancel, attempt).await? {
                Some(outcome) => (outcome, None),
                None => return Ok(Ended::plain("done")),
            }
        }
    };
    let tx = client.transaction().await?;
    let recorded = record(&tx, job, outcome).await?;
    tx.commit().await?;
    let label = match recorded {
        Some((outcome, event)) => {
            runner.events.publish_stored(&****client, &event).await;
            attempt::label(&outcome, dead_letter.is_some())
        }
        None => "skipped",
    };
    Ok(Ended {
        label,
        dead_letter,
        deferred: false,
    })
}

/// Records `outcome` (work already rolled back), or `cancelled` if a cancel
/// was requested meanwhile. `None`: the job had ended already and nothing
/// was written, so no second terminal event exists.
async fn record(
    tx: &tokio_postgres::Transaction<'_>,
    job: &OwnedJobEnvelope,
    outcome: Outcome,
) -> Result<Option<(Outcome, StoredEvent)>, tokio_postgres::Error> {
    let recorded = lifecycle::finish_or_cancel(tx, job.job_id, &job.user, outcome).await?;
    if recorded.is_none() {
        tracing::warn!("the job had already ended; this attempt's outcome is not recorded");
    }
    Ok(recorded)
}

/// Runs the handler in its own transaction, racing cancellation, the time
/// limit and shutdown. `Ok(None)`: done, committed with the work and its
/// event published. `Ok(Some(outcome))`: rolled back, and this outcome is
/// to be recorded. `Err`: rolled back, hand the delivery back.
async fn execute(
    runner: &Runner,
    client: &mut Leased,
    job: &OwnedJobEnvelope,
    cancel: &CancellationToken,
    attempt: i32,
) -> Result<Option<Outcome>, JobFailure> {
    let limit = runner.handlers.timeout(job.kind.as_str(), &runner.settings);
    tracing::info!(attempt, limit_ms = limit.as_millis() as u64, "running job");
    let started = std::time::Instant::now();
    let tx = client.transaction().await?;
    let statement_limit = (limit + STATEMENT_TIMEOUT_SLACK).as_millis();
    tx.batch_execute(&format!("SET LOCAL statement_timeout = {statement_limit}"))
        .await?;
    let server_cancel = tx.cancel_token();
    let work = async {
        match runner.handlers.get(job.kind.as_str()) {
            Some(handler) => {
                handler
                    .run(JobContext {
                        tx: &tx,
                        job,
                        settings: &runner.settings,
                        events: &runner.events,
                        cancel,
                    })
                    .await
            }
            None => Err(JobFailure::Permanent(JobError {
                code: ErrorCode::UnknownKind,
                message: format!("this runner has no handler for `{}`", job.kind.as_str()),
            })),
        }
    };
    let raced = attempt::race(work, cancel, limit, &runner.hand_back).await;
    let elapsed_ms = || started.elapsed().as_millis() as u64;
    let (cancel_query, next) = match attempt::settle(raced) {
        Settle::CommitDone(value) => {
            match lifecycle::finish(&*tx, job, Outcome::Done(value)).await? {
                Finish::Recorded(event) => {
                    tx.commit().await?;
                    tracing::info!(elapsed_ms = elapsed_ms(), "job done");
                    runner.events.publish_stored(&****client, &event).await;
                    return Ok(None);
                }
                // A cancel answered with success wins over work not yet
                // committed: the work is rolled back and `cancelled` recorded.
                Finish::CancelRequested => (false, Ok(Some(Outcome::Cancelled))),
                Finish::AlreadyEnded => {
                    tracing::warn!("the job had already ended; rolling this attempt's work back");
                    (false, Ok(None))
                }
            }
        }
        Settle::RollBackAndRecord {
            cancel_query,
            outcome,
        } => (cancel_query, Ok(Some(outcome))),
        Settle::Retry {
            cancel_query,
            failure,
        } => (cancel_query, Err(failure)),
    };
    if cancel_query {
        // The handler's future is gone; stop its query on the server too.
        // The cancel request is a connection of its own, with the pool's TLS.
        if let Err(e) = server_cancel.cancel_query(runner.tls.clone()).await {
            tracing::warn!(error = %e, "could not cancel the job's query");
        }
    }
    tx.rollback().await?;
    match &next {
        // Code only: a bad value's message can quote row data.
        Ok(Some(Outcome::Failed(e))) => {
            tracing::info!(
                code = e.code.as_str(),
                elapsed_ms = elapsed_ms(),
                "job failed"
            )
        }
        Ok(Some(Outcome::Cancelled)) => tracing::info!(elapsed_ms = elapsed_ms(), "job cancelled"),
        _ => {}
    }
    next
}

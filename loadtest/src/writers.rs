//! The writers of the `ping` scenario: sessions that submit `batch_upsert`
//! jobs back to back, each waiting for its terminal event.
//!
//! They run on a thread and runtime of their own. Building and sending a
//! multi-megabyte batch takes milliseconds of CPU; on the pingers' runtime
//! that time would be charged to whatever pongs arrived meanwhile, and the
//! tool would report its own stalls as the gateway's latency.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use sluice_proto::{EventStatus, ServerFrame};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::ping::connect_many;
use crate::report::{Errors, histogram, merge_errors, reason, record};
use crate::session::{Session, Target};

/// What the writers did, summed.
#[derive(Default)]
pub(crate) struct WriterOutcome {
    pub(crate) submitted: u64,
    pub(crate) done: u64,
    pub(crate) failed: u64,
    pub(crate) rows: u64,
    pub(crate) errors: Errors,
    /// Job end-to-end latency (submit sent → terminal event), µs.
    pub(crate) latency: Option<Histogram<u64>>,
}

/// Writers connected on their own thread, waiting for the signal to start.
pub(crate) struct Writers {
    /// Sessions that connected.
    pub(crate) connected: usize,
    start: oneshot::Sender<Instant>,
    done: oneshot::Receiver<WriterOutcome>,
}

/// What a writer thread is asked to do.
pub(crate) struct WriterPlan {
    pub(crate) target: Target,
    pub(crate) user_prefix: String,
    pub(crate) writers: usize,
    pub(crate) rows: usize,
    /// First `items.id`; writer `i` uses `id_base + i * rows ..`.
    pub(crate) id_base: i64,
}

impl Writers {
    /// Connects the writers on a new thread; returns once they are connected
    /// (failures are counted in the outcome's errors).
    pub(crate) async fn connect(plan: WriterPlan) -> anyhow::Result<Self> {
        let (connected_tx, connected_rx) = oneshot::channel();
        let (start_tx, start_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("writers".into())
            .spawn(move || {
                let outcome = runtime.block_on(run(plan, connected_tx, start_rx));
                let _ = done_tx.send(outcome);
            })?;
        let connected = connected_rx.await.unwrap_or(0);
        Ok(Self {
            connected,
            start: start_tx,
            done: done_rx,
        })
    }

    /// Starts the writers; they stop at `deadline`. Resolves to their outcome.
    pub(crate) async fn run_until(self, deadline: Instant) -> WriterOutcome {
        if self.start.send(deadline).is_err() {
            let mut outcome = WriterOutcome::default();
            outcome.errors.insert("writer thread ended early".into(), 1);
            return outcome;
        }
        self.done.await.unwrap_or_else(|_| {
            let mut outcome = WriterOutcome::default();
            outcome.errors.insert("writer thread panicked".into(), 1);
            outcome
        })
    }
}

async fn run(
    plan: WriterPlan,
    connected: oneshot::Sender<usize>,
    start: oneshot::Receiver<Instant>,
) -> WriterOutcome {
    let mut total = WriterOutcome::default();
    let bar = indicatif::ProgressBar::hidden();
    let sessions = connect_many(
        &plan.target,
        &plan.user_prefix,
        plan.writers,
        0,
        &mut total.errors,
        &bar,
    )
    .await;
    let _ = connected.send(sessions.len());
    let Ok(deadline) = start.await else {
        return total;
    };
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let first_id = plan.id_base + (i as i64) * plan.rows as i64;
            tokio::spawn(writer(s, plan.rows, first_id, deadline))
        })
        .collect();
    let mut latency = histogram();
    for task in tasks {
        match task.await {
            Ok((outcome, h)) => {
                total.submitted += outcome.submitted;
                total.done += outcome.done;
                total.failed += outcome.failed;
                total.rows += outcome.rows;
                merge_errors(&mut total.errors, &outcome.errors);
                if let Err(e) = latency.add(&h) {
                    *total.errors.entry(format!("histogram: {e}")).or_default() += 1;
                }
            }
            Err(e) => *total.errors.entry(format!("writer task: {e}")).or_default() += 1,
        }
    }
    total.latency = Some(latency);
    total
}

/// The text of a `submit` of one batch: `rows` rows with ids from
/// `first_id`, their value naming the round. Written straight into a
/// string: building a `serde_json::Value` per row costs several times more.
pub(crate) fn batch_frame(round: u64, rows: usize, first_id: i64) -> String {
    let mut text = String::with_capacity(160 + rows * 32);
    let _ = write!(
        text,
        r#"{{"type":"submit","ref":"w{round}","job":{{"kind":"batch_upsert","args":{{"table":"items","key":["id"],"rows":["#
    );
    for i in 0..rows as i64 {
        if i > 0 {
            text.push(',');
        }
        let _ = write!(text, r#"{{"id":{},"value":"r{round}"}}"#, first_id + i);
    }
    text.push_str("]}}}");
    text
}

/// Submits `rows`-row batches back to back until `deadline`, each waiting
/// for its terminal event.
async fn writer(
    mut session: Session,
    rows: usize,
    first_id: i64,
    deadline: Instant,
) -> (WriterOutcome, Histogram<u64>) {
    let mut outcome = WriterOutcome::default();
    let mut hist = histogram();
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        let submit = batch_frame(round, rows, first_id);
        let start = Instant::now();
        outcome.submitted += 1;
        if let Err(e) = session.send_text(submit).await {
            outcome.failed += 1;
            *outcome
                .errors
                .entry(format!("submit: {}", reason(&e)))
                .or_default() += 1;
            break;
        }
        let ended = loop {
            match session.next(Duration::from_secs(120)).await {
                Ok(ServerFrame::Event(e)) if e.status.is_terminal() => {
                    let done = e.status == EventStatus::Done;
                    if !done {
                        *outcome
                            .errors
                            .entry(format!("job ended {:?}", e.status))
                            .or_default() += 1;
                    }
                    break Some(done);
                }
                Ok(ServerFrame::Error { code, .. }) => {
                    *outcome
                        .errors
                        .entry(format!("job refused: {code:?}"))
                        .or_default() += 1;
                    break Some(false);
                }
                Ok(_) => continue,
                Err(e) => {
                    *outcome
                        .errors
                        .entry(format!("job: {}", reason(&e)))
                        .or_default() += 1;
                    break None;
                }
            }
        };
        match ended {
            Some(true) => {
                outcome.done += 1;
                outcome.rows += rows as u64;
                record(&mut hist, start.elapsed().as_micros());
            }
            Some(false) => outcome.failed += 1,
            None => {
                outcome.failed += 1;
                break;
            }
        }
    }
    (outcome, hist)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_frame_is_a_submit_the_gateway_accepts() {
        let text = batch_frame(7, 3, 100);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["ref"], "w7");
        let rows = value["job"]["args"]["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2], serde_json::json!({ "id": 102, "value": "r7" }));
        match sluice_proto::ClientFrame::decode(&text).unwrap() {
            sluice_proto::ClientFrame::Submit(submit) => {
                assert_eq!(submit.kind.as_str(), sluice_proto::kind::BATCH_UPSERT)
            }
            other => panic!("not a submit: {other:?}"),
        }
    }
}

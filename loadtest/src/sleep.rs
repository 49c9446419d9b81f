//! The `sleep` scenario: J concurrent slow jobs; total time shows whether
//! they run side by side (ideal: M) or one after another (J x M).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use sluice_proto::job::SleepArgs as SleepJobArgs;
use sluice_proto::{EventStatus, JobRequest, OutgoingFrame, ServerFrame};
use tokio::time::Instant;

use crate::ping::{connect_many, join_pingers, spawn_pingers};
use crate::report::{
    Charts, Errors, Latency, Machine, Output, emit, histogram, latency_lines, merge_errors,
    progress, reason, record,
};
use crate::session::{Session, Target};

/// Arguments of `sleep`.
#[derive(Debug, clap::Args, Serialize)]
pub(crate) struct SleepArgs {
    #[command(flatten)]
    target: Target,
    /// Jobs submitted at once.
    #[arg(long, default_value_t = 100, value_parser = crate::report::count())]
    jobs: usize,
    /// How long each job sleeps, in ms.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(..=crate::report::MAX_MS))]
    ms: u64,
    /// Sessions submitting the jobs (0: one per job); jobs are spread over them.
    #[arg(long, default_value_t = 0, value_parser = crate::report::count())]
    sessions: usize,
    /// Sessions pinging 10 times a second while the jobs run.
    #[arg(long, default_value_t = 0, value_parser = crate::report::count())]
    pingers: usize,
    /// Give up waiting for jobs after this many seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(..=crate::report::MAX_SECS))]
    timeout_secs: u64,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Serialize)]
struct SleepReport<'a> {
    scenario: &'static str,
    machine: Machine,
    config: &'a SleepArgs,
    jobs: usize,
    job_ms: u64,
    sessions: usize,
    sessions_connected: usize,
    jobs_submitted: u64,
    jobs_accepted: u64,
    jobs_refused: u64,
    jobs_done: u64,
    jobs_failed: u64,
    jobs_unfinished: u64,
    total_secs: f64,
    ideal_secs: f64,
    serial_secs: f64,
    job: Latency,
    pingers: usize,
    pings_sent: u64,
    pongs: u64,
    lost_pongs: u64,
    pong: Latency,
    errors: Errors,
}

#[derive(Default)]
struct SubmitterOutcome {
    submitted: u64,
    accepted: u64,
    refused: u64,
    done: u64,
    failed: u64,
    /// (seconds since start of the jobs, end-to-end µs) per finished job.
    samples: Vec<(f64, u64)>,
    errors: Errors,
}

/// Submits `count` sleep jobs at once and waits for every terminal event.
async fn submitter(
    mut session: Session,
    index: usize,
    count: usize,
    ms: u64,
    start: Instant,
    deadline: Instant,
    finished: Arc<AtomicU64>,
) -> SubmitterOutcome {
    let mut out = SubmitterOutcome::default();
    for j in 0..count {
        let frame = OutgoingFrame::Submit {
            reference: format!("s{index}-{j}"),
            job: JobRequest::Sleep(SleepJobArgs { ms }),
        };
        out.submitted += 1;
        if let Err(e) = session.send(&frame).await {
            *out.errors
                .entry(format!("submit: {}", reason(&e)))
                .or_default() += 1;
            return out;
        }
    }
    let mut accepted: HashSet<uuid::Uuid> = HashSet::new();
    let mut ended: HashMap<uuid::Uuid, bool> = HashMap::new();
    while (out.refused as usize) + ended.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match session.next(left).await {
            Ok(ServerFrame::Accepted { job_id, .. }) => {
                accepted.insert(job_id);
            }
            Ok(ServerFrame::Error { code, .. }) => {
                out.refused += 1;
                *out.errors
                    .entry(format!("submit refused: {code:?}"))
                    .or_default() += 1;
            }
            Ok(ServerFrame::Event(e)) if e.status.is_terminal() => {
                let done = e.status == EventStatus::Done;
                if ended.insert(e.job_id, done).is_none() {
                    finished.fetch_add(1, Ordering::Relaxed);
                    out.samples.push((
                        start.elapsed().as_secs_f64(),
                        start.elapsed().as_micros() as u64,
                    ));
                    if !done {
                        *out.errors
                            .entry(format!("job ended {:?}", e.status))
                            .or_default() += 1;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                *out.errors
                    .entry(format!("job: {}", reason(&e)))
                    .or_default() += 1;
                break;
            }
        }
    }
    out.accepted = accepted.len() as u64;
    out.done = ended.values().filter(|d| **d).count() as u64;
    out.failed = ended.values().filter(|d| !**d).count() as u64;
    out
}

/// Runs the scenario and prints (and optionally writes) the report.
pub(crate) async fn run(args: SleepArgs) -> anyhow::Result<()> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let bar = progress(false);
    let mut errors = Errors::new();
    let sessions_wanted = if args.sessions == 0 {
        args.jobs
    } else {
        args.sessions.min(args.jobs.max(1))
    };
    bar.set_message("connecting");
    let submitters = connect_many(
        &args.target,
        &format!("lt-{run_id}-s"),
        sessions_wanted,
        0,
        &mut errors,
        &bar,
    )
    .await;
    let pingers = connect_many(
        &args.target,
        &format!("lt-{run_id}-p"),
        args.pingers,
        0,
        &mut errors,
        &bar,
    )
    .await;
    let connected = submitters.len();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.timeout_secs);
    // Pingers measure while the jobs should be running, and a second more.
    let ping_deadline = (start + Duration::from_millis(args.ms + 1000)).min(deadline);
    let ping_tasks = spawn_pingers(pingers, 10.0, start, ping_deadline);
    let finished = Arc::new(AtomicU64::new(0));
    let n = connected.max(1);
    let tasks: Vec<_> = submitters
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            // Jobs the sessions that failed to connect would have had are
            // spread over the others, so that all J are submitted.
            let count = args.jobs / n + usize::from(i < args.jobs % n);
            tokio::spawn(submitter(
                s,
                i,
                count,
                args.ms,
                start,
                deadline,
                finished.clone(),
            ))
        })
        .collect();
    let ticker = {
        let bar = bar.clone();
        let finished = finished.clone();
        let jobs = args.jobs;
        tokio::spawn(async move {
            loop {
                bar.set_message(format!(
                    "{}/{jobs} jobs finished, {:.1} s",
                    finished.load(Ordering::Relaxed),
                    start.elapsed().as_secs_f64()
                ));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let mut total = SubmitterOutcome::default();
    for task in tasks {
        match task.await {
            Ok(out) => {
                total.submitted += out.submitted;
                total.accepted += out.accepted;
                total.refused += out.refused;
                total.done += out.done;
                total.failed += out.failed;
                total.samples.extend(out.samples);
                merge_errors(&mut errors, &out.errors);
            }
            Err(e) => *errors.entry(format!("submitter task: {e}")).or_default() += 1,
        }
    }
    let total_secs = total.samples.iter().map(|(t, _)| *t).fold(0.0, f64::max);
    let (sent, lost, pong_hist, pong_samples) = join_pingers(ping_tasks, &mut errors).await;
    ticker.abort();
    bar.finish_and_clear();
    let mut job_hist = histogram();
    for &(_, us) in &total.samples {
        record(&mut job_hist, us.into());
    }
    let unfinished = total
        .submitted
        .saturating_sub(total.refused + total.done + total.failed);
    if unfinished > 0 {
        *errors
            .entry("job: no terminal event before the timeout".into())
            .or_default() += unfinished;
    }
    let report = SleepReport {
        scenario: "sleep",
        machine: Machine::read(),
        config: &args,
        jobs: args.jobs,
        job_ms: args.ms,
        sessions: sessions_wanted,
        sessions_connected: connected,
        jobs_submitted: total.submitted,
        jobs_accepted: total.accepted,
        jobs_refused: total.refused,
        jobs_done: total.done,
        jobs_failed: total.failed,
        jobs_unfinished: unfinished,
        total_secs,
        ideal_secs: args.ms as f64 / 1000.0,
        serial_secs: args.jobs as f64 * args.ms as f64 / 1000.0,
        job: Latency::of(&job_hist),
        pingers: args.pingers,
        pings_sent: sent,
        pongs: pong_hist.len(),
        lost_pongs: lost,
        pong: Latency::of(&pong_hist),
        errors,
    };
    let mut summary = format!(
        "{}\nsleep: {} jobs of {} ms over {} sessions: {} done, {} failed, {} refused, {} unfinished; \
         total {:.2} s (ideal {:.2} s, one after another {:.1} s)\n",
        report.job.line("job"),
        report.jobs,
        report.job_ms,
        report.sessions_connected,
        report.jobs_done,
        report.jobs_failed,
        report.jobs_refused,
        report.jobs_unfinished,
        report.total_secs,
        report.ideal_secs,
        report.serial_secs
    );
    if args.pingers > 0 {
        summary.push_str(&report.pong.line("pong"));
        summary.push_str(&format!(
            "\npings sent {}, pongs {}, lost {}\n",
            report.pings_sent, report.pongs, report.lost_pongs
        ));
    }
    for (reason, n) in &report.errors {
        summary.push_str(&format!("error: {reason}: {n}\n"));
    }
    let mut finish_times: Vec<f64> = total.samples.iter().map(|(t, _)| *t).collect();
    finish_times.sort_by(f64::total_cmp);
    let in_flight: Vec<(f64, f64)> = std::iter::once((0.0, total.submitted as f64))
        .chain(
            finish_times
                .iter()
                .enumerate()
                .map(|(i, t)| (*t, total.submitted as f64 - (i + 1) as f64)),
        )
        .collect();
    let mut charts = Charts {
        latency_over_time: latency_lines("pong", &pong_samples),
        percentiles: vec![("job end to end".into(), job_hist)],
        sessions_over_time: vec![("jobs in flight".into(), in_flight)],
    };
    if args.pingers > 0 {
        charts.percentiles.push(("pong".into(), pong_hist));
    }
    let json = serde_json::to_value(&report)?;
    emit(
        &args.output,
        "sluice-loadtest sleep",
        &summary,
        &charts,
        &json,
    )
}

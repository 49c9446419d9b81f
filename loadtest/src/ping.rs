//! The `ping` scenario: pong latency, alone or while writers run batches.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use sluice_proto::ServerFrame;
use tokio::time::Instant;

use crate::report::{
    Charts, Errors, Latency, Machine, Output, emit, histogram, latency_lines, merge_errors,
    progress, reason, record,
};
use crate::session::{Session, Target};
use crate::writers::{WriterPlan, Writers};

/// Arguments of `ping`.
#[derive(Debug, clap::Args, Serialize)]
pub(crate) struct PingArgs {
    #[command(flatten)]
    target: Target,
    /// Sessions that ping.
    #[arg(long, default_value_t = 100, value_parser = crate::report::count())]
    sessions: usize,
    /// Spread the pinging sessions over this many users (0: one user each).
    #[arg(long, default_value_t = 0, value_parser = crate::report::count())]
    users_shared: usize,
    /// Pings per second per session.
    #[arg(long, default_value_t = 10.0, value_parser = crate::report::parse_rate)]
    rate: f64,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(..=crate::report::MAX_SECS))]
    duration_secs: u64,
    /// Writer sessions submitting `batch_upsert` jobs back to back.
    #[arg(long, default_value_t = 0, value_parser = crate::report::count())]
    writers: usize,
    /// Rows per batch.
    #[arg(long, default_value_t = 5000, value_parser = crate::report::count())]
    rows: usize,
    /// First `items.id` the writers use (each writer gets its own range).
    #[arg(long, default_value_t = 100_000_000)]
    id_base: i64,
    /// Write every pong as a CSV line (seconds since the start, round trip
    /// in µs) to this file, to see when the slow ones happened.
    #[arg(long)]
    samples_csv: Option<std::path::PathBuf>,
    #[command(flatten)]
    output: Output,
}

/// The JSON report of a `ping` run.
#[derive(Debug, Serialize)]
struct PingReport<'a> {
    scenario: &'static str,
    machine: Machine,
    config: &'a PingArgs,
    sessions: usize,
    sessions_connected: usize,
    connect_errors: u64,
    writers_connected: usize,
    errors: Errors,
    rate_per_session: f64,
    duration_secs: u64,
    elapsed_secs: f64,
    pings_sent: u64,
    pongs: u64,
    lost_pongs: u64,
    pong: Latency,
    writers: usize,
    rows_per_batch: usize,
    jobs_submitted: u64,
    jobs_done: u64,
    jobs_failed: u64,
    rows_written: u64,
    rows_per_sec: f64,
    job: Latency,
}

/// What one pinger did.
#[derive(Default)]
pub(crate) struct PingerOutcome {
    pub(crate) sent: u64,
    pub(crate) lost: u64,
    /// (seconds since the run started, round trip in µs) per pong.
    pub(crate) samples: Vec<(f64, u64)>,
    pub(crate) errors: Errors,
}

/// Connects `n` sessions (users `prefix{i % shared}` or `prefix{i}`),
/// counting failures by reason.
pub(crate) async fn connect_many(
    target: &Target,
    prefix: &str,
    n: usize,
    shared: usize,
    errors: &mut Errors,
    bar: &indicatif::ProgressBar,
) -> Vec<Session> {
    let mut sessions = Vec::with_capacity(n);
    let mut pending = futures_util::stream::FuturesUnordered::new();
    for i in 0..n {
        let user = if shared > 0 {
            format!("{prefix}{}", i % shared)
        } else {
            format!("{prefix}{i}")
        };
        pending.push(async move { target.connect(&user).await });
        // At most 64 handshakes in flight.
        if pending.len() >= 64
            && let Some(result) = futures_util::StreamExt::next(&mut pending).await
        {
            keep(result, &mut sessions, errors);
            bar.set_message(format!("connected {}/{n}", sessions.len()));
        }
    }
    while let Some(result) = futures_util::StreamExt::next(&mut pending).await {
        keep(result, &mut sessions, errors);
    }
    sessions
}

fn keep(result: anyhow::Result<Session>, sessions: &mut Vec<Session>, errors: &mut Errors) {
    match result {
        Ok(s) => sessions.push(s),
        Err(e) => {
            *errors
                .entry(format!("connect: {}", reason(&e)))
                .or_default() += 1
        }
    }
}

/// Starts one pinger task per session, their first pings spread over a period.
pub(crate) fn spawn_pingers(
    sessions: Vec<Session>,
    rate: f64,
    run_start: Instant,
    deadline: Instant,
) -> Vec<tokio::task::JoinHandle<PingerOutcome>> {
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let n = sessions.len().max(1);
    sessions
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let offset = period.mul_f64(i as f64 / n as f64);
            tokio::spawn(pinger(s, period, offset, run_start, deadline))
        })
        .collect()
}

/// Joins pinger tasks: totals, the merged histogram and all samples.
pub(crate) async fn join_pingers(
    tasks: Vec<tokio::task::JoinHandle<PingerOutcome>>,
    errors: &mut Errors,
) -> (u64, u64, Histogram<u64>, Vec<(f64, u64)>) {
    let mut hist = histogram();
    let (mut sent, mut lost) = (0, 0);
    let mut samples = Vec::new();
    for task in tasks {
        match task.await {
            Ok(outcome) => {
                sent += outcome.sent;
                lost += outcome.lost;
                for &(_, us) in &outcome.samples {
                    record(&mut hist, us.into());
                }
                samples.extend(outcome.samples);
                merge_errors(errors, &outcome.errors);
            }
            Err(e) => *errors.entry(format!("pinger task: {e}")).or_default() += 1,
        }
    }
    (sent, lost, hist, samples)
}

/// Runs the scenario and prints (and optionally writes) the report.
pub(crate) async fn run(args: PingArgs) -> anyhow::Result<()> {
    let target = args.target.clone();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let bar = progress(false);
    let mut errors = Errors::new();
    bar.set_message("connecting");
    let pingers = connect_many(
        &target,
        &format!("lt-{run_id}-p"),
        args.sessions,
        args.users_shared,
        &mut errors,
        &bar,
    )
    .await;
    let sessions_connected = pingers.len();
    let connect_errors: u64 = errors.values().sum();
    let writers = Writers::connect(WriterPlan {
        target: target.clone(),
        user_prefix: format!("lt-{run_id}-w"),
        writers: args.writers,
        rows: args.rows,
        id_base: args.id_base,
    })
    .await?;
    let writers_connected = writers.connected;

    let run_start = Instant::now();
    let deadline = run_start + Duration::from_secs(args.duration_secs);
    let ping_tasks = spawn_pingers(pingers, args.rate, run_start, deadline);
    let written = tokio::spawn(writers.run_until(deadline));
    let ticker = {
        let bar = bar.clone();
        let total = args.duration_secs;
        tokio::spawn(async move {
            loop {
                let t = run_start.elapsed().as_secs();
                bar.set_message(format!(
                    "{sessions_connected} sessions pinging, {writers_connected} writers: {t}/{total} s"
                ));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let (sent, lost, pong_hist, samples) = join_pingers(ping_tasks, &mut errors).await;
    let mut written = written.await?;
    merge_errors(&mut errors, &written.errors);
    let job_hist = written.latency.take().unwrap_or_else(histogram);
    let elapsed = run_start.elapsed().as_secs_f64();
    ticker.abort();
    bar.finish_and_clear();

    let report = PingReport {
        scenario: "ping",
        machine: Machine::read(),
        config: &args,
        sessions: args.sessions,
        sessions_connected,
        connect_errors,
        writers_connected,
        errors,
        rate_per_session: args.rate,
        duration_secs: args.duration_secs,
        elapsed_secs: elapsed,
        pings_sent: sent,
        pongs: pong_hist.len(),
        lost_pongs: lost,
        pong: Latency::of(&pong_hist),
        writers: args.writers,
        rows_per_batch: args.rows,
        jobs_submitted: written.submitted,
        jobs_done: written.done,
        jobs_failed: written.failed,
        rows_written: written.rows,
        rows_per_sec: written.rows as f64 / elapsed,
        job: Latency::of(&job_hist),
    };
    let mut summary = String::new();
    summary.push_str(&report.pong.line("pong"));
    summary.push('\n');
    if args.writers > 0 {
        summary.push_str(&report.job.line("job"));
        summary.push_str(&format!(
            "\nwriters: {} jobs submitted, {} done, {} failed, {:.0} rows/s\n",
            report.jobs_submitted, report.jobs_done, report.jobs_failed, report.rows_per_sec
        ));
    }
    summary.push_str(&format!(
        "sessions {}/{} connected, pings sent {}, pongs {}, lost {}\n",
        report.sessions_connected,
        report.sessions,
        report.pings_sent,
        report.pongs,
        report.lost_pongs
    ));
    for (reason, n) in &report.errors {
        summary.push_str(&format!("error: {reason}: {n}\n"));
    }
    if let Some(path) = &args.samples_csv {
        let mut csv = String::from("t_secs,rtt_us\n");
        for (t, us) in &samples {
            csv.push_str(&format!("{t:.6},{us}\n"));
        }
        std::fs::write(path, csv)?;
    }
    let mut charts = Charts {
        latency_over_time: latency_lines("pong", &samples),
        percentiles: vec![("pong".into(), pong_hist)],
        sessions_over_time: vec![(
            "pinging sessions".into(),
            vec![
                (0.0, sessions_connected as f64),
                (elapsed, sessions_connected as f64),
            ],
        )],
    };
    if args.writers > 0 {
        charts.percentiles.push(("batch job".into(), job_hist));
    }
    let json = serde_json::to_value(&report)?;
    emit(
        &args.output,
        "sluice-loadtest ping",
        &summary,
        &charts,
        &json,
    )
}

/// Pings every `period` until `deadline`; a pong not back within 5 s is lost.
async fn pinger(
    mut session: Session,
    period: Duration,
    offset: Duration,
    run_start: Instant,
    deadline: Instant,
) -> PingerOutcome {
    let mut outcome = PingerOutcome::default();
    let mut tick = tokio::time::interval_at(Instant::now() + offset, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut id = 0u64;
    loop {
        tick.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        id += 1;
        outcome.sent += 1;
        let start = Instant::now();
        let ping = format!(r#"{{"type":"ping","id":{id}}}"#);
        if let Err(e) = session.send_text(ping).await {
            outcome.lost += 1;
            *outcome
                .errors
                .entry(format!("ping send: {}", reason(&e)))
                .or_default() += 1;
            break;
        }
        let answered = loop {
            match session.next(Duration::from_secs(5)).await {
                Ok(ServerFrame::Pong { id: got }) if got == id => break Ok(()),
                Ok(_) => continue,
                Err(e) => break Err(e),
            }
        };
        match answered {
            Ok(()) => {
                let us = (start.elapsed().as_micros() as u64).max(1);
                outcome
                    .samples
                    .push(((start - run_start).as_secs_f64(), us));
            }
            Err(e) => {
                outcome.lost += 1;
                *outcome
                    .errors
                    .entry(format!("pong: {}", reason(&e)))
                    .or_default() += 1;
                break;
            }
        }
    }
    outcome
}

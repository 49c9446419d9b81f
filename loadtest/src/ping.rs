//! The `ping` scenario: pong latency, alone or while writers run batches.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;
use sluice_proto::ServerFrame;
use tokio::time::Instant;

use crate::report::{Latency, histogram};
use crate::session::{Session, Target};

/// Arguments of `ping`.
#[derive(Debug, clap::Args)]
pub(crate) struct PingArgs {
    #[command(flatten)]
    target: Target,
    /// Sessions that ping.
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Pings per second per session.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Writer sessions submitting `batch_upsert` jobs back to back.
    #[arg(long, default_value_t = 0)]
    writers: usize,
    /// Rows per batch.
    #[arg(long, default_value_t = 5000)]
    rows: usize,
    /// First `items.id` the writers use (each writer gets its own range).
    #[arg(long, default_value_t = 100_000_000)]
    id_base: i64,
    /// Write the JSON report here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The JSON report of a `ping` run.
#[derive(Debug, Serialize)]
struct PingReport {
    scenario: &'static str,
    sessions: usize,
    connect_errors: u64,
    rate_per_session: f64,
    duration_secs: u64,
    pings_sent: u64,
    pongs: u64,
    lost_pongs: u64,
    pong: Latency,
    writers: usize,
    rows_per_batch: usize,
    jobs_done: u64,
    jobs_failed: u64,
    rows_per_sec: f64,
    job: Latency,
}

#[derive(Default)]
struct PingerOutcome {
    sent: u64,
    lost: u64,
}

#[derive(Default)]
struct WriterOutcome {
    done: u64,
    failed: u64,
    rows: u64,
}

/// Runs the scenario and prints (and optionally writes) the report.
pub(crate) async fn run(args: PingArgs) -> anyhow::Result<()> {
    let target = Arc::new(args.target.clone());
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut connect_errors = 0u64;
    let mut pingers = Vec::with_capacity(args.sessions);
    for i in 0..args.sessions {
        match target.connect(&format!("lt-{run_id}-p{i}")).await {
            Ok(session) => pingers.push(session),
            Err(e) => {
                connect_errors += 1;
                if connect_errors <= 3 {
                    eprintln!("connect failed: {e:#}");
                }
            }
        }
    }
    let mut writers = Vec::with_capacity(args.writers);
    for i in 0..args.writers {
        writers.push(
            target
                .connect(&format!("lt-{run_id}-w{i}"))
                .await
                .context("writer connect")?,
        );
    }
    eprintln!(
        "{} pinging sessions, {} writers; measuring for {} s",
        pingers.len(),
        writers.len(),
        args.duration_secs
    );

    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    let period = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    let ping_tasks: Vec<_> = pingers
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            // Spread the sessions' first pings over one period.
            let offset = period.mul_f64(i as f64 / args.sessions.max(1) as f64);
            tokio::spawn(pinger(s, period, offset, deadline))
        })
        .collect();
    let started = Instant::now();
    let write_tasks: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let first_id = args.id_base + (i as i64) * args.rows as i64;
            tokio::spawn(writer(s, args.rows, first_id, deadline))
        })
        .collect();

    let mut pong_hist = histogram();
    let mut sent = 0;
    let mut lost = 0;
    for task in ping_tasks {
        let (outcome, h) = task.await?;
        sent += outcome.sent;
        lost += outcome.lost;
        pong_hist.add(&h)?;
    }
    let mut job_hist = histogram();
    let mut written = WriterOutcome::default();
    for task in write_tasks {
        let (outcome, h) = task.await?;
        written.done += outcome.done;
        written.failed += outcome.failed;
        written.rows += outcome.rows;
        job_hist.add(&h)?;
    }
    let elapsed = started.elapsed().as_secs_f64();

    let report = PingReport {
        scenario: "ping",
        sessions: args.sessions,
        connect_errors,
        rate_per_session: args.rate,
        duration_secs: args.duration_secs,
        pings_sent: sent,
        pongs: pong_hist.len(),
        lost_pongs: lost,
        pong: Latency::of(&pong_hist),
        writers: args.writers,
        rows_per_batch: args.rows,
        jobs_done: written.done,
        jobs_failed: written.failed,
        rows_per_sec: written.rows as f64 / elapsed,
        job: Latency::of(&job_hist),
    };
    println!("{}", report.pong.line("pong"));
    if args.writers > 0 {
        println!("{}", report.job.line("job"));
        println!(
            "writers: {} jobs done, {} failed, {:.0} rows/s",
            report.jobs_done, report.jobs_failed, report.rows_per_sec
        );
    }
    println!(
        "pings sent {}, pongs {}, lost {}, connect errors {}",
        report.pings_sent, report.pongs, report.lost_pongs, report.connect_errors
    );
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.json {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    } else {
        println!("{json}");
    }
    Ok(())
}

/// Pings every `period` until `deadline`; a pong not back within 5 s is lost.
async fn pinger(
    mut session: Session,
    period: Duration,
    offset: Duration,
    deadline: Instant,
) -> (PingerOutcome, Histogram<u64>) {
    let mut outcome = PingerOutcome::default();
    let mut hist = histogram();
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
        if session
            .send(&json!({ "type": "ping", "id": id }))
            .await
            .is_err()
        {
            outcome.lost += 1;
            break;
        }
        let answered = loop {
            match session.next(Duration::from_secs(5)).await {
                Ok(ServerFrame::Pong { id: got }) if got == id => break true,
                Ok(_) => continue,
                Err(_) => break false,
            }
        };
        if answered {
            let _ = hist.record(start.elapsed().as_micros().max(1) as u64);
        } else {
            outcome.lost += 1;
            break;
        }
    }
    (outcome, hist)
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
        let batch: Vec<_> = (0..rows as i64)
            .map(|i| json!({ "id": first_id + i, "value": format!("r{round}") }))
            .collect();
        let start = Instant::now();
        let submit = json!({
            "type": "submit", "ref": format!("w{round}"),
            "job": { "kind": "batch_upsert", "args": { "table": "items", "key": ["id"], "rows": batch } }
        });
        if session.send(&submit).await.is_err() {
            outcome.failed += 1;
            break;
        }
        let ended = loop {
            match session.next(Duration::from_secs(120)).await {
                Ok(ServerFrame::Event(e)) if e.status.is_terminal() => {
                    break Some(e.status == sluice_proto::EventStatus::Done);
                }
                Ok(ServerFrame::Error { .. }) => break Some(false),
                Ok(_) => continue,
                Err(_) => break None,
            }
        };
        match ended {
            Some(true) => {
                outcome.done += 1;
                outcome.rows += rows as u64;
                let _ = hist.record(start.elapsed().as_micros().max(1) as u64);
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

//! The `hold` scenario: open N idle authenticated sessions at a ramp rate,
//! hold them, then check that each still answers a ping; report the
//! gateway's memory per session.
//!
//! One process holds at most about 19,900 sockets (the open-files hard
//! limit), so `--workers W` re-executes this binary W times as `hold
//! --worker` children, each with N/W sessions and its own source addresses;
//! they report progress and their result as JSON lines on stdout, and the
//! parent merges counts and histograms (HdrHistogram V2, base64).

use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sluice_proto::{OutgoingFrame, ServerFrame};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::report::{
    Charts, Errors, Latency, Machine, Output, decode_histogram, emit, encode_histogram, histogram,
    merge_errors, progress, reason, record, rss_kib,
};
use crate::session::Target;

/// Arguments of `hold`.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub(crate) struct HoldArgs {
    #[command(flatten)]
    target: Target,
    /// Sessions to open and hold.
    #[arg(long, default_value_t = 1000, value_parser = crate::report::count())]
    sessions: usize,
    /// Ramp rate: new sessions per second (over all workers).
    #[arg(long, default_value_t = 500.0, value_parser = crate::report::parse_rate)]
    rate: f64,
    /// How long to hold the sessions once all are open, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(..=crate::report::MAX_SECS))]
    hold_secs: u64,
    /// Bind client sockets across this many loopback source addresses
    /// (127.0.0.<first>.. per process), each with its own port range.
    #[arg(long, default_value_t = 4)]
    source_addrs: u8,
    /// The last octet of the first source address.
    #[arg(long, default_value_t = 1)]
    source_first: u8,
    /// Spread the sessions over this many users (0: one user each).
    #[arg(long, default_value_t = 0, value_parser = crate::report::count())]
    users_shared: usize,
    /// Worker processes to spread the sessions over (each holds N/W).
    #[arg(long, default_value_t = 1, value_parser = crate::report::count())]
    workers: usize,
    /// Gateway process ids whose summed VmRSS to measure.
    #[arg(long, value_delimiter = ',')]
    gateway_pid: Vec<u32>,
    /// Internal: run as a worker of a parent `hold` (JSON lines on stdout).
    #[arg(long, hide = true)]
    worker: bool,
    /// Internal: distinguishes the workers' user names.
    #[arg(long, hide = true, default_value = "")]
    run_id: String,
    #[command(flatten)]
    output: Output,
}

/// What one process measured; workers send it to their parent.
#[derive(Debug, Default, Serialize, Deserialize)]
struct HoldPart {
    requested: u64,
    opened: u64,
    failed: u64,
    dropped_during_hold: u64,
    alive_at_end: u64,
    not_alive_at_end: u64,
    ramp_secs: f64,
    errors: Errors,
    /// Base64 HdrHistogram V2 (µs): connect + hello.
    connect_hist: String,
    /// Base64 HdrHistogram V2 (µs): the final ping's round trip.
    final_ping_hist: String,
}

/// A line a worker writes on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WorkerLine {
    Progress { open: u64, opened: u64, failed: u64 },
    Plateau,
    Result(Box<HoldPart>),
}

#[derive(Debug, Serialize)]
struct HoldReport<'a> {
    scenario: &'static str,
    machine: Machine,
    config: &'a HoldArgs,
    sessions_requested: u64,
    sessions_opened: u64,
    sessions_failed: u64,
    dropped_during_hold: u64,
    alive_at_end: u64,
    not_alive_at_end: u64,
    alive_share: f64,
    ramp_secs: f64,
    hold_secs: u64,
    workers: usize,
    gateway_pids: &'a [u32],
    gateway_rss_baseline_kib: Option<u64>,
    gateway_rss_plateau_kib: Option<u64>,
    gateway_rss_per_session_kib: Option<f64>,
    connect: Latency,
    final_ping: Latency,
    errors: Errors,
    limited_by: Vec<String>,
}

#[derive(Default)]
struct Counters {
    open: AtomicU64,
    opened: AtomicU64,
    failed: AtomicU64,
}

enum SessionEnd {
    Failed,
    Dropped,
    Alive,
    NotAlive,
}

/// Runs the scenario.
pub(crate) async fn run(mut args: HoldArgs) -> anyhow::Result<()> {
    if args.run_id.is_empty() {
        args.run_id = uuid::Uuid::new_v4().simple().to_string();
    }
    if args.worker {
        let part = hold_here(&args, |line| {
            if let Ok(text) = serde_json::to_string(&line) {
                println!("{text}");
            }
        })
        .await?;
        println!(
            "{}",
            serde_json::to_string(&WorkerLine::Result(Box::new(part)))?
        );
        return Ok(());
    }
    let bar = progress(false);
    let start = Instant::now();
    let baseline = (!args.gateway_pid.is_empty()).then(|| rss_kib(&args.gateway_pid));
    let timeline = Arc::new(Mutex::new(vec![(0.0, 0.0)]));
    let plateau_rss = Arc::new(Mutex::new(None));
    let part = if args.workers <= 1 {
        let bar2 = bar.clone();
        let pids = args.gateway_pid.clone();
        let timeline2 = timeline.clone();
        let plateau_rss2 = plateau_rss.clone();
        let total = args.sessions;
        hold_here(&args, move |line| match line {
            WorkerLine::Progress {
                open,
                opened,
                failed,
            } => {
                bar2.set_message(format!(
                    "{open} open ({opened}/{total} opened, {failed} failed)"
                ));
                if let Ok(mut t) = timeline2.lock() {
                    t.push((start.elapsed().as_secs_f64(), open as f64));
                }
            }
            WorkerLine::Plateau => {
                bar2.set_message("plateau: holding");
                if let Ok(mut r) = plateau_rss2.lock() {
                    *r = Some(rss_kib(&pids));
                }
            }
            WorkerLine::Result(_) => {}
        })
        .await?
    } else {
        run_workers(&args, &bar, start, &timeline, &plateau_rss).await?
    };
    bar.finish_and_clear();
    let plateau = if args.gateway_pid.is_empty() {
        None
    } else {
        plateau_rss.lock().ok().and_then(|r| *r)
    };
    let per_session = match (baseline, plateau) {
        (Some(b), Some(p)) if part.opened > 0 => {
            Some(p.saturating_sub(b) as f64 / part.opened as f64)
        }
        _ => None,
    };
    let connect_hist = decode_histogram(&part.connect_hist)?;
    let ping_hist = decode_histogram(&part.final_ping_hist)?;
    let limited_by: Vec<String> = part
        .errors
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} ({n})"))
        .collect();
    let report = HoldReport {
        scenario: "hold",
        machine: Machine::read(),
        config: &args,
        sessions_requested: part.requested,
        sessions_opened: part.opened,
        sessions_failed: part.failed,
        dropped_during_hold: part.dropped_during_hold,
        alive_at_end: part.alive_at_end,
        not_alive_at_end: part.not_alive_at_end,
        alive_share: if part.opened > 0 {
            part.alive_at_end as f64 / part.opened as f64
        } else {
            0.0
        },
        ramp_secs: part.ramp_secs,
        hold_secs: args.hold_secs,
        workers: args.workers.max(1),
        gateway_pids: &args.gateway_pid,
        gateway_rss_baseline_kib: baseline,
        gateway_rss_plateau_kib: plateau,
        gateway_rss_per_session_kib: per_session,
        connect: Latency::of(&connect_hist),
        final_ping: Latency::of(&ping_hist),
        errors: part.errors.clone(),
        limited_by,
    };
    let mut summary = format!(
        "{}\n{}\nhold: {} requested, {} opened, {} failed; held {} s: {} dropped, {} alive at the end ({:.2}%)\nramp {:.1} s over {} worker(s)\n",
        report.connect.line("connect"),
        report.final_ping.line("ping"),
        report.sessions_requested,
        report.sessions_opened,
        report.sessions_failed,
        report.hold_secs,
        report.dropped_during_hold,
        report.alive_at_end,
        report.alive_share * 100.0,
        report.ramp_secs,
        report.workers,
    );
    if let (Some(b), Some(p), Some(per)) = (baseline, plateau, per_session) {
        summary.push_str(&format!(
            "gateway RSS: {b} KiB before, {p} KiB at plateau: {per:.2} KiB per session\n"
        ));
    }
    for (reason, n) in &report.errors {
        summary.push_str(&format!("error: {reason}: {n}\n"));
    }
    let mut sessions_line = timeline.lock().map(|t| t.clone()).unwrap_or_default();
    sessions_line.push((start.elapsed().as_secs_f64(), 0.0));
    let charts = Charts {
        latency_over_time: Vec::new(),
        percentiles: vec![
            ("connect + hello".into(), connect_hist),
            ("final ping".into(), ping_hist),
        ],
        sessions_over_time: vec![("open sessions".into(), sessions_line)],
    };
    let json = serde_json::to_value(&report)?;
    emit(
        &args.output,
        "sluice-loadtest hold",
        &summary,
        &charts,
        &json,
    )
}

/// Spawns the worker processes, follows their progress, merges results.
async fn run_workers(
    args: &HoldArgs,
    bar: &indicatif::ProgressBar,
    start: Instant,
    timeline: &Arc<Mutex<Vec<(f64, f64)>>>,
    plateau_rss: &Arc<Mutex<Option<u64>>>,
) -> anyhow::Result<HoldPart> {
    let w = args.workers;
    let exe = std::env::current_exe().context("finding my own executable")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, WorkerLine)>();
    let mut children = Vec::new();
    for i in 0..w {
        let sessions = args.sessions / w + usize::from(i < args.sessions % w);
        let first = u32::from(args.source_first) + (i as u32) * u32::from(args.source_addrs);
        anyhow::ensure!(
            first + u32::from(args.source_addrs) <= 255,
            "not enough 127.0.0.x source addresses for {w} workers x {}",
            args.source_addrs
        );
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("hold")
            .arg("--worker")
            .args(["--url", &args.target.url])
            .args(["--sessions", &sessions.to_string()])
            .args(["--rate", &(args.rate / w as f64).to_string()])
            .args(["--hold-secs", &args.hold_secs.to_string()])
            .args(["--source-addrs", &args.source_addrs.to_string()])
            .args(["--source-first", &first.to_string()])
            .args(["--users-shared", &args.users_shared.to_string()])
            .args(["--run-id", &format!("{}w{i}", args.run_id)])
            .env("SLUICE_AUTH__JWT_SECRET", &args.target.secret)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting a worker")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(parsed) = serde_json::from_str::<WorkerLine>(&line) {
                    let _ = tx.send((i, parsed));
                }
            }
        });
        children.push(child);
    }
    drop(tx);
    let mut open = vec![0u64; w];
    let mut opened = vec![0u64; w];
    let mut failed = vec![0u64; w];
    let mut at_plateau = vec![false; w];
    let mut results: Vec<Option<HoldPart>> = (0..w).map(|_| None).collect();
    while let Some((i, line)) = rx.recv().await {
        match line {
            WorkerLine::Progress {
                open: o,
                opened: d,
                failed: f,
            } => {
                open[i] = o;
                opened[i] = d;
                failed[i] = f;
                let total_open: u64 = open.iter().sum();
                bar.set_message(format!(
                    "{total_open} open ({}/{} opened, {} failed) over {w} workers",
                    opened.iter().sum::<u64>(),
                    args.sessions,
                    failed.iter().sum::<u64>()
                ));
                if let Ok(mut t) = timeline.lock() {
                    t.push((start.elapsed().as_secs_f64(), total_open as f64));
                }
            }
            WorkerLine::Plateau => {
                at_plateau[i] = true;
                if at_plateau.iter().all(|p| *p) {
                    bar.set_message("all workers at plateau: holding");
                    // Let the last sessions' buffers settle, then measure.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if let Ok(mut r) = plateau_rss.lock() {
                        *r = Some(rss_kib(&args.gateway_pid));
                    }
                }
            }
            WorkerLine::Result(part) => results[i] = Some(*part),
        }
    }
    let mut merged = HoldPart::default();
    let mut connect = histogram();
    let mut ping = histogram();
    for (i, (result, mut child)) in results.into_iter().zip(children).enumerate() {
        let status = child.wait().await?;
        let Some(part) = result else {
            // A worker that died took its sessions with it: count them.
            let requested = (args.sessions / w + usize::from(i < args.sessions % w)) as u64;
            merged.requested += requested;
            merged.failed += requested;
            *merged
                .errors
                .entry(format!("worker {i} exited without a result ({status})"))
                .or_default() += requested;
            continue;
        };
        merged.requested += part.requested;
        merged.opened += part.opened;
        merged.failed += part.failed;
        merged.dropped_during_hold += part.dropped_during_hold;
        merged.alive_at_end += part.alive_at_end;
        merged.not_alive_at_end += part.not_alive_at_end;
        merged.ramp_secs = merged.ramp_secs.max(part.ramp_secs);
        merge_errors(&mut merged.errors, &part.errors);
        connect.add(decode_histogram(&part.connect_hist)?)?;
        ping.add(decode_histogram(&part.final_ping_hist)?)?;
    }
    merged.connect_hist = encode_histogram(&connect)?;
    merged.final_ping_hist = encode_histogram(&ping)?;
    Ok(merged)
}

/// What every session task of one worker shares: counters, error tallies
/// and the two latency histograms.
struct Shared {
    counters: Counters,
    errors: Mutex<Errors>,
    connect_hist: Mutex<hdrhistogram::Histogram<u64>>,
    ping_hist: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Shared {
    fn count(&self, label: String) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(label).or_default() += 1;
        }
    }
}

/// Opens, holds and checks this process's share of the sessions: ramps
/// them up at `rate`, holds them once all are open, then checks each with
/// a final ping and tallies the outcome.
async fn hold_here(
    args: &HoldArgs,
    report: impl Fn(WorkerLine) + Send + Sync + 'static,
) -> anyhow::Result<HoldPart> {
    let report = Arc::new(report);
    let n = args.sessions;
    let shared = Arc::new(Shared {
        counters: Counters::default(),
        errors: Mutex::new(Errors::new()),
        connect_hist: Mutex::new(histogram()),
        ping_hist: Mutex::new(histogram()),
    });
    let (end_tx, end_rx) = watch::channel::<Option<Instant>>(None);
    let target = Arc::new(args.target.clone());
    let sources: Vec<IpAddr> = (0..args.source_addrs.max(1))
        .map(|k| {
            IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                args.source_first.saturating_add(k),
            ))
        })
        .collect();

    let sampler = {
        let shared = shared.clone();
        let report = report.clone();
        tokio::spawn(async move {
            loop {
                report(WorkerLine::Progress {
                    open: shared.counters.open.load(Ordering::Relaxed),
                    opened: shared.counters.opened.load(Ordering::Relaxed),
                    failed: shared.counters.failed.load(Ordering::Relaxed),
                });
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let ramp_start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(ramp_start + period.mul_f64(i as f64)).await;
        let user = if args.users_shared > 0 {
            format!("lt-{}-h{}", args.run_id, i % args.users_shared)
        } else {
            format!("lt-{}-h{i}", args.run_id)
        };
        let source = sources[i % sources.len()];
        tasks.push(tokio::spawn(hold_one(
            target.clone(),
            user,
            source,
            shared.clone(),
            end_rx.clone(),
        )));
    }
    // Plateau: every session has connected or failed (connect and hello
    // are each bounded by 10 s).
    let settle_deadline = Instant::now() + Duration::from_secs(30);
    while shared.counters.opened.load(Ordering::Relaxed)
        + shared.counters.failed.load(Ordering::Relaxed)
        < n as u64
        && Instant::now() < settle_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ramp_secs = ramp_start.elapsed().as_secs_f64();
    report(WorkerLine::Plateau);
    let _ = end_tx.send(Some(Instant::now() + Duration::from_secs(args.hold_secs)));
    let mut part = tally(tasks, &shared, n, ramp_secs).await?;
    sampler.abort();
    report(WorkerLine::Progress {
        open: 0,
        opened: part.opened,
        failed: part.failed,
    });
    part.errors = shared.errors.lock().map(|e| e.clone()).unwrap_or_default();
    Ok(part)
}

/// One session: connect, hold until the end time is known and reached
/// (reading, so the server's heartbeat pings are answered), then one ping.
async fn hold_one(
    target: Arc<Target>,
    user: String,
    source: IpAddr,
    shared: Arc<Shared>,
    mut end_rx: watch::Receiver<Option<Instant>>,
) -> SessionEnd {
    let counters = &shared.counters;
    let t = Instant::now();
    let mut session = match target.connect_from(&user, Some(source)).await {
        Ok(s) => s,
        Err(e) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            shared.count(format!("connect: {}", reason(&e)));
            return SessionEnd::Failed;
        }
    };
    if let Ok(mut h) = shared.connect_hist.lock() {
        record(&mut h, t.elapsed().as_micros());
    }
    counters.opened.fetch_add(1, Ordering::Relaxed);
    counters.open.fetch_add(1, Ordering::Relaxed);
    let end = loop {
        let end = *end_rx.borrow();
        let wait_end = async {
            match end {
                Some(at) => tokio::time::sleep_until(at).await,
                None => {
                    let _ = end_rx.changed().await;
                }
            }
        };
        tokio::select! {
            _ = wait_end => {
                if end.is_some() { break Ok(()); }
            }
            frame = session.next(Duration::from_secs(3600)) => {
                if let Err(e) = frame { break Err(e); }
            }
        }
    };
    if let Err(e) = end {
        counters.open.fetch_sub(1, Ordering::Relaxed);
        shared.count(format!("during hold: {}", reason(&e)));
        return SessionEnd::Dropped;
    }
    let t = Instant::now();
    let answered = async {
        session.send(&OutgoingFrame::Ping { id: 1 }).await?;
        loop {
            if let ServerFrame::Pong { id: 1 } = session.next(Duration::from_secs(10)).await? {
                return anyhow::Ok(());
            }
        }
    }
    .await;
    counters.open.fetch_sub(1, Ordering::Relaxed);
    match answered {
        Ok(()) => {
            if let Ok(mut h) = shared.ping_hist.lock() {
                record(&mut h, t.elapsed().as_micros());
            }
            SessionEnd::Alive
        }
        Err(e) => {
            shared.count(format!("final ping: {}", reason(&e)));
            SessionEnd::NotAlive
        }
    }
}

/// Waits for every session task and counts how each ended.
async fn tally(
    tasks: Vec<tokio::task::JoinHandle<SessionEnd>>,
    shared: &Shared,
    requested: usize,
    ramp_secs: f64,
) -> anyhow::Result<HoldPart> {
    let mut part = HoldPart {
        requested: requested as u64,
        ramp_secs,
        ..HoldPart::default()
    };
    for task in tasks {
        match task.await {
            Ok(SessionEnd::Failed) => part.failed += 1,
            Ok(SessionEnd::Dropped) => {
                part.opened += 1;
                part.dropped_during_hold += 1;
            }
            Ok(SessionEnd::Alive) => {
                part.opened += 1;
                part.alive_at_end += 1;
            }
            Ok(SessionEnd::NotAlive) => {
                part.opened += 1;
                part.not_alive_at_end += 1;
            }
            Err(e) => {
                part.failed += 1;
                shared.count(format!("session task: {e}"));
            }
        }
    }
    let copy = |h: &Mutex<hdrhistogram::Histogram<u64>>| {
        h.lock().map(|h| h.clone()).unwrap_or_else(|_| histogram())
    };
    part.connect_hist = encode_histogram(&copy(&shared.connect_hist))?;
    part.final_ping_hist = encode_histogram(&copy(&shared.ping_hist))?;
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_lines_round_trip() {
        let mut h = histogram();
        h.record(1234).unwrap();
        let part = HoldPart {
            requested: 3,
            opened: 2,
            failed: 1,
            alive_at_end: 2,
            connect_hist: encode_histogram(&h).unwrap(),
            final_ping_hist: encode_histogram(&h).unwrap(),
            ..HoldPart::default()
        };
        let text = serde_json::to_string(&WorkerLine::Result(Box::new(part))).unwrap();
        let WorkerLine::Result(back) = serde_json::from_str(&text).unwrap() else {
            panic!("not a result: {text}");
        };
        assert_eq!(back.opened, 2);
        assert_eq!(decode_histogram(&back.connect_hist).unwrap().len(), 1);
        let p: WorkerLine =
            serde_json::from_str(r#"{"progress":{"open":1,"opened":2,"failed":0}}"#).unwrap();
        assert!(matches!(p, WorkerLine::Progress { opened: 2, .. }));
    }
}

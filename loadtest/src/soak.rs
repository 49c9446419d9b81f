//! `soak`: sessions run jobs for a while as dependencies are restarted on a
//! schedule; afterwards every accepted job must have ended exactly once and
//! every session must have seen every stored event exactly once.
//!
//! Each session submits a short `sleep` job at a fixed interval (the first
//! `--long-jobs` sessions start with a long one, to be caught mid-work by
//! the faults), reconnects
//! (with `resume`) whenever its connection ends, and counts: submissions
//! accepted and refused, terminal events per job (lost: none; duplicated:
//! more than one), and per-session seq continuity (missing seqs, repeated
//! seqs). Faults are shell commands run at given seconds after the start
//! (`--fault "10:bash deploy/services.sh restart-rabbit"`). It exits non-zero
//! when any job was lost or duplicated or any stored event missed or repeated.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use sluice_proto::job::SleepArgs;
use sluice_proto::{EventStatus, JobRequest, OutgoingFrame, ServerFrame};
use tokio::time::Instant;
use uuid::Uuid;

use crate::session::{Session, Target};

/// Arguments of `soak`.
#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    #[command(flatten)]
    target: Target,
    /// Sessions, each its own user.
    #[arg(long, default_value_t = 20, value_parser = crate::report::count())]
    sessions: usize,
    /// How long sessions submit jobs, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(..=crate::report::MAX_SECS))]
    duration_secs: u64,
    /// Pause between one session's submissions (ms).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(..=crate::report::MAX_MS))]
    interval_ms: u64,
    /// Length of each `sleep` job (ms).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(..=crate::report::MAX_MS))]
    job_ms: u64,
    /// Sessions whose first job is a long one (`--long-job-ms`), so that
    /// faults early in the run hit jobs in the middle of their work.
    #[arg(long, default_value_t = 0, value_parser = crate::report::count())]
    long_jobs: usize,
    /// Length of those long jobs (ms); make it longer than each outage.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(..=crate::report::MAX_MS))]
    long_job_ms: u64,
    /// A fault: `SECS:COMMAND`, run with `sh -c` SECS after the start. Repeatable.
    #[arg(long = "fault")]
    faults: Vec<String>,
    /// After the submitting period, how long to wait for accepted jobs to end.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(..=crate::report::MAX_SECS))]
    drain_secs: u64,
    /// Write the JSON report here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One fault as run.
#[derive(Debug, Serialize)]
struct FaultRun {
    at_secs: u64,
    command: String,
    exit_code: Option<i32>,
    took_ms: u64,
}

/// The JSON report of a soak run.
#[derive(Debug, Default, Serialize)]
struct SoakReport {
    scenario: &'static str,
    sessions: usize,
    duration_secs: u64,
    faults: Vec<FaultRun>,
    submitted: u64,
    accepted: u64,
    /// Submissions answered with an `error` (e.g. `unavailable` during an outage), by code.
    refused: BTreeMap<String, u64>,
    /// Submissions whose answer never came because the connection ended.
    unanswered: u64,
    completed: u64,
    failed: u64,
    cancelled: u64,
    /// Accepted jobs with no terminal event by the end of the drain.
    lost: u64,
    /// Accepted jobs with more than one terminal event.
    duplicated: u64,
    /// Stored seqs a session never saw (holes in its stream).
    events_missing: u64,
    /// Stored seqs a session saw twice.
    events_repeated: u64,
    reconnects: u64,
    /// Reconnects answered `resumed: false` (history no longer reached back).
    resume_gaps: u64,
}

#[derive(Default)]
struct SessionTally {
    submitted: u64,
    refused: BTreeMap<String, u64>,
    unanswered: u64,
    accepted: Vec<Uuid>,
    terminal: HashMap<Uuid, Vec<EventStatus>>,
    last_seq: u64,
    missing: u64,
    repeated: u64,
    reconnects: u64,
    resume_gaps: u64,
}

impl SessionTally {
    fn record(&mut self, frame: ServerFrame, awaiting: &mut Option<String>) {
        match frame {
            ServerFrame::Accepted { reference, job_id } => {
                self.accepted.push(job_id);
                if awaiting.as_deref() == Some(reference.as_str()) {
                    *awaiting = None;
                }
            }
            ServerFrame::Error {
                reference: Some(reference),
                code,
                ..
            } => {
                *self.refused.entry(code.as_str().to_owned()).or_default() += 1;
                if awaiting.as_deref() == Some(reference.as_str()) {
                    *awaiting = None;
                }
            }
            ServerFrame::Event(e) if e.seq > 0 => {
                if e.seq <= self.last_seq {
                    self.repeated += 1;
                } else {
                    self.missing += e.seq - self.last_seq - 1;
                    self.last_seq = e.seq;
                }
                if e.status.is_terminal() {
                    self.terminal.entry(e.job_id).or_default().push(e.status);
                }
            }
            _ => {}
        }
    }
}

/// Runs the scenario and prints (and optionally writes) the report.
pub(crate) async fn run(args: SoakArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let submit_until = start + Duration::from_secs(args.duration_secs);
    let drain_until = submit_until + Duration::from_secs(args.drain_secs);
    let mut fault_tasks = Vec::new();
    for fault in &args.faults {
        let (at, command) = fault
            .split_once(':')
            .with_context(|| format!("--fault must be SECS:COMMAND, got {fault}"))?;
        let at: u64 = at
            .trim()
            .parse()
            .with_context(|| format!("bad seconds in {fault}"))?;
        let command = command.to_owned();
        fault_tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start + Duration::from_secs(at)).await;
            eprintln!("[soak] t={at}s running fault: {command}");
            let began = Instant::now();
            let status = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .status()
                .await;
            FaultRun {
                at_secs: at,
                command,
                exit_code: status.ok().and_then(|s| s.code()),
                took_ms: began.elapsed().as_millis() as u64,
            }
        }));
    }
    let run_id = Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::new();
    for i in 0..args.sessions {
        let target = args.target.clone();
        let user = format!("soak-{run_id}-{i}");
        let jobs = Jobs {
            interval: Duration::from_millis(args.interval_ms),
            ms: args.job_ms,
            first_ms: if i < args.long_jobs {
                args.long_job_ms
            } else {
                args.job_ms
            },
        };
        tasks.push(tokio::spawn(async move {
            session_loop(target, user, jobs, submit_until, drain_until).await
        }));
    }

    let mut report = SoakReport {
        scenario: "soak",
        sessions: args.sessions,
        duration_secs: args.duration_secs,
        ..Default::default()
    };
    for task in tasks {
        let tally = task.await?;
        report.submitted += tally.submitted;
        report.accepted += tally.accepted.len() as u64;
        for (code, n) in tally.refused {
            *report.refused.entry(code).or_default() += n;
        }
        report.unanswered += tally.unanswered;
        for job in &tally.accepted {
            match tally.terminal.get(job).map(Vec::as_slice) {
                None | Some([]) => report.lost += 1,
                Some(statuses) => {
                    if statuses.len() > 1 {
                        report.duplicated += 1;
                    }
                    match statuses[0] {
                        EventStatus::Done => report.completed += 1,
                        EventStatus::Failed => report.failed += 1,
                        _ => report.cancelled += 1,
                    }
                }
            }
        }
        report.events_missing += tally.missing;
        report.events_repeated += tally.repeated;
        report.reconnects += tally.reconnects;
        report.resume_gaps += tally.resume_gaps;
    }
    for task in fault_tasks {
        report.faults.push(task.await?);
    }
    println!(
        "soak: {} sessions, {} s; submitted {}, accepted {}, refused {:?}, unanswered {}",
        report.sessions,
        report.duration_secs,
        report.submitted,
        report.accepted,
        report.refused,
        report.unanswered
    );
    println!(
        "jobs: completed {}, failed {}, cancelled {}, LOST {}, DUPLICATED {}; events missing {}, repeated {}; reconnects {}, resume gaps {}",
        report.completed,
        report.failed,
        report.cancelled,
        report.lost,
        report.duplicated,
        report.events_missing,
        report.events_repeated,
        report.reconnects,
        report.resume_gaps
    );
    for f in &report.faults {
        println!(
            "fault at {} s: `{}` exit {:?} in {} ms",
            f.at_secs, f.command, f.exit_code, f.took_ms
        );
    }
    let json = serde_json::to_string_pretty(&report)?;
    match &args.json {
        Some(path) => {
            std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?
        }
        None => println!("{json}"),
    }
    // The soak's verdict is its exit code, so scripts and CI can rely on it.
    let broken = [
        ("accepted jobs lost", report.lost),
        ("jobs with more than one terminal event", report.duplicated),
        ("stored events sessions never saw", report.events_missing),
        ("stored events a session saw twice", report.events_repeated),
    ];
    let failures: Vec<String> = broken
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
    anyhow::ensure!(failures.is_empty(), "soak failed: {}", failures.join(", "));
    Ok(())
}

/// What one session submits.
#[derive(Debug, Clone, Copy)]
struct Jobs {
    /// Pause between submissions.
    interval: Duration,
    /// Length of each `sleep` job (ms).
    ms: u64,
    /// Length of the first one (ms): a long job for some sessions.
    first_ms: u64,
}

/// One session: submit every `jobs.interval` until `submit_until`, then
/// read until every accepted job ended or `drain_until`; reconnect with
/// resume whenever the connection ends.
async fn session_loop(
    target: Target,
    user: String,
    jobs: Jobs,
    submit_until: Instant,
    drain_until: Instant,
) -> SessionTally {
    let mut tally = SessionTally::default();
    let mut session: Option<Session> = None;
    let mut first = true;
    let mut awaiting: Option<String> = None;
    let mut next_submit = Instant::now();
    let mut n = 0u64;
    loop {
        let now = Instant::now();
        let all_ended = tally
            .accepted
            .iter()
            .all(|j| tally.terminal.contains_key(j));
        if now >= drain_until || (now >= submit_until && awaiting.is_none() && all_ended) {
            break;
        }
        let Some(s) = session.as_mut() else {
            let resume = (!first).then_some(tally.last_seq);
            match target.hello_as(&user, None, resume).await {
                Ok((
                    s,
                    ServerFrame::Welcome {
                        resumed, last_seq, ..
                    },
                )) => {
                    if first {
                        tally.last_seq = last_seq;
                    } else {
                        tally.reconnects += 1;
                        if !resumed {
                            tally.resume_gaps += 1;
                        }
                    }
                    first = false;
                    session = Some(s);
                }
                _ => tokio::time::sleep(Duration::from_millis(300)).await,
            }
            continue;
        };
        if awaiting.is_none() && now >= next_submit && now < submit_until {
            n += 1;
            let reference = format!("s{n}");
            let frame = OutgoingFrame::Submit {
                reference: reference.clone(),
                job: JobRequest::Sleep(SleepArgs {
                    ms: if n == 1 { jobs.first_ms } else { jobs.ms },
                }),
            };
            if s.send(&frame).await.is_err() {
                session = None;
                continue;
            }
            tally.submitted += 1;
            awaiting = Some(reference);
            next_submit = now + jobs.interval;
        }
        match s.try_next(Duration::from_millis(100)).await {
            Ok(Some(frame)) => tally.record(frame, &mut awaiting),
            Ok(None) => {}
            Err(_) => {
                // The connection ended: an unanswered submit may or may not
                // have been queued, so it is counted apart, not as lost.
                if awaiting.take().is_some() {
                    tally.unanswered += 1;
                }
                session = None;
            }
        }
    }
    tally
}

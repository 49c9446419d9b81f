//! The `publish` scenario: S sessions (one user each) while a backend
//! publishes to them, over `POST /v1/publish` or with `sluice.publish` in
//! its own transactions, at a fixed rate of user-messages per second.
//! Reports commit-to-socket latency (each message carries the moment its
//! call was sent, so the figure includes the call itself), messages
//! delivered per second, and lost or repeated messages; optional pingers
//! show what publishing costs the other sessions.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;
use sluice_proto::ServerFrame;
use tokio::time::Instant;

use crate::ping::{connect_many, join_pingers, spawn_pingers};
use crate::report::{
    Charts, Errors, Latency, Machine, Output, emit, histogram, merge_errors, progress, reason,
    record,
};
use crate::session::{Session, Target};

/// How a message is published.
#[derive(Debug, Clone, Copy, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Via {
    /// `POST /v1/publish` with a service token.
    Http,
    /// `SELECT sluice.publish(...)` in a transaction of the publisher's own.
    Sql,
}

/// Arguments of `publish`.
#[derive(Debug, clap::Args, Serialize)]
pub(crate) struct PublishArgs {
    #[command(flatten)]
    target: Target,
    /// Connected users (one session each) the messages are spread over.
    #[arg(long, default_value_t = 1000, value_parser = crate::report::count())]
    sessions: usize,
    /// User-messages per second (a call to B users counts B).
    #[arg(long, default_value_t = 1000.0, value_parser = crate::report::parse_rate)]
    rate: f64,
    /// Users per call (HTTP) or per transaction (SQL).
    #[arg(long, default_value_t = 1, value_parser = crate::report::count())]
    batch: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 8, value_parser = crate::report::count())]
    concurrency: usize,
    /// How long to publish.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=crate::report::MAX_SECS))]
    duration_secs: u64,
    /// HTTP or SQL.
    #[arg(long, value_enum, default_value_t = Via::Http)]
    via: Via,
    /// The gateway's HTTP base (default: from `--url`).
    #[arg(long)]
    http_url: Option<String>,
    /// PostgreSQL, for `--via sql` (a role with EXECUTE on sluice.publish).
    #[arg(long, env = "SLUICE_DATABASE__URL", default_value = "")]
    #[serde(skip)]
    database_url: String,
    /// Sessions pinging 10 times a second meanwhile.
    #[arg(long, default_value_t = 0, value_parser = crate::report::count())]
    pingers: usize,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Serialize)]
struct PublishReport<'a> {
    scenario: &'static str,
    machine: Machine,
    config: &'a PublishArgs,
    sessions_connected: usize,
    calls: u64,
    calls_failed: u64,
    messages_published: u64,
    messages_delivered: u64,
    messages_lost: u64,
    messages_repeated: u64,
    delivered_per_sec: f64,
    publish_secs: f64,
    commit_to_socket: Latency,
    call: Latency,
    pongs: u64,
    lost_pongs: u64,
    pong: Latency,
    errors: Errors,
}

/// Microseconds since the epoch: sender and receivers share this clock.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[derive(Default)]
struct ReceiverOutcome {
    delivered: u64,
    repeated: u64,
    latency: Option<Histogram<u64>>,
    errors: Errors,
}

/// Reads one session's messages until `deadline`, or until `stop`.
async fn receiver(
    mut session: Session,
    deadline: Instant,
    delivered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> ReceiverOutcome {
    let mut out = ReceiverOutcome {
        latency: Some(histogram()),
        ..Default::default()
    };
    let mut seen = HashSet::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stop.load(Ordering::Relaxed) {
            break;
        }
        match session.try_next(left.min(Duration::from_millis(100))).await {
            Ok(Some(ServerFrame::Message { seq, data, .. })) => {
                if !seen.insert(seq) {
                    out.repeated += 1;
                    continue;
                }
                out.delivered += 1;
                delivered.fetch_add(1, Ordering::Relaxed);
                if let (Some(sent), Some(h)) = (data["t"].as_u64(), out.latency.as_mut()) {
                    record(h, u128::from(now_us().saturating_sub(sent)));
                }
            }
            Ok(Some(_)) | Ok(None) => {}
            Err(e) => {
                *out.errors
                    .entry(format!("receive: {}", reason(&e)))
                    .or_default() += 1;
                break;
            }
        }
    }
    out
}

/// Publishes one call's worth (the users of `users`) via HTTP or SQL.
enum Publisher {
    Http {
        client: reqwest::Client,
        url: String,
        bearer: String,
    },
    Sql(Vec<tokio::sync::Mutex<tokio_postgres::Client>>),
}

impl Publisher {
    async fn publish(
        &self,
        slot: usize,
        users: &[String],
        data: &serde_json::Value,
    ) -> anyhow::Result<()> {
        match self {
            Publisher::Http {
                client,
                url,
                bearer,
            } => {
                let response = client
                    .post(url)
                    .header("authorization", bearer)
                    .json(&json!({ "users": users, "data": data }))
                    .send()
                    .await?;
                if response.status() != reqwest::StatusCode::ACCEPTED {
                    anyhow::bail!("HTTP {}", response.status());
                }
                Ok(())
            }
            Publisher::Sql(clients) => {
                let mut client = clients[slot % clients.len()].lock().await;
                let tx = client.transaction().await?;
                tx.execute(
                    "SELECT sluice.publish(u, $2::text::jsonb) FROM unnest($1::text[]) AS u",
                    &[&users, &data.to_string()],
                )
                .await?;
                tx.commit().await?;
                Ok(())
            }
        }
    }
}

async fn publisher(args: &PublishArgs, target: &Target) -> anyhow::Result<Publisher> {
    Ok(match args.via {
        Via::Http => {
            let base = match &args.http_url {
                Some(url) => url.trim_end_matches('/').to_owned(),
                None => target
                    .url
                    .replacen("ws://", "http://", 1)
                    .replacen("wss://", "https://", 1)
                    .trim_end_matches("/v1/ws")
                    .to_owned(),
            };
            let token = sluice_proto::mint_with(
                target.secret.as_bytes(),
                "loadtest-publisher",
                86_400,
                sluice_proto::MintOptions {
                    scope: Some(sluice_proto::PUBLISH_SCOPE),
                    ..Default::default()
                },
            )?;
            Publisher::Http {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .pool_max_idle_per_host(args.concurrency)
                    .build()?,
                url: format!("{base}/v1/publish"),
                bearer: format!("Bearer {token}"),
            }
        }
        Via::Sql => {
            let (pg, tls) = sluice_store::tls::connect_config(&args.database_url)?;
            let mut clients = Vec::new();
            for _ in 0..args.concurrency {
                let (client, connection) = pg.connect(tls.clone()).await?;
                tokio::spawn(connection);
                clients.push(tokio::sync::Mutex::new(client));
            }
            Publisher::Sql(clients)
        }
    })
}

/// Runs the scenario and prints (and optionally writes) the report.
pub(crate) async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let bar = progress(false);
    let mut errors = Errors::new();
    bar.set_message("connecting");
    let prefix = format!("lt-{run_id}-u");
    let sessions = connect_many(&args.target, &prefix, args.sessions, 0, &mut errors, &bar).await;
    let pingers = connect_many(
        &args.target,
        &format!("lt-{run_id}-p"),
        args.pingers,
        0,
        &mut errors,
        &bar,
    )
    .await;
    let connected = sessions.len();
    let users: Arc<Vec<String>> =
        Arc::new((0..args.sessions).map(|i| format!("{prefix}{i}")).collect());
    let publisher = Arc::new(publisher(&args, &args.target).await?);

    let start = Instant::now();
    let publish_end = start + Duration::from_secs(args.duration_secs);
    // Receivers drain for a few seconds after the last call.
    let drain_end = publish_end + Duration::from_secs(5);
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let receivers: Vec<_> = sessions
        .into_iter()
        .map(|s| tokio::spawn(receiver(s, drain_end, delivered.clone(), stop.clone())))
        .collect();
    let ping_tasks = spawn_pingers(pingers, 10.0, start, publish_end);

    // One call every `period`, each to the next `batch` users round-robin,
    // at most `concurrency` in flight.
    let batch = args.batch.min(users.len()).max(1);
    let period = Duration::from_secs_f64(batch as f64 / args.rate.max(0.001));
    let slots = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let published = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let call_latency = Arc::new(std::sync::Mutex::new(histogram()));
    let call_errors = Arc::new(std::sync::Mutex::new(Errors::new()));
    let mut calls = 0u64;
    let mut next = start;
    let mut cursor = 0usize;
    let mut in_flight = Vec::new();
    while Instant::now() < publish_end {
        tokio::time::sleep_until(next).await;
        next += period;
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let chosen: Vec<String> = (0..batch)
            .map(|k| users[(cursor + k) % users.len()].clone())
            .collect();
        cursor = (cursor + batch) % users.len();
        calls += 1;
        let slot = calls as usize;
        let (publisher, published_count, failed, call_latency, call_errors) = (
            publisher.clone(),
            published.clone(),
            failed.clone(),
            call_latency.clone(),
            call_errors.clone(),
        );
        in_flight.push(tokio::spawn(async move {
            let sent = Instant::now();
            let data = json!({ "t": now_us() });
            match publisher.publish(slot, &chosen, &data).await {
                Ok(()) => {
                    published_count.fetch_add(chosen.len() as u64, Ordering::Relaxed);
                    if let Ok(mut h) = call_latency.lock() {
                        record(&mut h, sent.elapsed().as_micros());
                    }
                }
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut errors) = call_errors.lock() {
                        *errors
                            .entry(format!("publish: {}", reason(&e)))
                            .or_default() += 1;
                    }
                }
            }
            drop(permit);
        }));
        if calls.is_multiple_of(64) {
            in_flight.retain(|t| !t.is_finished());
            bar.set_message(format!(
                "{} published, {} delivered, {:.1} s",
                published.load(Ordering::Relaxed),
                delivered.load(Ordering::Relaxed),
                start.elapsed().as_secs_f64()
            ));
        }
    }
    for task in in_flight {
        let _ = task.await;
    }
    let publish_secs = start.elapsed().as_secs_f64();
    let (_, lost_pongs, pong_hist, _) = join_pingers(ping_tasks, &mut errors).await;
    let published = published.load(Ordering::Relaxed);
    // Stop waiting once every published message arrived.
    while delivered.load(Ordering::Relaxed) < published && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered_at = start.elapsed().as_secs_f64();
    // A moment for repeats to show, then the receivers stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latency = histogram();
    let (mut total_delivered, mut repeated) = (0, 0);
    for task in receivers {
        if let Ok(out) = task.await {
            total_delivered += out.delivered;
            repeated += out.repeated;
            if let Some(h) = out.latency {
                let _ = latency.add(&h);
            }
            merge_errors(&mut errors, &out.errors);
        }
    }
    bar.finish_and_clear();
    if let Ok(call_errors) = call_errors.lock() {
        merge_errors(&mut errors, &call_errors);
    }
    let call_hist = call_latency
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    let report = PublishReport {
        scenario: "publish",
        machine: Machine::read(),
        config: &args,
        sessions_connected: connected,
        calls,
        calls_failed: failed.load(Ordering::Relaxed),
        messages_published: published,
        messages_delivered: total_delivered,
        messages_lost: published.saturating_sub(total_delivered),
        messages_repeated: repeated,
        delivered_per_sec: total_delivered as f64 / delivered_at.max(publish_secs).max(0.001),
        publish_secs,
        commit_to_socket: Latency::of(&latency),
        call: Latency::of(&call_hist),
        pongs: pong_hist.len(),
        lost_pongs,
        pong: Latency::of(&pong_hist),
        errors,
    };
    let mut summary = format!(
        "{}\n{}\npublish ({:?}, {} users per call): {} calls ({} failed), {} messages published, {} delivered \
         ({:.0}/s), {} lost, {} repeated, to {} sessions\n",
        report.commit_to_socket.line("commit to socket"),
        report.call.line("call"),
        args.via,
        batch,
        report.calls,
        report.calls_failed,
        report.messages_published,
        report.messages_delivered,
        report.delivered_per_sec,
        report.messages_lost,
        report.messages_repeated,
        report.sessions_connected,
    );
    if args.pingers > 0 {
        summary.push_str(&report.pong.line("pong"));
        summary.push_str(&format!(
            "\npongs {}, lost {}\n",
            report.pongs, report.lost_pongs
        ));
    }
    for (reason, n) in &report.errors {
        summary.push_str(&format!("error: {reason}: {n}\n"));
    }
    let mut charts = Charts {
        latency_over_time: Vec::new(),
        percentiles: vec![
            ("commit to socket".into(), latency),
            ("call".into(), call_hist),
        ],
        sessions_over_time: Vec::new(),
    };
    if args.pingers > 0 {
        charts.percentiles.push(("pong".into(), pong_hist));
    }
    let json = serde_json::to_value(&report)?;
    emit(
        &args.output,
        "sluice-loadtest publish",
        &summary,
        &charts,
        &json,
    )
}

//! The `db-baseline` scenario: the writers' upserts straight to PostgreSQL.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::report::{
    Charts, Errors, Latency, Machine, Output, emit, histogram, latency_lines, merge_errors,
    progress, reason, record,
};

/// The statement the runner's `batch_upsert` issues for `items`.
const UPSERT: &str = "INSERT INTO public.items (id, value) \
    SELECT * FROM UNNEST($1::bigint[], $2::text[]) \
    ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value, updated_at = now()";

/// Arguments of `db-baseline`.
#[derive(Debug, clap::Args, Serialize)]
pub(crate) struct DbBaselineArgs {
    /// PostgreSQL URL (the runner's `database.url`).
    #[arg(
        long,
        env = "SLUICE_DATABASE__URL",
        default_value = "postgres://sluice:sluice@127.0.0.1:25432/sluice",
        hide_env_values = true
    )]
    #[serde(skip)]
    database_url: String,
    /// Connections, each upserting batches back to back.
    #[arg(long, default_value_t = 4, value_parser = crate::report::count())]
    connections: usize,
    /// Rows per batch.
    #[arg(long, default_value_t = 5000, value_parser = crate::report::count())]
    rows: usize,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(..=crate::report::MAX_SECS))]
    duration_secs: u64,
    /// First `items.id` used (each connection gets its own range).
    #[arg(long, default_value_t = 200_000_000)]
    id_base: i64,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Serialize)]
struct DbReport<'a> {
    scenario: &'static str,
    machine: Machine,
    config: &'a DbBaselineArgs,
    connections: usize,
    connections_opened: usize,
    rows_per_batch: usize,
    elapsed_secs: f64,
    batches_done: u64,
    batches_failed: u64,
    rows_written: u64,
    rows_per_sec: f64,
    batch: Latency,
    errors: Errors,
}

#[derive(Default)]
struct ConnOutcome {
    done: u64,
    failed: u64,
    samples: Vec<(f64, u64)>,
    errors: Errors,
}

/// Runs the scenario and prints (and optionally writes) the report.
pub(crate) async fn run(args: DbBaselineArgs) -> anyhow::Result<()> {
    let bar = progress(false);
    bar.set_message("connecting to PostgreSQL");
    // TLS as the runner has it: the URL's sslmode and sslrootcert.
    let (pg, tls) = sluice_store::tls::connect_config(&args.database_url)?;
    let mut errors = Errors::new();
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        let connect = tokio::time::timeout(Duration::from_secs(10), pg.connect(tls.clone())).await;
        match connect {
            Ok(Ok((client, connection))) => {
                tokio::spawn(connection);
                clients.push(client);
            }
            Ok(Err(e)) => {
                *errors
                    .entry(format!("connect: {}", reason(&e.into())))
                    .or_default() += 1
            }
            Err(_) => *errors.entry("connect: timed out".into()).or_default() += 1,
        }
    }
    let opened = clients.len();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.duration_secs);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let first = args.id_base + (i as i64) * args.rows as i64;
            let rows = args.rows;
            tokio::spawn(async move {
                let mut out = ConnOutcome::default();
                let statement = match client.prepare(UPSERT).await {
                    Ok(s) => s,
                    Err(e) => {
                        out.failed += 1;
                        *out.errors
                            .entry(format!("prepare: {}", reason(&e.into())))
                            .or_default() += 1;
                        return out;
                    }
                };
                let ids: Vec<i64> = (first..first + rows as i64).collect();
                let mut round = 0u64;
                while Instant::now() < deadline {
                    round += 1;
                    let values: Vec<String> = (0..rows).map(|_| format!("b{round}")).collect();
                    let t = Instant::now();
                    let result = tokio::time::timeout(
                        Duration::from_secs(60),
                        client.execute(&statement, &[&ids, &values]),
                    )
                    .await;
                    match result {
                        Ok(Ok(_)) => {
                            out.done += 1;
                            out.samples
                                .push(((t - start).as_secs_f64(), t.elapsed().as_micros() as u64));
                        }
                        Ok(Err(e)) => {
                            out.failed += 1;
                            *out.errors
                                .entry(format!("upsert: {}", reason(&e.into())))
                                .or_default() += 1;
                            if client.is_closed() {
                                // A bare client does not reconnect: stop
                                // rather than count the same failure forever.
                                break;
                            }
                        }
                        Err(_) => {
                            out.failed += 1;
                            *out.errors.entry("upsert: timed out".into()).or_default() += 1;
                            break;
                        }
                    }
                }
                out
            })
        })
        .collect();
    let ticker = {
        let bar = bar.clone();
        let total = args.duration_secs;
        tokio::spawn(async move {
            loop {
                bar.set_message(format!(
                    "{opened} connections upserting: {}/{total} s",
                    start.elapsed().as_secs()
                ));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let mut hist = histogram();
    let (mut done, mut failed) = (0, 0);
    let mut samples = Vec::new();
    for task in tasks {
        match task.await {
            Ok(out) => {
                done += out.done;
                failed += out.failed;
                for &(_, us) in &out.samples {
                    record(&mut hist, us.into());
                }
                samples.extend(out.samples);
                merge_errors(&mut errors, &out.errors);
            }
            Err(e) => *errors.entry(format!("task: {e}")).or_default() += 1,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    ticker.abort();
    bar.finish_and_clear();
    let rows_written = done * args.rows as u64;
    let report = DbReport {
        scenario: "db-baseline",
        machine: Machine::read(),
        config: &args,
        connections: args.connections,
        connections_opened: opened,
        rows_per_batch: args.rows,
        elapsed_secs: elapsed,
        batches_done: done,
        batches_failed: failed,
        rows_written,
        rows_per_sec: rows_written as f64 / elapsed,
        batch: Latency::of(&hist),
        errors,
    };
    let mut summary = format!(
        "{}\ndb-baseline: {} connections, {} batches of {} rows done, {} failed, {:.0} rows/s\n",
        report.batch.line("batch"),
        report.connections_opened,
        report.batches_done,
        report.rows_per_batch,
        report.batches_failed,
        report.rows_per_sec
    );
    for (reason, n) in &report.errors {
        summary.push_str(&format!("error: {reason}: {n}\n"));
    }
    let charts = Charts {
        latency_over_time: latency_lines("batch", &samples),
        percentiles: vec![("batch".into(), hist)],
        sessions_over_time: vec![(
            "connections".into(),
            vec![(0.0, opened as f64), (elapsed, opened as f64)],
        )],
    };
    let json = serde_json::to_value(&report)?;
    emit(
        &args.output,
        "sluice-loadtest db-baseline",
        &summary,
        &charts,
        &json,
    )
}

//! A short smoke run of every `sluice-loadtest` subcommand against the real
//! system: the JSON must be well-formed and the counts must add up. No
//! timing assertions.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use sluice_tests::system::{bin_dir, database_url};
use sluice_tests::{System, SystemOptions, TEST_SECRET};

/// Runs `sluice-loadtest <args> --json F --html H` and returns the JSON.
fn loadtest(name: &str, args: &[&str]) -> Value {
    let dir =
        std::env::temp_dir().join(format!("loadtest-smoke-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp folder");
    let json: PathBuf = dir.join(format!("{name}.json"));
    let html: PathBuf = dir.join(format!("{name}.html"));
    let output = Command::new(bin_dir().join("sluice-loadtest"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .env("SLUICE_AUTH__JWT_SECRET", TEST_SECRET)
        .env("SLUICE_DATABASE__URL", database_url())
        .output()
        .expect("running sluice-loadtest (cargo build --workspace --bins)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "sluice-loadtest {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("JSON report written");
    let value: Value = serde_json::from_str(&text).expect("JSON report is well-formed");
    let page = std::fs::read_to_string(&html).expect("HTML report written");
    assert!(page.contains("<svg"), "HTML report has charts");
    assert!(page.starts_with("<!doctype html>"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        value["machine"]["cores"].as_u64().unwrap_or(0) >= 1,
        "{value}"
    );
    assert!(value["config"].is_object(), "{value}");
    value
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing or not a count in {v}"))
}

fn latency_ok(v: &Value, key: &str) {
    let l = &v[key];
    for p in ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"] {
        assert!(l[p].as_f64().is_some(), "{key}.{p} missing in {v}");
    }
    assert!(l["p50_ms"].as_f64() <= l["max_ms"].as_f64(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_runs_and_its_counts_add_up() {
    let system = System::start(SystemOptions::default()).await;
    let url = system.ws_url();

    // ping: 20 sessions over 5 shared users for 3 s, one writer of 500 rows.
    let ping = loadtest(
        "ping",
        &[
            "ping",
            "--url",
            &url,
            "--sessions",
            "20",
            "--users-shared",
            "5",
            "--rate",
            "10",
            "--duration-secs",
            "3",
            "--writers",
            "1",
            "--rows",
            "500",
        ],
    );
    assert_eq!(ping["scenario"], "ping");
    latency_ok(&ping, "pong");
    latency_ok(&ping, "job");
    assert_eq!(
        n(&ping, "sessions_connected") + n(&ping, "connect_errors"),
        20,
        "{ping}"
    );
    assert_eq!(
        n(&ping, "pongs") + n(&ping, "lost_pongs"),
        n(&ping, "pings_sent"),
        "{ping}"
    );
    assert!(n(&ping, "pings_sent") > 0, "{ping}");
    assert_eq!(n(&ping["pong"], "count"), n(&ping, "pongs"), "{ping}");
    let jobs = n(&ping, "jobs_submitted");
    assert!(jobs >= 1, "{ping}");
    // A writer stops at the deadline after its last job ends, so every
    // submitted job is either done or failed.
    assert_eq!(
        n(&ping, "jobs_done") + n(&ping, "jobs_failed"),
        jobs,
        "{ping}"
    );
    assert_eq!(
        n(&ping, "rows_written"),
        n(&ping, "jobs_done") * 500,
        "{ping}"
    );

    // hold: 50 sessions over 2 worker processes, held 2 s.
    let hold = loadtest(
        "hold",
        &[
            "hold",
            "--url",
            &url,
            "--sessions",
            "50",
            "--rate",
            "200",
            "--hold-secs",
            "2",
            "--workers",
            "2",
            "--source-addrs",
            "2",
        ],
    );
    assert_eq!(hold["scenario"], "hold");
    latency_ok(&hold, "connect");
    latency_ok(&hold, "final_ping");
    assert_eq!(n(&hold, "sessions_requested"), 50, "{hold}");
    assert_eq!(
        n(&hold, "sessions_opened"),
        n(&hold, "sessions_requested") - n(&hold, "sessions_failed"),
        "{hold}"
    );
    assert_eq!(
        n(&hold, "alive_at_end") + n(&hold, "not_alive_at_end") + n(&hold, "dropped_during_hold"),
        n(&hold, "sessions_opened"),
        "{hold}"
    );
    assert_eq!(
        n(&hold["connect"], "count"),
        n(&hold, "sessions_opened"),
        "{hold}"
    );
    assert_eq!(
        n(&hold["final_ping"], "count"),
        n(&hold, "alive_at_end"),
        "{hold}"
    );
    let failures: u64 = hold["errors"]
        .as_object()
        .expect("errors object")
        .values()
        .map(|v| v.as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        failures,
        n(&hold, "sessions_failed")
            + n(&hold, "not_alive_at_end")
            + n(&hold, "dropped_during_hold"),
        "every failure is counted by reason: {hold}"
    );

    // sleep: 5 jobs of 200 ms from 2 sessions, with 2 pingers meanwhile.
    let sleep = loadtest(
        "sleep",
        &[
            "sleep",
            "--url",
            &url,
            "--jobs",
            "5",
            "--ms",
            "200",
            "--sessions",
            "2",
            "--pingers",
            "2",
            "--timeout-secs",
            "30",
        ],
    );
    assert_eq!(sleep["scenario"], "sleep");
    latency_ok(&sleep, "job");
    assert_eq!(n(&sleep, "jobs_submitted"), 5, "{sleep}");
    assert_eq!(n(&sleep, "jobs_done"), 5, "{sleep}");
    assert_eq!(
        n(&sleep, "jobs_done")
            + n(&sleep, "jobs_failed")
            + n(&sleep, "jobs_refused")
            + n(&sleep, "jobs_unfinished"),
        n(&sleep, "jobs_submitted"),
        "{sleep}"
    );
    assert_eq!(n(&sleep["job"], "count"), 5, "{sleep}");
    assert_eq!(
        n(&sleep, "pongs") + n(&sleep, "lost_pongs"),
        n(&sleep, "pings_sent"),
        "{sleep}"
    );

    // db-baseline: 2 connections of 500-row batches for 2 s.
    let db = loadtest(
        "db",
        &[
            "db-baseline",
            "--connections",
            "2",
            "--rows",
            "500",
            "--duration-secs",
            "2",
        ],
    );
    assert_eq!(db["scenario"], "db-baseline");
    latency_ok(&db, "batch");
    assert_eq!(n(&db, "connections_opened"), 2, "{db}");
    assert!(n(&db, "batches_done") >= 1, "{db}");
    assert_eq!(n(&db, "batches_failed"), 0, "{db}");
    assert_eq!(n(&db, "rows_written"), n(&db, "batches_done") * 500, "{db}");
    assert_eq!(n(&db["batch"], "count"), n(&db, "batches_done"), "{db}");
}

//! The soak: 60 s of jobs from 20 sessions while RabbitMQ is killed and
//! restarted, PostgreSQL is restarted (immediate) and the runner is killed
//! and restarted. Four sessions start with a 30 s job, longer than the
//! broker outage, so the broker's SIGKILL at 12 s lands in the middle of
//! their work (and the later faults most likely too). Nothing accepted is
//! lost or duplicated, and no session misses or repeats an event.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use sluice_tests::system::{RestoreServices, bin_dir};
use sluice_tests::{System, SystemOptions, TEST_SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_seconds_with_one_restart_of_each_service_loses_and_repeats_nothing() {
    // Kills the runner process with SIGKILL.
    let mut system = System::start(SystemOptions::default().processes()).await;
    let _restore = RestoreServices;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/services.sh");
    let report = system.logs().join("soak.json");
    let mut soak = tokio::process::Command::new(bin_dir().join("sluice-loadtest"))
        .args([
            "soak",
            "--url",
            &system.ws_url(),
            "--sessions",
            "20",
            "--duration-secs",
            "60",
        ])
        .args([
            "--interval-ms",
            "500",
            "--job-ms",
            "200",
            "--drain-secs",
            "90",
            "--long-jobs",
            "4",
            "--long-job-ms",
            "30000",
        ])
        .arg("--fault")
        .arg(format!(
            "12:bash {script} kill-rabbit && bash {script} start-rabbit"
        ))
        .arg("--fault")
        .arg(format!("30:bash {script} restart-pg immediate"))
        .arg("--json")
        .arg(&report)
        .env("SLUICE_AUTH__JWT_SECRET", TEST_SECRET)
        .stdin(Stdio::null())
        .spawn()
        .expect("starting sluice-loadtest (built by cargo build --workspace --bins)");

    // The runner: killed (SIGKILL) and restarted 45 s in.
    tokio::time::sleep(Duration::from_secs(45)).await;
    system.kill_runner();
    tokio::time::sleep(Duration::from_secs(1)).await;
    system.start_runner();

    let status = tokio::time::timeout(Duration::from_secs(240), soak.wait())
        .await
        .expect("the soak did not finish")
        .unwrap();
    assert!(
        status.success(),
        "sluice-loadtest soak exited with {status}"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    eprintln!("{report:#}");
    for fault in report["faults"].as_array().unwrap() {
        assert_eq!(fault["exit_code"], 0, "fault command failed: {fault}");
    }
    let n = |key: &str| {
        report[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} missing"))
    };
    assert!(n("accepted") > 100, "too few jobs to judge: {report}");
    assert_eq!(n("lost"), 0, "accepted jobs lost");
    assert_eq!(n("duplicated"), 0, "jobs with two terminal events");
    assert_eq!(n("events_missing"), 0, "sessions missed stored events");
    assert_eq!(n("events_repeated"), 0, "sessions saw a stored event twice");
    assert_eq!(n("completed") + n("failed") + n("cancelled"), n("accepted"));
}

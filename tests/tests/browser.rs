//! The browser client and the demo page in headless Chromium, against the
//! real gateway (dev mode, behind nginx), runner, PostgreSQL and RabbitMQ.
//!
//! The browser side is `proto/js/e2e/demo.e2e.mjs` and `refresh.e2e.mjs`
//! (playwright-core driving Debian's `/usr/bin/chromium`). `deploy/test.sh` installs Chromium and runs
//! `npm ci` in `proto/js`; without them these tests fail, saying so.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sluice_tests::{System, SystemOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/js")
}

fn require_browser_tooling() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: `apt-get install -y chromium` (deploy/test.sh does)"
    );
    assert!(
        js_dir().join("node_modules/playwright-core").exists(),
        "proto/js/node_modules is missing: run `npm ci` in proto/js (deploy/test.sh does)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page_runs_jobs_and_survives_a_gateway_restart() {
    require_browser_tooling();
    // Restarts the gateway process with SIGTERM.
    let mut system = System::start(
        SystemOptions {
            nginx: true,
            processes: true,
            ..Default::default()
        }
        .gateway("SLUICE_GATEWAY__DEV_MODE", "true")
        .gateway("SLUICE_GATEWAY__DRAIN_SPREAD_MS", 300)
        .gateway("SLUICE_GATEWAY__DRAIN_GRACE_MS", 5000),
    )
    .await;
    let url = format!("http://127.0.0.1:{}/demo", system.nginx_port());
    let screenshot = system.logs().join("demo-page.png");
    let first_id: i64 = 1_000_000_000 + i64::from(rand_u16()) * 10_000;

    let mut child = tokio::process::Command::new("node")
        .arg("e2e/demo.e2e.mjs")
        .current_dir(js_dir())
        .env("DEMO_URL", &url)
        .env("SCREENSHOT", &screenshot)
        .env("FIRST_ID", first_id.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("running node (Node.js 20 is on the machine)");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut result = None;
    let mut restart = None;

    let run = async {
        while let Some(line) = lines.next_line().await.expect("reading the script") {
            eprintln!("[demo.e2e] {line}");
            if line == "RESTART" {
                let started = Instant::now();
                system.restart_gateway(0).await;
                restart = Some(started.elapsed());
                stdin
                    .write_all(b"RESTARTED\n")
                    .await
                    .expect("answering the script");
                stdin.flush().await.expect("answering the script");
            } else if let Some(user) = line.strip_prefix("PUBLISH ") {
                let response = reqwest::Client::new()
                    .post(system.http_url("/v1/publish"))
                    .header(
                        "authorization",
                        format!("Bearer {}", sluice_tests::service_token("demo-backend")),
                    )
                    .json(&serde_json::json!({
                        "users": [user],
                        "data": {"text": "hello from the backend"},
                    }))
                    .send()
                    .await
                    .expect("publishing to the page's user");
                assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
                stdin
                    .write_all(
                        b"PUBLISHED
",
                    )
                    .await
                    .expect("answering the script");
                stdin.flush().await.expect("answering the script");
            } else if let Some(json) = line.strip_prefix("RESULT ") {
                result =
                    Some(serde_json::from_str::<serde_json::Value>(json).expect("RESULT json"));
            }
        }
        child.wait().await.expect("waiting for node")
    };
    let status = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser test finished within 240 s");
    assert!(
        status.success(),
        "demo.e2e.mjs failed ({status}); logs in {}",
        system.logs().display()
    );
    let result = result.expect("the script printed RESULT");
    let restart = restart.expect("the gateway was restarted");
    assert!(screenshot.exists(), "{} was saved", screenshot.display());
    eprintln!(
        "browser e2e: screenshot {}; gateway restart (SIGTERM, drain, start, ready) {:.0} ms; \
         page reconnect-and-resume {} ms; {} jobs, {} terminal events",
        screenshot.display(),
        restart.as_secs_f64() * 1000.0,
        result["resumeMs"],
        result["jobs"],
        result["terminalEvents"],
    );
    assert_eq!(result["jobs"], result["terminalEvents"]);

    // The 10,000 rows really are in the table.
    let db = sluice_tests::system::db().await;
    let rows: i64 = db
        .query_one(
            "SELECT count(*) FROM items WHERE id >= $1 AND id < $1 + 10000",
            &[&first_id],
        )
        .await
        .expect("counting rows")
        .get(0);
    assert_eq!(rows, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_client_refreshes_its_token_and_recovers_from_4001() {
    require_browser_tooling();
    let system =
        System::start(SystemOptions::default().gateway("SLUICE_GATEWAY__DEV_MODE", "true")).await;
    let output = tokio::process::Command::new("node")
        .arg("e2e/refresh.e2e.mjs")
        .current_dir(js_dir())
        .env("DEMO_URL", system.http_url("/demo/"))
        .env("TOKEN_TTL", "4")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), output)
        .await
        .expect("the browser test finished within 180 s")
        .expect("running node (Node.js 20 is on the machine)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        eprintln!("[refresh.e2e] {line}");
    }
    assert!(output.status.success(), "refresh.e2e.mjs failed");
    let result: serde_json::Value = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .map(|json| serde_json::from_str(json).expect("RESULT json"))
        .expect("the script printed RESULT");
    assert!(result["refreshedTokens"].as_u64() >= Some(3), "{result}");

    // The gateway's side of it: the session without a fresh token was
    // closed with 4001, and no session with anything else.
    let metrics = reqwest::get(system.http_url("/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let closed_with = |code: &str| {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("sluice_sessions_closed_total{")
                    && l.contains(&format!("code=\"{code}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert_eq!(closed_with("4001"), 1.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_routes_exist_only_in_dev_mode() {
    let off = System::start(SystemOptions::default()).await;
    for path in ["/demo", "/demo/", "/demo/sluice-client.js"] {
        assert_eq!(
            off.http_status(path).await,
            Some(404),
            "{path} without dev mode"
        );
    }
    let client = reqwest::Client::new();
    let token = client
        .post(off.http_url("/v1/dev/token"))
        .json(&serde_json::json!({ "user": "x" }))
        .send()
        .await
        .expect("POST");
    assert_eq!(token.status(), 404);
    drop(off);

    let on =
        System::start(SystemOptions::default().gateway("SLUICE_GATEWAY__DEV_MODE", "true")).await;
    assert_eq!(on.http_status("/demo").await, Some(308));
    for path in ["/demo/", "/demo/app.js", "/demo/sluice-client.js"] {
        assert_eq!(on.http_status(path).await, Some(200), "{path} in dev mode");
    }
    let answer: serde_json::Value = client
        .post(on.http_url("/v1/dev/token"))
        .json(&serde_json::json!({ "user": "dev-alice" }))
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("json");
    let jwt = answer["token"].as_str().expect("a token");
    // The token works on the WebSocket.
    let (_client, welcome) = sluice_tests::Client::hello(&on.ws_url(), jwt).await;
    match welcome {
        sluice_proto::ServerFrame::Welcome { user, .. } => assert_eq!(user, "dev-alice"),
        other => panic!("{other:?}"),
    }
    let bad = client
        .post(on.http_url("/v1/dev/token"))
        .json(&serde_json::json!({ "user": "" }))
        .send()
        .await
        .expect("POST");
    assert_eq!(bad.status(), 400);
}

fn rand_u16() -> u16 {
    (uuid::Uuid::new_v4().as_u128() & 0xffff) as u16
}

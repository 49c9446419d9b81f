//! Kinds declared as SQL in the runner's configuration file: typed named
//! parameters bound (never spliced), statements in the job's transaction
//! scoped to the submitting user, rows or a count as the result, chunks
//! with progress, time limits; and a bad declaration stops the runner with
//! one line naming the kind and the database's complaint.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_proto::{ErrorCode, EventStatus, ServerFrame};
use sluice_tests::system::{binary, db, runner_amqp_url, runner_database_url};
use sluice_tests::{Client, System, SystemOptions, token, unique_user};

const KINDS: &str = r#"
[kinds.archive_orders]
description = "Archives the submitting user's orders of one customer"
statements = [
  "UPDATE public.sluice_test_orders SET archived = true WHERE owner = :user_id AND customer = :customer AND NOT archived",
]
max_attempts = 2
[kinds.archive_orders.params]
customer = { type = "int8", description = "the customer" }

[kinds.order_totals]
description = "Totals of the submitting user's orders, by customer"
statements = [
  "SELECT customer, sum(total) AS total FROM public.sluice_test_orders WHERE owner = :user_id GROUP BY customer ORDER BY customer",
]
result_rows = 2

[kinds.reprice]
description = "Multiplies the totals of some orders, two at a time"
statements = [
  "UPDATE public.sluice_test_orders SET total = total * :factor, note = :note WHERE owner = :user_id AND id = ANY(:ids)",
]
chunk = { param = "ids", size = 2 }
[kinds.reprice.params]
ids = { type = "int8[]" }
factor = { type = "numeric" }
note = { type = "text", optional = true }

[kinds.slow_sql]
description = "Sleeps in SQL"
statements = ["SELECT pg_sleep(:seconds)"]
timeout_ms = 400
[kinds.slow_sql.params]
seconds = { type = "float8" }
"#;

async fn orders_table() {
    db().await
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS public.sluice_test_orders (
                 id bigint PRIMARY KEY,
                 owner text NOT NULL,
                 customer bigint NOT NULL,
                 total numeric NOT NULL,
                 archived boolean NOT NULL DEFAULT false,
                 note text
             );
             GRANT SELECT, UPDATE ON public.sluice_test_orders TO sluice_runner",
        )
        .await
        .expect("creating public.sluice_test_orders");
}

/// Gives `owner` orders `first..first+n` of `customer`, each totalling 10.
async fn orders(owner: &str, first: i64, n: i64, customer: i64) {
    db().await
        .execute(
            "INSERT INTO public.sluice_test_orders (id, owner, customer, total)
             SELECT g, $1, $3, 10 FROM generate_series($2::int8, $2::int8 + $4 - 1) g",
            &[&owner, &first, &customer, &n],
        )
        .await
        .unwrap();
}

fn id_base() -> i64 {
    // Distinct per test run: ids are the table's key.
    (uuid::Uuid::new_v4().as_u128() % 1_000_000_000) as i64 * 1_000
}

async fn run(client: &mut Client, kind: &str, args: Value) -> Vec<sluice_proto::EventFrame> {
    let job = client.submit(kind, kind, args).await;
    client.events_until_terminal(job).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_sql_kinds_run_scoped_to_the_user_with_bound_parameters() {
    orders_table().await;
    let system = System::start(SystemOptions::default().runner_file(KINDS)).await;
    let ada = unique_user("sql-ada");
    let bob = unique_user("sql-bob");
    let base = id_base();
    orders(&ada, base, 2, 7).await;
    orders(&ada, base + 2, 1, 8).await;
    orders(&ada, base + 3, 1, 9).await;
    orders(&bob, base + 10, 3, 7).await;

    // Listed, with a schema from the declared types.
    let archive = system.kind(&ada, "archive_orders").await;
    assert_eq!(archive["args_schema"]["required"], json!(["customer"]));
    assert_eq!(
        archive["args_schema"]["properties"]["customer"]["type"],
        "integer"
    );

    let (mut client, _) = Client::hello(&system.ws_url(), &token(&ada)).await;

    // The count of affected rows; only the submitting user's rows.
    let events = run(&mut client, "archive_orders", json!({"customer": 7})).await;
    let done = events.last().unwrap();
    assert_eq!(done.status, EventStatus::Done, "{done:?}");
    assert_eq!(done.result, Some(json!({"affected": 2})));
    let archived: Vec<(String, i64)> = db()
        .await
        .query(
            "SELECT owner, count(*) FROM public.sluice_test_orders
             WHERE id >= $1 AND id < $1 + 1000 AND archived GROUP BY owner",
            &[&base],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(archived, [(ada.clone(), 2)], "bob's orders are not ada's");

    // Rows as JSON, bounded by result_rows.
    let events = run(&mut client, "order_totals", json!({})).await;
    let done = events.last().unwrap();
    assert_eq!(
        done.result,
        Some(
            json!({"rows": [{"customer": 7, "total": 20}, {"customer": 8, "total": 10}], "truncated": true})
        )
    );

    // Chunks of two, progress after each, one transaction; a hostile text
    // parameter is stored as it was sent.
    let hostile = "x'); DROP TABLE public.sluice_test_orders; --";
    let ids: Vec<i64> = (base..base + 4).chain([base + 10]).collect();
    let events = run(
        &mut client,
        "reprice",
        json!({"ids": ids, "factor": 1.5, "note": hostile}),
    )
    .await;
    let progress: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| e.progress.map(|p| (p.done, p.total)))
        .collect();
    assert_eq!(progress, [(1, 3), (2, 3), (3, 3)]);
    assert_eq!(events.last().unwrap().result, Some(json!({"affected": 4})));
    let notes: Vec<(String, Option<String>, String)> = db()
        .await
        .query(
            "SELECT owner, note, total::text FROM public.sluice_test_orders
             WHERE id = ANY($1) ORDER BY id",
            &[&ids],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(notes.len(), 5);
    for (owner, note, total) in &notes {
        if *owner == ada {
            assert_eq!((note.as_deref(), total.as_str()), (Some(hostile), "15.0"));
        } else {
            assert_eq!(
                (note.as_deref(), total.as_str()),
                (None, "10"),
                "bob's order untouched"
            );
        }
    }

    // Args checked against the declared types before anything is recorded.
    client
        .send(json!({"type": "submit", "ref": "bad", "job": {"kind": "archive_orders", "args": {"customer": "seven"}}}))
        .await;
    match client.next_frame().await {
        ServerFrame::Error { code, message, .. } => {
            assert_eq!(code, ErrorCode::BadArgs);
            assert!(message.contains("args/customer"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    // The declared time limit cancels the query on the server.
    let events = run(&mut client, "slow_sql", json!({"seconds": 30})).await;
    let failed = events.last().unwrap();
    assert_eq!(failed.status, EventStatus::Failed);
    assert_eq!(failed.error.as_ref().unwrap().code, ErrorCode::Timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declaration_the_database_refuses_stops_the_runner_naming_the_kind() {
    let dir = std::env::temp_dir().join(format!("sluice-sql-kinds-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("runner.toml");
    std::fs::write(
        &file,
        r#"
[kinds.broken]
description = "reads a table that is not there"
statements = ["SELECT * FROM public.no_such_table WHERE id = :id"]
[kinds.broken.params]
id = { type = "int8" }
"#,
    )
    .unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(binary("sluice-jobs"))
            .env("SLUICE_CONFIG", &file)
            .env(
                "SLUICE_AMQP__PREFIX",
                format!("bad{}", uuid::Uuid::new_v4().simple()),
            )
            .env("SLUICE_AMQP__URL", runner_amqp_url())
            .env("SLUICE_DATABASE__URL", runner_database_url())
            .env("SLUICE_RUNNER__METRICS_LISTEN", "")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("the runner stops on its own")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("kinds.broken"))
        .unwrap_or_else(|| panic!("no line names the kind: {stderr}"));
    assert!(line.contains("statement 1"), "{line}");
    assert!(line.contains("no_such_table"), "{line}");
    let _ = std::fs::remove_dir_all(dir);

    // Refused before the database is asked: an unknown placeholder.
    let checked = std::process::Command::new(binary("sluice-jobs"))
        .env("SLUICE_KINDS__BROKEN__DESCRIPTION", "d")
        .env("SLUICE_KINDS__BROKEN__STATEMENTS", "[\"SELECT :nope\"]")
        .env_remove("SLUICE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!checked.status.success());
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(
        stderr.contains("kinds.broken: statement 1: unknown parameter :nope"),
        "{stderr}"
    );
}

/// `proto/js/scripts/kinds-to-ts.mjs` turns a live `GET /v1/kinds` into
/// TypeScript that the compiler then holds submissions to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_generator_types_a_live_deployments_kinds() {
    orders_table().await;
    let system = System::start(SystemOptions::default().runner_file(KINDS)).await;
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/js");
    let out = tokio::process::Command::new("node")
        .arg(js.join("scripts/kinds-to-ts.mjs"))
        .arg(system.http_url("/v1/kinds"))
        .args(["--token", &token(&unique_user("ts"))])
        .output()
        .await
        .expect("running node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kinds = String::from_utf8(out.stdout).unwrap();
    assert!(
        kinds.contains("export interface DeploymentKinds"),
        "{kinds}"
    );
    assert!(kinds.contains("archive_orders:"), "{kinds}");

    let dir = std::env::temp_dir().join(format!("sluice-ts-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("kinds.ts"), &kinds).unwrap();
    let client = js.join("src/sluice-client.ts");
    let compile = |body: &str| {
        let usage = format!(
            "import {{ SluiceClient }} from {client:?};\nimport type {{ DeploymentKinds }} from \"./kinds\";\n\
             declare const c: SluiceClient<DeploymentKinds>;\n{body}\n"
        );
        std::fs::write(dir.join("usage.ts"), usage).unwrap();
        std::process::Command::new(js.join("node_modules/.bin/tsc"))
            .args([
                "--noEmit", "--strict", "--target", "es2022", "--module", "es2022",
            ])
            .args([
                "--moduleResolution",
                "bundler",
                "--allowImportingTsExtensions",
            ])
            .arg(dir.join("usage.ts"))
            .output()
            .expect("running tsc")
    };
    let good = compile(
        "void c.submit({ kind: \"archive_orders\", args: { customer: 7 } });\n\
         void c.submit({ kind: \"reprice\", args: { ids: [1, 2], factor: 1.5 } });",
    );
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stdout)
    );
    let bad =
        compile("void c.submit({ kind: \"archive_orders\", args: { customer: \"seven\" } });");
    assert!(!bad.status.success(), "a wrong arg type must not compile");
    let _ = std::fs::remove_dir_all(dir);
}

//! Sluice's migrations keep to their own schema: an application database
//! that already has tables named `jobs` and `events` in `public` keeps them
//! exactly as they were, and a database from before the schema existed has
//! Sluice's tables moved into it with their rows.

use std::process::{Command, Stdio};

use sluice_tests::system::{bin_dir, database_url, db};
use tokio_postgres::NoTls;

/// Sluice's own tables, all in its schema.
const OURS: [&str; 8] = [
    "events",
    "job_keys",
    "job_outbox",
    "jobs",
    "publications",
    "refinery_schema_history",
    "runner_kinds",
    "user_seq",
];

/// `database_url()` with its database name replaced by `name`.
fn url_of(name: &str) -> String {
    let base = database_url();
    let (server, _) = base.rsplit_once('/').expect("a URL with a database name");
    format!("{server}/{name}")
}

/// Runs `sluice-jobs migrate` against database `name`; panics if it fails.
fn migrate(name: &str) {
    let out = Command::new(bin_dir().join("sluice-jobs"))
        .arg("migrate")
        .env("SLUICE_DATABASE__URL", url_of(name))
        .env("SLUICE_LOG__FILTER", "warn")
        .env_remove("SLUICE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("running sluice-jobs migrate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new, empty database of the test's own, dropped when this is dropped.
struct Scratch {
    name: String,
    client: tokio_postgres::Client,
}

impl Scratch {
    async fn new() -> Scratch {
        let name = format!("app_{}", uuid::Uuid::new_v4().simple());
        db().await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let (client, connection) = tokio_postgres::connect(&url_of(&name), NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        Scratch { name, client }
    }

    /// The tables of `schema`, sorted.
    async fn tables(&self, schema: &str) -> Vec<String> {
        self.strings(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
            schema,
        )
        .await
    }

    /// The columns of `schema.table`, in order.
    async fn columns(&self, schema: &str, table: &str) -> Vec<String> {
        let rows = self
            .client
            .query(
                "SELECT column_name::text FROM information_schema.columns
                 WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                &[&schema, &table],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    async fn strings(&self, sql: &str, arg: &str) -> Vec<String> {
        let rows = self.client.query(sql, &[&arg]).await.unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    async fn drop(self) {
        drop(self.client);
        db().await
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_leave_the_applications_own_jobs_and_events_tables_alone() {
    let app = Scratch::new().await;
    app.client
        .batch_execute(
            "CREATE TABLE public.jobs (id integer PRIMARY KEY, note text);
             CREATE TABLE public.events (at date, what text);
             INSERT INTO public.jobs VALUES (1, 'the application''s own');
             INSERT INTO public.events VALUES ('2026-01-01', 'launch');",
        )
        .await
        .unwrap();
    // Twice: migrating is idempotent.
    migrate(&app.name);
    migrate(&app.name);

    assert_eq!(app.columns("public", "jobs").await, ["id", "note"]);
    assert_eq!(app.columns("public", "events").await, ["at", "what"]);
    let note: String = app
        .client
        .query_one("SELECT note FROM public.jobs WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, "the application's own");
    assert_eq!(
        app.tables("public").await,
        ["events", "jobs"],
        "nothing of Sluice's lands in public"
    );
    // Sluice's own tables are in its schema, and the demo table is not among them.
    assert_eq!(app.tables("sluice").await, OURS);
    assert!(
        app.columns("sluice", "jobs")
            .await
            .contains(&"cancel_requested".to_owned())
    );
    app.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_deployments_tables_move_into_sluices_schema_with_their_rows() {
    let app = Scratch::new().await;
    app.client
        .batch_execute(include_str!("../fixtures/pre-schema-deployment.sql"))
        .await
        .unwrap();
    migrate(&app.name);
    migrate(&app.name);

    assert_eq!(
        app.tables("public").await,
        ["items"],
        "the demo table stays"
    );
    assert_eq!(app.tables("sluice").await, OURS);
    let history = app
        .strings(
            "SELECT name::text FROM sluice.refinery_schema_history WHERE $1 <> '' ORDER BY version",
            "-",
        )
        .await;
    assert_eq!(
        history,
        [
            "initial",
            "lifecycle",
            "retries",
            "status_check",
            "job_outbox",
            "relay_failures",
            "user_quotas_and_job_retention",
            "least_privilege",
            "messages",
            "runner_kinds",
            "job_keys",
            "publish_many"
        ]
    );
    let row = app
        .client
        .query_one(
            "SELECT j.status, j.attempts,
                    (SELECT count(*) FROM sluice.events e WHERE e.user_id = j.user_id),
                    (SELECT last_seq FROM sluice.user_seq s WHERE s.user_id = j.user_id),
                    (SELECT value FROM public.items WHERE id = 1)
             FROM sluice.jobs j WHERE j.user_id = 'old-user'",
            &[],
        )
        .await
        .unwrap();
    let found: (String, i32, i64, i64, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(
        found,
        ("done".into(), 1, 2, 2, "kept where it was".into()),
        "(status, attempts, events, last seq, demo row)"
    );
    app.drop().await;
}

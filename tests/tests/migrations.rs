//! Sluice's migrations keep to their own schema: an application database
//! that already has tables named `jobs` and `events` in `public` keeps them
//! exactly as they were.

use std::process::{Command, Stdio};

use sluice_tests::system::{bin_dir, database_url, db};
use tokio_postgres::NoTls;

/// `database_url()` with its database name replaced by `name`.
fn url_of(name: &str) -> String {
    let base = database_url();
    let (server, _) = base.rsplit_once('/').expect("a URL with a database name");
    format!("{server}/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_leave_the_applications_own_jobs_and_events_tables_alone() {
    let name = format!("app_{}", uuid::Uuid::new_v4().simple());
    let admin = db().await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (app, connection) = tokio_postgres::connect(&url_of(&name), NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    app.batch_execute(
        "CREATE TABLE public.jobs (id integer PRIMARY KEY, note text);
         CREATE TABLE public.events (at date, what text);
         INSERT INTO public.jobs VALUES (1, 'the application''s own');
         INSERT INTO public.events VALUES ('2026-01-01', 'launch');",
    )
    .await
    .unwrap();

    for _ in 0..2 {
        // Twice: migrating is idempotent.
        let out = Command::new(bin_dir().join("sluice-jobs"))
            .arg("migrate")
            .env("SLUICE_DATABASE__URL", url_of(&name))
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

    let columns = |table: &'static str, schema: &'static str| {
        let app = &app;
        async move {
            app.query(
                "SELECT column_name::text FROM information_schema.columns
                 WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                &[&schema, &table],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(columns("jobs", "public").await, ["id", "note"]);
    assert_eq!(columns("events", "public").await, ["at", "what"]);
    let note: String = app
        .query_one("SELECT note FROM public.jobs WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, "the application's own");
    let public: Vec<String> = app
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        public,
        ["events", "jobs"],
        "nothing of Sluice's lands in public"
    );
    // Sluice's own tables are in its schema, and the demo table is not among them.
    let ours: Vec<String> = app
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'sluice' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        ours,
        [
            "events",
            "job_outbox",
            "jobs",
            "refinery_schema_history",
            "user_seq"
        ]
    );
    assert!(
        columns("jobs", "sluice")
            .await
            .contains(&"cancel_requested".to_owned())
    );

    drop(app);
    connection.abort();
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}

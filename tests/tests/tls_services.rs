//! TLS to PostgreSQL and RabbitMQ, against the local services with TLS
//! switched on by `deploy/provision.sh` (a throwaway CA, `SLUICE_TLS_CA`):
//! a role that PostgreSQL admits over TLS only is refused in plain text and
//! admitted with `sslmode=verify-full`; a certificate from another
//! authority is refused; a role admitted by client certificate only gets
//! in with `sslcert`/`sslkey` and not without; and the whole system
//! (gateway and runner) runs jobs, and cancels one mid-query, with both
//! connections encrypted.

use std::time::Duration;

use serde_json::json;
use sluice_proto::EventStatus;
use sluice_tests::system::TestCertificates;
use sluice_tests::{Client, System, SystemOptions, token, unique_user};

fn tls_ca() -> String {
    std::env::var("SLUICE_TLS_CA").unwrap_or_else(|_| "/var/tmp/sluice/tls/ca.pem".into())
}

fn pg_port() -> String {
    std::env::var("SLUICE_PG_PORT").unwrap_or_else(|_| "25432".into())
}

fn amqps_port() -> String {
    std::env::var("SLUICE_AMQPS_PORT").unwrap_or_else(|_| "25671".into())
}

/// The TLS-only role's URL with `query` (sslmode and friends).
fn tls_role_url(query: &str) -> String {
    let role = std::env::var("SLUICE_DB_TLS_USER").unwrap_or_else(|_| "sluice_tls".into());
    format!(
        "postgres://{role}:sluice@127.0.0.1:{}/sluice?{query}",
        pg_port()
    )
}

async fn reaches(url: &str) -> Result<(), String> {
    let config = sluice_store::DatabaseConfig {
        url: url.into(),
        ..Default::default()
    };
    let pool = sluice_store::pool(&config).map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(10), sluice_store::check(&pool))
        .await
        .map_err(|_| "no answer in 10 s".to_string())?
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_admits_the_tls_only_role_over_verified_tls_and_refuses_plain_text() {
    let ca = tls_ca();
    let plain = reaches(&tls_role_url("sslmode=disable")).await;
    let refused = plain.expect_err("plain text must be refused for the TLS-only role");
    assert!(
        refused.contains("pg_hba") || refused.contains("no encryption"),
        "{refused}"
    );
    reaches(&tls_role_url(&format!(
        "sslmode=verify-full&sslrootcert={ca}"
    )))
    .await
    .expect("verify-full with the provisioning CA");
    // `require` encrypts without checking who answers.
    reaches(&tls_role_url("sslmode=require"))
        .await
        .expect("require");

    // Another authority's root: the server's certificate does not chain to
    // it, so verify-full refuses to talk.
    let dir = std::env::temp_dir().join(format!("sluice-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let other = TestCertificates::make(&dir);
    let impostor = reaches(&tls_role_url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        other.ca.display()
    )))
    .await;
    assert!(impostor.is_err(), "a root that vouches for nothing here");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_admits_the_certificate_role_with_its_client_certificate_only() {
    let ca = tls_ca();
    let role = std::env::var("SLUICE_DB_CERT_USER").unwrap_or_else(|_| "sluice_cert".into());
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let cert = var("SLUICE_PG_CLIENT_CERT", "/var/tmp/sluice/tls/pg-client.pem");
    let key = var(
        "SLUICE_PG_CLIENT_KEY",
        "/var/tmp/sluice/tls/pg-client-key.pem",
    );
    let url = |extra: &str| {
        format!(
            "postgres://{role}@127.0.0.1:{}/sluice?sslmode=verify-full&sslrootcert={ca}{extra}",
            pg_port()
        )
    };
    reaches(&url(&format!("&sslcert={cert}&sslkey={key}")))
        .await
        .expect("the client certificate the CA signed for the role");
    let without = reaches(&url("")).await;
    let refused = without.expect_err("no certificate, no login");
    assert!(refused.contains("certificate"), "{refused}");

    // A certificate from another authority is refused by the server.
    let dir = std::env::temp_dir().join(format!("sluice-cert-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let other = TestCertificates::make(&dir);
    let foreign = reaches(&url(&format!(
        "&sslcert={}&sslkey={}",
        other.cert.display(),
        other.key.display()
    )))
    .await;
    assert!(
        foreign.is_err(),
        "a certificate the server's CA never signed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_speaks_amqps_with_the_ca_and_refuses_plain_amqp_on_that_port() {
    let ca = tls_ca();
    let url = format!("amqps://sluice:sluice@127.0.0.1:{}/%2f", amqps_port());
    let config = sluice_broker::AmqpConfig {
        url: url.clone(),
        tls_ca_file: ca,
        ..Default::default()
    };
    let connection = tokio::time::timeout(
        Duration::from_secs(10),
        sluice_broker::connect(&config, "tls test"),
    )
    .await
    .expect("connected within 10 s")
    .expect("amqps with the provisioning CA");
    assert!(connection.status().connected());
    sluice_broker::close(&connection, "done").await;

    // The system's roots do not hold the throwaway CA.
    let untrusted = sluice_broker::AmqpConfig {
        url: url.clone(),
        ..Default::default()
    };
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        sluice_broker::connect(&untrusted, "tls test"),
    )
    .await
    .expect("an answer within 10 s");
    assert!(refused.is_err(), "a broker nobody vouched for");

    // Plain AMQP on the TLS port is no AMQP at all.
    let plain = sluice_broker::AmqpConfig {
        url: format!("amqp://sluice:sluice@127.0.0.1:{}/%2f", amqps_port()),
        ..Default::default()
    };
    let refused = tokio::time::timeout(
        Duration::from_secs(15),
        sluice_broker::connect(&plain, "tls test"),
    )
    .await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "plain AMQP must not be served on the amqps port"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_and_cancel_with_both_services_over_tls() {
    let ca = tls_ca();
    let database = tls_role_url(&format!("sslmode=verify-full&sslrootcert={ca}"));
    let amqp = format!("amqps://sluice:sluice@127.0.0.1:{}/%2f", amqps_port());
    let mut options = SystemOptions::default();
    for (key, value) in [
        ("SLUICE_DATABASE__URL", database.as_str()),
        ("SLUICE_AMQP__URL", amqp.as_str()),
        ("SLUICE_AMQP__TLS_CA_FILE", ca.as_str()),
    ] {
        options = options.gateway(key, value).runner(key, value);
    }
    let system = System::start(options).await;
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("tls"))).await;

    let job = client.submit("t", "sleep", json!({ "ms": 10 })).await;
    let events = client.events_until_terminal(job).await;
    assert_eq!(
        Client::statuses(&events),
        [EventStatus::Running, EventStatus::Done]
    );
    // Both ends say so: PostgreSQL sees the role's sessions encrypted, and
    // RabbitMQ counts TLS connections (no other test uses amqps).
    let encrypted: i64 = sluice_tests::system::db()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.usename = 'sluice_tls' AND s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 2, "{encrypted} TLS sessions of the role");
    let script = std::env::var("SLUICE_SERVICES_SH").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/services.sh").to_owned()
    });
    let listed = std::process::Command::new("bash")
        .args([
            script.as_str(),
            "rabbitmqctl",
            "-q",
            "list_connections",
            "ssl",
        ])
        .output()
        .expect("rabbitmqctl list_connections");
    let tls_connections = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| l.trim() == "true")
        .count();
    assert!(tls_connections >= 2, "{tls_connections} amqps connections");

    // A running job's query is cancelled on the server over the same TLS.
    let long = client.submit("l", "sleep", json!({ "ms": 30_000 })).await;
    loop {
        if let sluice_proto::ServerFrame::Event(e) = client.next_frame().await
            && e.job_id == long
            && e.status == EventStatus::Running
        {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    client.cancel(long).await;
    let events = client.events_until_terminal(long).await;
    assert_eq!(
        events.last().unwrap().status,
        EventStatus::Cancelled,
        "{events:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cancelled after {:?}",
        started.elapsed()
    );
}

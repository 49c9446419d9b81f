//! The end-to-end harness: starts the real gateway and runner against the
//! real PostgreSQL and RabbitMQ that `deploy/provision.sh` started, and
//! drives them as a client would. By default they run in the test's
//! process (`Gateway::start` on a listener the harness bound on
//! `127.0.0.1:0`, `JobRunner::start`), each on a runtime of its own; a test
//! about processes (signals, exit codes, a process's memory or metrics)
//! asks for the `sluice-gateway` and `sluice-jobs` binaries instead
//! ([`SystemOptions::processes`]).
//!
//! Each [`System`] gets its own AMQP prefix (so its runner only sees its own
//! jobs), its own port and its own log folder under `target/e2e-logs/`
//! (processes log there; in-process services log to the test's output).
//! Nothing here is a fake: a test that needs a service restarted restarts it.

pub mod client;
pub mod counting;
pub mod data;
pub mod system;

pub use client::Client;
pub use system::{System, SystemOptions};

/// The JWT secret the test systems are started with.
pub const TEST_SECRET: &str = "sluice-e2e-test-secret-0123456789";

/// A token for `user`, valid for an hour, signed with [`TEST_SECRET`].
pub fn token(user: &str) -> String {
    token_with(user, 3600, None)
}

/// A token for `user` with the given lifetime (negative: already expired)
/// and audience.
pub fn token_with(user: &str, ttl_secs: i64, aud: Option<&str>) -> String {
    sluice_proto::mint(TEST_SECRET.as_bytes(), user, ttl_secs, aud).expect("signing a test token")
}

/// A service token for `service` that may publish to users (scope
/// `sluice:publish`), valid for an hour, signed with [`TEST_SECRET`].
pub fn service_token(service: &str) -> String {
    sluice_proto::mint_with(
        TEST_SECRET.as_bytes(),
        service,
        3600,
        sluice_proto::MintOptions {
            scope: Some(sluice_proto::PUBLISH_SCOPE),
            ..Default::default()
        },
    )
    .expect("signing a test token")
}

/// A user id unique to this test run, so tests never see each other's events.
pub fn unique_user(label: &str) -> String {
    format!("{label}-{}", uuid::Uuid::new_v4().simple())
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `patience`.
pub async fn eventually<T, F, Fut>(patience: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {patience:?} waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

//! The runner's configuration: the section it owns (`[runner]`), and the
//! shared `[database]`, `[amqp]` and `[log]` sections, read by
//! `sluice_process::config` and validated here.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_broker::AmqpConfig;
use sluice_process::config::Settings;
use sluice_process::{ConfigError, LogConfig};
use sluice_store::DatabaseConfig;

/// Everything the runner reads. Sections other binaries own (`[gateway]`,
/// `[auth]`) are left to them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// PostgreSQL (job records, the event log, the application's tables).
    pub database: DatabaseConfig,
    /// RabbitMQ.
    pub amqp: AmqpConfig,
    /// Concurrency and job handling.
    pub runner: RunnerConfig,
    /// Log format and filter.
    pub log: LogConfig,
    /// Kinds declared as SQL (`[kinds.<name>]`), served beside the
    /// handlers (see `crate::sql_kinds`).
    pub kinds: BTreeMap<String, crate::sql_kinds::SqlKindConfig>,
}

/// The largest `runner.retry_delay_ms` accepted: one hour.
pub const MAX_RETRY_DELAY_MS: u64 = 3_600_000;

/// The longest job time limit or shutdown grace accepted: one week, so that
/// no deadline computed from one can overflow.
pub const MAX_JOB_MS: u64 = 7 * 86_400_000;

/// The runner's concurrency and job handling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunnerConfig {
    /// Jobs run at once (the AMQP prefetch). Keep at most `database.pool_size - 1`.
    pub concurrency: u16,
    /// Tables `batch_upsert` may write (schema `public`).
    pub tables: Vec<String>,
    /// Rows per upsert statement inside a batch's one transaction.
    pub chunk_rows: usize,
    /// How often the outbox relay looks for committed, unpublished events.
    pub relay_interval_ms: u64,
    /// Deliveries of one job before it is failed for good.
    pub max_attempts: u32,
    /// First retry delay: retry n of a transiently failed job waits in a
    /// broker delay queue for `retry_delay_ms * 2^(n-1)` (jittered).
    pub retry_delay_ms: u64,
    /// Time limit of a job whose kind has no limit of its own.
    pub default_timeout_ms: u64,
    /// Time limits by kind, e.g. `{ sleep = 60000 }`; over it a job fails with `timeout`.
    pub kind_timeouts_ms: BTreeMap<String, u64>,
    /// How long stored events are kept for resume.
    pub event_retention_hours: u64,
    /// How long an ended job (`done`, `failed`, `cancelled`) is kept for
    /// reads and listings after it ended; then it is deleted.
    pub job_retention_hours: u64,
    /// On SIGTERM, how long jobs in hand may run on before they are handed
    /// back to the queue (rolled back, requeued) for another runner.
    pub shutdown_grace_ms: u64,
    /// Where the runner serves `GET /metrics` (Prometheus); empty disables it.
    pub metrics_listen: String,
    /// How often the runner reads which of its running jobs have a cancel
    /// recorded: the bound on how late a cancel whose wake-up message was
    /// lost stops its job.
    pub cancel_poll_ms: u64,
    /// How often the runner refreshes its announcement of the kinds it
    /// serves (the gateways' `gateway.kind_grace_secs` must outlast it).
    pub kinds_heartbeat_ms: u64,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            concurrency: 15,
            tables: vec!["items".into()],
            chunk_rows: 5_000,
            relay_interval_ms: 1_000,
            max_attempts: 5,
            retry_delay_ms: 1_000,
            default_timeout_ms: 300_000,
            kind_timeouts_ms: BTreeMap::new(),
            event_retention_hours: 24,
            job_retention_hours: 168,
            shutdown_grace_ms: 30_000,
            metrics_listen: "127.0.0.1:9101".into(),
            cancel_poll_ms: 1_000,
            kinds_heartbeat_ms: 5_000,
        }
    }
}

impl Settings for Config {
    /// Checks every section the runner reads; names the bad setting.
    fn validate(&self) -> Result<(), ConfigError> {
        self.database.validate()?;
        self.amqp.validate()?;
        self.runner.validate()?;
        for (name, kind) in &self.kinds {
            crate::sql_kinds::declare(name, kind).map_err(|e| ("kinds", e.to_string()))?;
        }
        Ok(())
    }
}

impl RunnerConfig {
    /// The time limit of `kind`: its `kind_timeouts_ms` entry, else the
    /// handler's `own` limit, else `default_timeout_ms`.
    pub fn timeout(&self, kind: &str, own: Option<Duration>) -> Duration {
        match self.kind_timeouts_ms.get(kind) {
            Some(ms) => Duration::from_millis(*ms),
            None => own.unwrap_or(Duration::from_millis(self.default_timeout_ms)),
        }
    }

    /// Checks the section; the error names the bad setting and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = |setting: &'static str, value: u64| {
            if value == 0 {
                Err((setting, "must be at least 1".to_string()))
            } else {
                Ok(())
            }
        };
        positive("runner.concurrency", u64::from(self.concurrency))?;
        positive("runner.chunk_rows", self.chunk_rows as u64)?;
        positive("runner.max_attempts", u64::from(self.max_attempts))?;
        positive("runner.default_timeout_ms", self.default_timeout_ms)?;
        positive("runner.event_retention_hours", self.event_retention_hours)?;
        positive("runner.job_retention_hours", self.job_retention_hours)?;
        positive("runner.relay_interval_ms", self.relay_interval_ms)?;
        if !(100..=60_000).contains(&self.kinds_heartbeat_ms) {
            return Err(("runner.kinds_heartbeat_ms", "must be 100 to 60000".into()));
        }
        // The longest tier waits 2^7 times this in a RabbitMQ TTL, whose
        // ceiling is about 49 days; an hour keeps every tier well inside it.
        if !(1..=MAX_RETRY_DELAY_MS).contains(&self.retry_delay_ms) {
            return Err((
                "runner.retry_delay_ms",
                format!("must be 1 to {MAX_RETRY_DELAY_MS}"),
            ));
        }
        if !(10..=60_000).contains(&self.cancel_poll_ms) {
            return Err(("runner.cancel_poll_ms", "must be 10 to 60000".into()));
        }
        for (setting, ms) in [
            ("runner.default_timeout_ms", self.default_timeout_ms),
            ("runner.shutdown_grace_ms", self.shutdown_grace_ms),
            ("runner.relay_interval_ms", self.relay_interval_ms),
        ] {
            if ms > MAX_JOB_MS {
                return Err((setting, format!("must be at most {MAX_JOB_MS}")));
            }
        }
        // Ten years: beyond it the seconds overflow nothing, but it is a typo.
        for (setting, hours) in [
            ("runner.event_retention_hours", self.event_retention_hours),
            ("runner.job_retention_hours", self.job_retention_hours),
        ] {
            if hours > 87_600 {
                return Err((setting, "must be at most 87600".into()));
            }
        }
        for (kind, ms) in &self.kind_timeouts_ms {
            if sluice_proto::KindName::parse(kind).is_err() {
                return Err((
                    "runner.kind_timeouts_ms",
                    format!("`{kind}` is not a kind name"),
                ));
            }
            if *ms == 0 || *ms > MAX_JOB_MS {
                return Err((
                    "runner.kind_timeouts_ms",
                    format!("limits must be 1 to {MAX_JOB_MS}"),
                ));
            }
        }
        for table in &self.tables {
            if sluice_store::OWN_TABLES.contains(&table.as_str()) {
                return Err((
                    "runner.tables",
                    format!(
                        "`{table}` is one of Sluice's own tables; batch_upsert writes only the application's tables in `public`"
                    ),
                ));
            }
        }
        if !self.metrics_listen.is_empty() {
            self.metrics_listen
                .parse::<std::net::SocketAddr>()
                .map_err(|e| {
                    (
                        "runner.metrics_listen",
                        format!("not a socket address: {e}"),
                    )
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn retry_delays_limits_and_tables_are_bounded() {
        let refused = |edit: fn(&mut Config)| {
            let mut config = Config::default();
            edit(&mut config);
            config.validate().unwrap_err().to_string()
        };
        assert!(refused(|c| c.runner.retry_delay_ms = 0).contains("runner.retry_delay_ms"));
        assert!(refused(|c| c.runner.cancel_poll_ms = 0).contains("runner.cancel_poll_ms"));
        assert!(refused(|c| c.runner.cancel_poll_ms = u64::MAX).contains("runner.cancel_poll_ms"));
        assert!(refused(|c| c.runner.retry_delay_ms = u64::MAX).contains("runner.retry_delay_ms"));
        assert!(refused(|c| c.runner.shutdown_grace_ms = u64::MAX).contains("shutdown_grace_ms"));
        assert!(refused(|c| c.runner.default_timeout_ms = u64::MAX).contains("default_timeout_ms"));
        for own in sluice_store::OWN_TABLES {
            let mut config = Config::default();
            config.runner.tables.push(own.into());
            let err = config.validate().unwrap_err().to_string();
            assert!(
                err.contains("runner.tables") && err.contains("Sluice's own"),
                "{err}"
            );
        }
        let mut longest = Config::default();
        longest.runner.retry_delay_ms = MAX_RETRY_DELAY_MS;
        longest.validate().unwrap();
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn env_overrides_and_bad_values_name_the_setting() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "s.toml",
                "[runner]\nconcurrency = 3\n[gateway]\nlisten = \"x\"\n",
            )?;
            let c = Config::load(Some(Path::new("s.toml"))).unwrap();
            assert_eq!(c.runner.concurrency, 3);
            jail.set_env("SLUICE_RUNNER__CONCURRENCY", "0");
            let err = Config::load(None).unwrap_err();
            assert!(err.to_string().contains("runner.concurrency"), "{err}");
            Ok(())
        });
    }
}

//! One typed configuration for both binaries, read once and validated.
//!
//! Sources, later ones winning: built-in defaults (which match
//! `deploy/provision.sh`), the TOML file named by `SLUICE_CONFIG` (or given
//! on the command line), then environment variables `SLUICE_<SECTION>__<KEY>`,
//! for example `SLUICE_GATEWAY__LISTEN=0.0.0.0:8080`. Every field is
//! documented in `deploy/sluice.example.toml` and the README.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "SLUICE_CONFIG";
/// Prefix of the per-setting environment overrides.
pub const ENV_PREFIX: &str = "SLUICE_";

/// The whole configuration; each binary reads the sections it needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub amqp: AmqpConfig,
    pub auth: AuthConfig,
    pub gateway: GatewayConfig,
    pub runner: RunnerConfig,
    pub log: LogConfig,
}

/// PostgreSQL connection and pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// libpq-style URL.
    pub url: String,
    /// Most pooled connections this process opens.
    pub pool_size: usize,
    /// How long a request waits for a pooled connection before failing.
    pub pool_wait_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "postgres://sluice:sluice@127.0.0.1:55432/sluice".into(),
            pool_size: 16,
            pool_wait_ms: 5_000,
        }
    }
}

/// RabbitMQ connection and naming.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpConfig {
    /// AMQP 0-9-1 URL.
    pub url: String,
    /// Prefix of every exchange and queue name, so deployments can share a vhost.
    pub prefix: String,
    /// How long a publish waits for the broker's confirm before answering `unavailable`.
    pub publish_timeout_ms: u64,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            url: "amqp://sluice:sluice@127.0.0.1:55672/%2f".into(),
            prefix: "sluice".into(),
            publish_timeout_ms: 5_000,
        }
    }
}

/// Token checking.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret. The default is for development only and logged as such.
    pub jwt_secret: String,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// When non-empty, a browser upgrade whose `Origin` is not listed gets 403.
    pub allowed_origins: Vec<String>,
}

/// The largest `runner.retry_delay_ms` accepted: one hour.
pub const MAX_RETRY_DELAY_MS: u64 = 3_600_000;

/// The development secret; `validate` warns when it is in use.
pub const DEV_JWT_SECRET: &str = "sluice-development-secret-change-me";

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: DEV_JWT_SECRET.into(),
            audience: None,
            allowed_origins: Vec::new(),
        }
    }
}

/// The gateway's listener and per-session limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on.
    pub listen: String,
    /// Time allowed for the first (`hello`) frame.
    pub hello_timeout_ms: u64,
    /// Interval of server Pings; two silent intervals close the session.
    pub heartbeat_ms: u64,
    /// Largest accepted message; bigger ones close with 1009.
    pub max_message_bytes: usize,
    /// Bad frames in a row before closing with 1008.
    pub max_bad_frames: u32,
    /// Frames queued for one session before it is closed with 1013 as too slow.
    pub outbound_queue: usize,
    /// Bytes queued for one session before it is closed with 1013 as too slow.
    pub outbound_queue_bytes: usize,
    /// Sessions one user may hold on this instance; more close with 1008.
    pub max_sessions_per_user: usize,
    /// New WebSocket connections per second allowed per client address
    /// (after `X-Forwarded-For`); more get HTTP 429. 0 turns the limit off.
    pub connect_rate_per_address: u32,
    /// Burst of connections one address may open at once before the rate applies.
    pub connect_burst_per_address: u32,
    /// Submits and cancels one session may have under way (awaiting the
    /// broker or the database); more are answered `overloaded`.
    pub max_inflight_submits: usize,
    /// Bytes of the WebSocket read buffer per session (memory per idle session).
    pub ws_read_buffer_bytes: usize,
    /// Kernel send buffer of each client socket (SO_SNDBUF); 0 leaves the
    /// kernel's autotuning (up to 4 MiB per socket on Linux). A bound makes a
    /// client that stops reading count as slow sooner, and caps kernel memory.
    pub socket_send_buffer_bytes: usize,
    /// A socket write blocked longer than this closes the session with 1013.
    pub write_timeout_ms: u64,
    /// How long shutdown waits for sessions to close.
    pub drain_grace_ms: u64,
    /// On shutdown, sessions close with 1012 at random moments spread over
    /// this long, so their clients do not all reconnect in the same second.
    pub drain_spread_ms: u64,
    /// Name of this instance (its event queue); a random one when unset.
    pub instance_id: Option<String>,
    /// Worker threads of the async runtime; 0 means one per core.
    pub worker_threads: usize,
    /// Proxies (IP addresses) whose `X-Forwarded-For` is believed for the
    /// client address in logs; requests from others are taken at face value.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Development mode: serves the demo page (`/demo/`), the browser client
    /// and `POST /v1/dev/token`, which signs a token for any user. Never in
    /// production.
    pub dev_mode: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            hello_timeout_ms: 5_000,
            heartbeat_ms: 25_000,
            max_message_bytes: 16 * 1024 * 1024,
            max_bad_frames: 16,
            outbound_queue: 4096,
            outbound_queue_bytes: 1024 * 1024,
            max_sessions_per_user: 100,
            connect_rate_per_address: 0,
            connect_burst_per_address: 50,
            max_inflight_submits: 64,
            ws_read_buffer_bytes: 4096,
            socket_send_buffer_bytes: 0,
            write_timeout_ms: 10_000,
            drain_grace_ms: 10_000,
            drain_spread_ms: 5_000,
            instance_id: None,
            worker_threads: 0,
            trusted_proxies: vec![
                std::net::IpAddr::from([127, 0, 0, 1]),
                std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ],
            dev_mode: false,
        }
    }
}

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
    /// On SIGTERM, how long jobs in hand may run on before they are handed
    /// back to the queue (rolled back, requeued) for another runner.
    pub shutdown_grace_ms: u64,
    /// Where the runner serves `GET /metrics` (Prometheus); empty disables it.
    pub metrics_listen: String,
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
            shutdown_grace_ms: 30_000,
            metrics_listen: "127.0.0.1:9101".into(),
        }
    }
}

/// Log format and filter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// tracing filter directive; `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            filter: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Human,
    Json,
}

/// A configuration that could not be read or makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading configuration: {0}")]
    Read(#[from] Box<figment::Error>),
    #[error("invalid setting `{setting}`: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
}

impl Config {
    /// Loads defaults, then the file (argument, else `SLUICE_CONFIG`), then
    /// the environment, and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env_file = std::env::var_os(CONFIG_ENV).map(std::path::PathBuf::from);
        let file = file.map(Path::to_path_buf).or(env_file);
        // Only `SLUICE_<SECTION>__<KEY>` variables are settings; the scripts'
        // own variables (SLUICE_STATE_DIR, ...) are left alone.
        let figment = Self::figment(file.as_deref())?.merge(
            Env::prefixed(ENV_PREFIX)
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        Self::extract(figment)
    }

    /// Loads defaults and the file only, ignoring the environment.
    pub fn load_file(file: &Path) -> Result<Self, ConfigError> {
        Self::extract(Self::figment(Some(file))?)
    }

    fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let figment = Figment::from(Serialized::defaults(Config::default()));
        let Some(path) = file else {
            return Ok(figment);
        };
        if !path.exists() {
            return Err(ConfigError::Invalid {
                setting: CONFIG_ENV,
                reason: format!("file {} does not exist", path.display()),
            });
        }
        Ok(figment.merge(Toml::file(path)))
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks cross-field rules; names the bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                setting,
                reason: reason.into(),
            }
        }
        if self.database.pool_size == 0 {
            return Err(invalid("database.pool_size", "must be at least 1"));
        }
        if self.runner.concurrency == 0 {
            return Err(invalid("runner.concurrency", "must be at least 1"));
        }
        if self.runner.chunk_rows == 0 {
            return Err(invalid("runner.chunk_rows", "must be at least 1"));
        }
        if self.runner.max_attempts == 0 {
            return Err(invalid("runner.max_attempts", "must be at least 1"));
        }
        // The longest tier waits 2^7 times this in a RabbitMQ TTL, whose
        // ceiling is about 49 days; an hour keeps every tier well inside it.
        if !(1..=MAX_RETRY_DELAY_MS).contains(&self.runner.retry_delay_ms) {
            return Err(invalid(
                "runner.retry_delay_ms",
                format!("must be 1 to {MAX_RETRY_DELAY_MS}"),
            ));
        }
        for (kind, ms) in &self.runner.kind_timeouts_ms {
            if sluice_proto::JobKind::parse(kind).is_none() {
                return Err(invalid(
                    "runner.kind_timeouts_ms",
                    format!("`{kind}` is not a job kind"),
                ));
            }
            if *ms == 0 {
                return Err(invalid(
                    "runner.kind_timeouts_ms",
                    "limits must be positive",
                ));
            }
        }
        if !self.runner.metrics_listen.is_empty() {
            self.runner
                .metrics_listen
                .parse::<std::net::SocketAddr>()
                .map_err(|e| {
                    invalid(
                        "runner.metrics_listen",
                        format!("not a socket address: {e}"),
                    )
                })?;
        }
        if self.runner.default_timeout_ms == 0 {
            return Err(invalid("runner.default_timeout_ms", "must be positive"));
        }
        if self.runner.event_retention_hours == 0 {
            return Err(invalid(
                "runner.event_retention_hours",
                "must be at least 1",
            ));
        }
        if self.gateway.heartbeat_ms < 100 {
            return Err(invalid("gateway.heartbeat_ms", "must be at least 100"));
        }
        if self.gateway.drain_spread_ms > self.gateway.drain_grace_ms {
            return Err(invalid(
                "gateway.drain_spread_ms",
                "must not exceed gateway.drain_grace_ms",
            ));
        }
        if self.gateway.outbound_queue_bytes < 1024 {
            return Err(invalid(
                "gateway.outbound_queue_bytes",
                "must be at least 1024",
            ));
        }
        if self.gateway.max_sessions_per_user == 0 {
            return Err(invalid(
                "gateway.max_sessions_per_user",
                "must be at least 1",
            ));
        }
        if self.gateway.outbound_queue == 0 {
            return Err(invalid("gateway.outbound_queue", "must be at least 1"));
        }
        // tungstenite reads at most this much per system call; below a few
        // hundred bytes every frame takes several reads.
        if self.gateway.ws_read_buffer_bytes < 256 {
            return Err(invalid(
                "gateway.ws_read_buffer_bytes",
                "must be at least 256",
            ));
        }
        if self.gateway.max_message_bytes < 1024 {
            return Err(invalid(
                "gateway.max_message_bytes",
                "must be at least 1024",
            ));
        }
        if self.auth.jwt_secret.len() < 16 {
            return Err(invalid("auth.jwt_secret", "must be at least 16 bytes"));
        }
        if self.amqp.prefix.is_empty() || self.amqp.prefix.len() > 100 {
            return Err(invalid("amqp.prefix", "must be 1 to 100 characters"));
        }
        self.gateway
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| invalid("gateway.listen", format!("not a socket address: {e}")))?;
        Ok(())
    }

    /// True when the development JWT secret is in use (logged loudly).
    pub fn uses_dev_secret(&self) -> bool {
        self.auth.jwt_secret == DEV_JWT_SECRET
    }
}

impl RunnerConfig {
    /// The time limit of `kind`.
    pub fn timeout(&self, kind: sluice_proto::JobKind) -> Duration {
        Duration::from_millis(
            self.kind_timeouts_ms
                .get(kind.as_str())
                .copied()
                .unwrap_or(self.default_timeout_ms),
        )
    }
}

impl DatabaseConfig {
    /// `pool_wait_ms` as a duration.
    pub fn pool_wait(&self) -> Duration {
        Duration::from_millis(self.pool_wait_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn retry_delays_and_read_buffers_are_bounded() {
        let refused = |edit: fn(&mut Config)| {
            let mut config = Config::default();
            edit(&mut config);
            config.validate().unwrap_err().to_string()
        };
        assert!(refused(|c| c.runner.retry_delay_ms = 0).contains("runner.retry_delay_ms"));
        assert!(refused(|c| c.runner.retry_delay_ms = u64::MAX).contains("runner.retry_delay_ms"));
        assert!(
            refused(|c| c.gateway.ws_read_buffer_bytes = 0)
                .contains("gateway.ws_read_buffer_bytes")
        );
        let mut longest = Config::default();
        longest.runner.retry_delay_ms = MAX_RETRY_DELAY_MS;
        longest.validate().unwrap();
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn file_then_env_override_and_unknown_keys_fail() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "s.toml",
                "[gateway]\nlisten = \"127.0.0.1:9000\"\nheartbeat_ms = 1000\n",
            )?;
            jail.set_env("SLUICE_GATEWAY__HEARTBEAT_MS", "2000");
            jail.set_env("SLUICE_STATE_DIR", "/tmp/ignored");
            let c = Config::load(Some(Path::new("s.toml"))).unwrap();
            assert_eq!(c.gateway.listen, "127.0.0.1:9000");
            assert_eq!(c.gateway.heartbeat_ms, 2000);

            jail.create_file("bad.toml", "[gateway]\nlisen = \"x\"\n")?;
            let err = Config::load(Some(Path::new("bad.toml"))).unwrap_err();
            assert!(err.to_string().contains("lisen"), "{err}");

            jail.set_env("SLUICE_RUNNER__CONCURRENCY", "0");
            let err = Config::load(None).unwrap_err();
            assert!(err.to_string().contains("runner.concurrency"), "{err}");
            Ok(())
        });
    }
}

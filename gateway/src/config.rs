//! The gateway's configuration: the sections it owns (`[gateway]`,
//! `[auth]`), and the shared `[database]`, `[amqp]` and `[log]` sections,
//! read by `sluice_process::config` and validated here.

use std::path::PathBuf;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::{Deserialize, Serialize};
use sluice_broker::AmqpConfig;
use sluice_process::config::Settings;
use sluice_process::{ConfigError, LogConfig};
use sluice_store::DatabaseConfig;

/// Everything the gateway reads. Sections other binaries own (`[runner]`)
/// are left to them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// PostgreSQL (the job records and the event log).
    pub database: DatabaseConfig,
    /// RabbitMQ.
    pub amqp: AmqpConfig,
    /// Token checking.
    pub auth: AuthConfig,
    /// Listener and per-session limits.
    pub gateway: GatewayConfig,
    /// Log format and filter.
    pub log: LogConfig,
}

/// Token checking.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret, at least [`MIN_SECRET_BYTES`] bytes: the default key,
    /// which verifies tokens whose header names no `kid` (and signs the
    /// tokens Sluice mints). The default is the public development secret,
    /// refused outside development mode.
    pub jwt_secret: String,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (at most
    /// [`MAX_LEEWAY_SECS`]); a session also lives this much past its
    /// token's `exp`.
    pub leeway_secs: u64,
    /// Further verification keys, chosen by the `kid` of a token's header,
    /// so that keys can be rotated (old and new both accepted for a while)
    /// and tokens of an identity provider verified with its public keys.
    pub keys: Vec<KeyConfig>,
    /// A JWKS document (RFC 7517) of public keys, each chosen by its `kid`:
    /// an identity provider's published key set, saved to a file.
    pub jwks_file: Option<PathBuf>,
    /// How often the key files (`jwks_file`, each `public_key_file`) are
    /// read again, in seconds, besides on SIGHUP; 0 turns the timer off.
    pub keys_reload_secs: u64,
    /// When non-empty, a browser upgrade whose `Origin` is not listed gets 403.
    pub allowed_origins: Vec<String>,
}

/// One entry of `auth.keys`: a key id and the one key tokens of that `kid`
/// are verified with. The algorithm is the key's, never the token's: a
/// token whose header names another `alg` is refused, so a public key can
/// never be used as an HMAC secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The `kid` a token's header names to be verified with this key.
    pub kid: String,
    /// The only algorithm accepted with this key: `HS256` (`HS384`,
    /// `HS512`) with a `secret`; `RS256`, `PS256` (and their 384/512
    /// forms), `ES256`, `ES384` or `EdDSA` with a public key.
    pub alg: Algorithm,
    /// The shared secret of an HMAC key; outside development mode at least
    /// as long as its hash (32 bytes for HS256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A file holding the HMAC secret instead (its bytes, a trailing
    /// newline dropped), read again on SIGHUP and every
    /// `auth.keys_reload_secs`: an HS256 rotation without a restart. It
    /// must hold at least as many bytes as the hash (32 for HS256) and not
    /// the development secret, in development mode too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// A PEM file holding the public key (`-----BEGIN PUBLIC KEY-----`),
    /// read again on SIGHUP and every `auth.keys_reload_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<PathBuf>,
    /// The public key itself, in PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
}

/// The development secret: public (it is in this source), so the gateway
/// refuses it outside development mode.
pub const DEV_JWT_SECRET: &str = "sluice-development-secret-change-me";

/// The shortest `auth.jwt_secret` accepted outside development mode: 32
/// bytes, HS256's own key size (RFC 7518, section 3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// The largest `auth.leeway_secs`: clock skew is seconds; a leeway of more
/// than five minutes would be a longer token lifetime, not a tolerance.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// The longest `auth.keys_reload_secs` (a day), so the timer cannot overflow.
pub const MAX_KEYS_RELOAD_SECS: u64 = 86_400;

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: DEV_JWT_SECRET.into(),
            audience: None,
            issuer: None,
            leeway_secs: 0,
            keys: Vec::new(),
            jwks_file: None,
            keys_reload_secs: 300,
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
    /// Largest `hello` frame (and all a socket may send before it); a
    /// larger one closes with 1009 before it is buffered or its token hashed.
    pub max_hello_bytes: usize,
    /// Sockets this process holds that have not said `hello` yet; past it
    /// an upgrade gets 503.
    pub max_unauthenticated: usize,
    /// The same per client address (after `trusted_proxies`); past it 429.
    pub max_unauthenticated_per_address: usize,
    /// Submissions per second one user may make on this gateway (WebSocket
    /// and HTTP together); past it `rate_limited` with `retry_after_ms`.
    /// 0 turns the limit off.
    pub submits_per_user_per_sec: u32,
    /// How many submissions one user may make at once before the rate
    /// applies.
    pub submit_burst_per_user: u32,
    /// Jobs one user may have queued or running at once (counted in the
    /// database, so across gateways); past it a submit or run is answered
    /// `rate_limited`.
    pub max_active_jobs_per_user: u64,
    /// Bytes of args one user's `created` (not yet run) jobs may keep; past
    /// it a `run: false` submit is answered `rate_limited`.
    pub max_created_bytes_per_user: u64,
    /// Interval of server Pings; two silent intervals close the session.
    pub heartbeat_ms: u64,
    /// Largest accepted message; bigger ones close with 1009.
    pub max_message_bytes: usize,
    /// Largest `data` of one `POST /v1/publish` (its JSON text); bigger is
    /// answered 413. At most the database function's own ceiling
    /// (256 KiB). Keep it well below `outbound_queue_bytes`: a message
    /// near that size closes a session that is a little behind with 1013.
    pub max_publish_bytes: usize,
    /// How long a kind stays admitted after the last heartbeat of the last
    /// runner announcing it: long enough that a runner's restart does not
    /// refuse the jobs that would wait for it in the queue, short enough
    /// that a kind taken out of the deployment is soon refused.
    pub kind_grace_secs: u64,
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
    /// Time allowed for a complete HTTP request head (the upgrade request
    /// included), and for the next one on an idle kept-alive connection;
    /// past it the connection is closed.
    pub http_header_timeout_ms: u64,
    /// Time allowed for a whole HTTP request body to arrive; past it 408.
    pub http_body_timeout_ms: u64,
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
            max_hello_bytes: 8 * 1024,
            max_unauthenticated: 10_000,
            max_unauthenticated_per_address: 256,
            submits_per_user_per_sec: 50,
            submit_burst_per_user: 200,
            max_active_jobs_per_user: 1_000,
            max_created_bytes_per_user: 64 * 1024 * 1024,
            heartbeat_ms: 25_000,
            max_message_bytes: 16 * 1024 * 1024,
            max_publish_bytes: 64 * 1024,
            kind_grace_secs: 300,
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
            http_header_timeout_ms: 10_000,
            http_body_timeout_ms: 30_000,
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

impl Settings for Config {
    /// Checks every section the gateway reads; names the bad setting.
    fn validate(&self) -> Result<(), ConfigError> {
        self.database.validate()?;
        self.amqp.validate()?;
        self.auth.validate()?;
        self.gateway.validate()?;
        self.exposure()?;
        Ok(())
    }
}

impl Config {
    /// True when the development JWT secret is in use.
    pub fn uses_dev_secret(&self) -> bool {
        self.auth.jwt_secret == DEV_JWT_SECRET
    }

    /// What may face a network: outside development mode, a secret of
    /// [`MIN_SECRET_BYTES`] that is not the public development one; in
    /// development mode (which signs tokens for anyone) a loopback address
    /// only.
    fn exposure(&self) -> Result<(), (&'static str, String)> {
        if self.gateway.dev_mode {
            let loopback = self
                .gateway
                .listen
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|addr| addr.ip().is_loopback());
            if !loopback {
                return Err((
                    "gateway.dev_mode",
                    format!(
                        "signs tokens for anyone, so it listens only on a loopback address (127.0.0.1, ::1); gateway.listen is {}",
                        self.gateway.listen
                    ),
                ));
            }
            return Ok(());
        }
        if self.uses_dev_secret() {
            return Err((
                "auth.jwt_secret",
                format!(
                    "is the public development secret: set SLUICE_AUTH__JWT_SECRET to at least {MIN_SECRET_BYTES} random bytes (head -c 32 /dev/urandom | base64), or turn gateway.dev_mode on for a loopback address"
                ),
            ));
        }
        if self.auth.jwt_secret.len() < MIN_SECRET_BYTES {
            return Err((
                "auth.jwt_secret",
                format!(
                    "is {} bytes; at least {MIN_SECRET_BYTES} are needed outside development mode",
                    self.auth.jwt_secret.len()
                ),
            ));
        }
        for key in &self.auth.keys {
            let Some(secret) = &key.secret else { continue };
            let min = key.min_secret_bytes();
            if secret == DEV_JWT_SECRET {
                return Err((
                    "auth.keys",
                    format!(
                        "key {:?}: its secret is the public development secret",
                        key.kid
                    ),
                ));
            }
            if secret.len() < min {
                return Err((
                    "auth.keys",
                    format!(
                        "key {:?}: its secret is {} bytes; {:?} needs at least {min} outside development mode",
                        key.kid,
                        secret.len(),
                        key.alg
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl AuthConfig {
    /// Checks the section; the error names the bad setting and why. Key
    /// files are read when the gateway starts (`Verifier::new`), not here.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.jwt_secret.len() < 16 {
            return Err(("auth.jwt_secret", "must be at least 16 bytes".into()));
        }
        if self.issuer.as_deref() == Some("") {
            return Err(("auth.issuer", "must not be empty when set".into()));
        }
        if self.leeway_secs > MAX_LEEWAY_SECS {
            return Err((
                "auth.leeway_secs",
                format!("must be at most {MAX_LEEWAY_SECS}"),
            ));
        }
        if self.keys_reload_secs > MAX_KEYS_RELOAD_SECS {
            return Err((
                "auth.keys_reload_secs",
                format!("must be at most {MAX_KEYS_RELOAD_SECS} (0 turns the timer off)"),
            ));
        }
        if self
            .jwks_file
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return Err(("auth.jwks_file", "must not be empty when set".into()));
        }
        let mut kids = std::collections::HashSet::new();
        for key in &self.keys {
            key.validate()
                .map_err(|reason| ("auth.keys", format!("key {:?}: {reason}", key.kid)))?;
            if !kids.insert(key.kid.as_str()) {
                return Err(("auth.keys", format!("key id {:?} appears twice", key.kid)));
            }
        }
        Ok(())
    }
}

impl KeyConfig {
    /// The shortest secret this key may have outside development mode: the
    /// size of its hash (RFC 7518, section 3.2).
    pub fn min_secret_bytes(&self) -> usize {
        match self.alg {
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            _ => MIN_SECRET_BYTES,
        }
    }

    /// Checks that the entry names one key, of the kind its `alg` needs.
    fn validate(&self) -> Result<(), String> {
        if self.kid.is_empty() {
            return Err("kid must not be empty".into());
        }
        let public = [
            self.public_key_file.is_some(),
            self.public_key_pem.is_some(),
        ];
        match self.alg.family() {
            AlgorithmFamily::Hmac => {
                match (&self.secret, &self.secret_file) {
                    (Some(_), Some(_)) => {
                        return Err("set one of secret and secret_file, not both".into());
                    }
                    (None, None) => {
                        return Err(format!("{:?} needs a secret or a secret_file", self.alg));
                    }
                    (Some(secret), None) if secret.len() < 16 => {
                        return Err("its secret must be at least 16 bytes".into());
                    }
                    _ => {}
                }
                if public.contains(&true) {
                    return Err(format!(
                        "{:?} is verified with its secret; a public key makes no sense here",
                        self.alg
                    ));
                }
            }
            _ => {
                if self.secret.is_some() || self.secret_file.is_some() {
                    return Err(format!(
                        "{:?} is verified with a public key, never a secret",
                        self.alg
                    ));
                }
                if public == [true, true] || public == [false, false] {
                    return Err(format!(
                        "{:?} needs exactly one of public_key_file and public_key_pem",
                        self.alg
                    ));
                }
            }
        }
        Ok(())
    }
}

impl GatewayConfig {
    /// The per-user quotas the store checks when it records a job.
    pub fn user_quota(&self) -> sluice_store::jobs::UserQuota {
        sluice_store::jobs::UserQuota {
            max_active: i64::try_from(self.max_active_jobs_per_user).unwrap_or(i64::MAX),
            max_created_bytes: i64::try_from(self.max_created_bytes_per_user).unwrap_or(i64::MAX),
        }
    }

    /// Checks the section; the error names the bad setting and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let at_least = |setting: &'static str, value: u64, min: u64| {
            if value < min {
                Err((setting, format!("must be at least {min}")))
            } else {
                Ok(())
            }
        };
        at_least("gateway.heartbeat_ms", self.heartbeat_ms, 100)?;
        at_least(
            "gateway.http_header_timeout_ms",
            self.http_header_timeout_ms,
            100,
        )?;
        at_least(
            "gateway.http_body_timeout_ms",
            self.http_body_timeout_ms,
            100,
        )?;
        at_least("gateway.max_hello_bytes", self.max_hello_bytes as u64, 256)?;
        at_least(
            "gateway.submit_burst_per_user",
            u64::from(self.submit_burst_per_user),
            1,
        )?;
        at_least(
            "gateway.max_unauthenticated",
            self.max_unauthenticated as u64,
            1,
        )?;
        at_least(
            "gateway.max_active_jobs_per_user",
            self.max_active_jobs_per_user,
            1,
        )?;
        // Stored as bigint comparisons in SQL.
        for (setting, value) in [
            (
                "gateway.max_active_jobs_per_user",
                self.max_active_jobs_per_user,
            ),
            (
                "gateway.max_created_bytes_per_user",
                self.max_created_bytes_per_user,
            ),
        ] {
            if value > i64::MAX as u64 {
                return Err((setting, format!("must be at most {}", i64::MAX)));
            }
        }
        at_least(
            "gateway.max_unauthenticated_per_address",
            self.max_unauthenticated_per_address as u64,
            1,
        )?;
        if self.max_hello_bytes > self.max_message_bytes {
            return Err((
                "gateway.max_hello_bytes",
                "must not exceed gateway.max_message_bytes".into(),
            ));
        }
        if !(1..=86_400).contains(&self.kind_grace_secs) {
            return Err(("gateway.kind_grace_secs", "must be 1 to 86400".into()));
        }
        at_least(
            "gateway.max_publish_bytes",
            self.max_publish_bytes as u64,
            1,
        )?;
        if self.max_publish_bytes > sluice_store::publish::MAX_DATA_BYTES {
            return Err((
                "gateway.max_publish_bytes",
                format!(
                    "must be at most {} (the database's ceiling)",
                    sluice_store::publish::MAX_DATA_BYTES
                ),
            ));
        }
        if self.drain_spread_ms > self.drain_grace_ms {
            return Err((
                "gateway.drain_spread_ms",
                "must not exceed gateway.drain_grace_ms".into(),
            ));
        }
        at_least(
            "gateway.outbound_queue_bytes",
            self.outbound_queue_bytes as u64,
            1024,
        )?;
        at_least(
            "gateway.max_sessions_per_user",
            self.max_sessions_per_user as u64,
            1,
        )?;
        at_least("gateway.outbound_queue", self.outbound_queue as u64, 1)?;
        // tungstenite reads at most this much per system call; below a few
        // hundred bytes every frame takes several reads.
        at_least(
            "gateway.ws_read_buffer_bytes",
            self.ws_read_buffer_bytes as u64,
            256,
        )?;
        at_least(
            "gateway.max_message_bytes",
            self.max_message_bytes as u64,
            1024,
        )?;
        for (setting, ms) in [
            ("gateway.hello_timeout_ms", self.hello_timeout_ms),
            ("gateway.heartbeat_ms", self.heartbeat_ms),
            ("gateway.write_timeout_ms", self.write_timeout_ms),
            (
                "gateway.http_header_timeout_ms",
                self.http_header_timeout_ms,
            ),
            ("gateway.http_body_timeout_ms", self.http_body_timeout_ms),
            ("gateway.drain_grace_ms", self.drain_grace_ms),
        ] {
            if ms > MAX_DURATION_MS {
                return Err((setting, format!("must be at most {MAX_DURATION_MS}")));
            }
        }
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| ("gateway.listen", format!("not a socket address: {e}")))?;
        Ok(())
    }
}

/// The longest time setting of the gateway accepted: one day, so that no
/// deadline computed from one can overflow.
pub const MAX_DURATION_MS: u64 = 86_400_000;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A config that may face a network: the defaults and a real secret.
    fn with_secret() -> Config {
        let mut config = Config::default();
        config.auth.jwt_secret = "0123456789abcdef0123456789abcdef".into();
        config
    }

    #[test]
    fn defaults_are_valid_with_a_secret_of_their_own() {
        with_secret().validate().unwrap();
    }

    #[test]
    fn the_development_secret_and_short_secrets_run_only_in_development_mode() {
        let err = Config::default().validate().unwrap_err().to_string();
        assert!(
            err.contains("auth.jwt_secret") && err.contains("public development secret"),
            "{err}"
        );
        let mut short = with_secret();
        short.auth.jwt_secret = "0123456789abcdef0123456789".into();
        let err = short.validate().unwrap_err().to_string();
        assert!(err.contains("is 26 bytes"), "{err}");

        let mut dev = Config::default();
        dev.gateway.dev_mode = true;
        dev.validate().unwrap();
        for listen in ["0.0.0.0:8080", "[::]:8080", "10.1.2.3:8080"] {
            dev.gateway.listen = listen.into();
            let err = dev.validate().unwrap_err().to_string();
            assert!(
                err.contains("gateway.dev_mode") && err.contains(listen),
                "{err}"
            );
        }
        dev.gateway.listen = "[::1]:8080".into();
        dev.validate().unwrap();
    }

    #[test]
    fn verification_keys_name_one_key_each_of_the_kind_their_alg_needs() {
        let refused = |keys: &str| {
            let mut config = with_secret();
            config.auth.keys = toml_keys(keys);
            config.validate().unwrap_err().to_string()
        };
        let secret = "a-rotation-secret-of-32-bytes-or-more";
        for (keys, expected) in [
            (
                r#"{ kid = "a", alg = "HS256" }"#.to_owned(),
                "HS256 needs a secret",
            ),
            (
                format!(r#"{{ kid = "a", alg = "RS256", secret = "{secret}" }}"#),
                "never a secret",
            ),
            (
                r#"{ kid = "a", alg = "ES256" }"#.to_owned(),
                "exactly one of public_key_file and public_key_pem",
            ),
            (
                r#"{ kid = "a", alg = "ES256", public_key_file = "/k.pem", public_key_pem = "x" }"#
                    .to_owned(),
                "exactly one of",
            ),
            (
                format!(
                    r#"{{ kid = "a", alg = "HS256", secret = "{secret}", public_key_pem = "x" }}"#
                ),
                "a public key makes no sense",
            ),
            (
                format!(r#"{{ kid = "", alg = "HS256", secret = "{secret}" }}"#),
                "kid must not be empty",
            ),
            (
                format!(
                    r#"{{ kid = "a", alg = "HS256", secret = "{secret}" }}, {{ kid = "a", alg = "ES256", public_key_pem = "x" }}"#
                ),
                "appears twice",
            ),
            (
                r#"{ kid = "a", alg = "HS256", secret = "0123456789abcdef0123" }"#.to_owned(),
                "is 20 bytes; HS256 needs at least 32 outside development mode",
            ),
            (
                format!(r#"{{ kid = "a", alg = "HS512", secret = "{secret}" }}"#),
                "HS512 needs at least 64",
            ),
            (
                format!(r#"{{ kid = "a", alg = "HS256", secret = "{DEV_JWT_SECRET}" }}"#),
                "public development secret",
            ),
        ] {
            let err = refused(&keys);
            assert!(
                err.contains("auth.keys") && err.contains(expected),
                "{keys}: {err}"
            );
        }

        // Development mode takes a short secret (16 bytes at least, as
        // auth.jwt_secret).
        let mut dev = Config::default();
        dev.gateway.dev_mode = true;
        dev.auth.keys = toml_keys(r#"{ kid = "a", alg = "HS256", secret = "0123456789abcdef" }"#);
        dev.validate().unwrap();
        dev.auth.keys = toml_keys(r#"{ kid = "a", alg = "HS256", secret = "short" }"#);
        assert!(dev.validate().unwrap_err().to_string().contains("16 bytes"));

        let mut fine = with_secret();
        fine.auth.keys = toml_keys(&format!(
            r#"{{ kid = "2026-12", alg = "HS256", secret = "{secret}" }}, {{ kid = "idp-1", alg = "RS256", public_key_file = "/etc/sluice/idp.pem" }}, {{ kid = "idp-2", alg = "ES256", public_key_pem = "-----BEGIN PUBLIC KEY-----" }}"#
        ));
        fine.validate().unwrap();
    }

    /// `[{...}, ...]` as `auth.keys` would be read from the file.
    fn toml_keys(keys: &str) -> Vec<KeyConfig> {
        #[derive(Deserialize)]
        struct Keys {
            keys: Vec<KeyConfig>,
        }
        toml_parse::<Keys>(&format!("keys = [{keys}]")).keys
    }

    fn toml_parse<T: serde::de::DeserializeOwned>(text: &str) -> T {
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(text))
            .extract()
            .unwrap()
    }

    #[test]
    fn claim_and_reload_settings_are_bounded() {
        let refused = |edit: fn(&mut Config)| {
            let mut config = with_secret();
            edit(&mut config);
            config.validate().unwrap_err().to_string()
        };
        assert!(refused(|c| c.auth.leeway_secs = 301).contains("auth.leeway_secs"));
        assert!(refused(|c| c.auth.keys_reload_secs = 86_401).contains("auth.keys_reload_secs"));
        assert!(refused(|c| c.auth.issuer = Some(String::new())).contains("auth.issuer"));
        assert!(refused(|c| c.auth.jwks_file = Some(PathBuf::new())).contains("auth.jwks_file"));
        let mut fine = with_secret();
        fine.auth.leeway_secs = 300;
        fine.auth.keys_reload_secs = 0;
        fine.validate().unwrap();
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn keys_load_from_the_file_or_the_environment_and_unknown_fields_fail() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "SLUICE_AUTH__JWT_SECRET",
                "0123456789abcdef0123456789abcdef",
            );
            jail.create_file(
                "keys.toml",
                concat!(
                    "[auth]\n",
                    "issuer = \"https://idp.example\"\n",
                    "jwks_file = \"/etc/sluice/jwks.json\"\n",
                    "keys_reload_secs = 60\n",
                    "[[auth.keys]]\n",
                    "kid = \"idp-1\"\n",
                    "alg = \"RS256\"\n",
                    "public_key_file = \"/etc/sluice/idp.pem\"\n",
                ),
            )?;
            let c = Config::load(Some(Path::new("keys.toml"))).unwrap();
            assert_eq!(c.auth.issuer.as_deref(), Some("https://idp.example"));
            assert_eq!(c.auth.keys_reload_secs, 60);
            assert_eq!(c.auth.keys.len(), 1);
            assert_eq!(c.auth.keys[0].alg, Algorithm::RS256);
            assert_eq!(
                c.auth.jwks_file.as_deref(),
                Some(Path::new("/etc/sluice/jwks.json"))
            );

            jail.create_file(
                "typo.toml",
                "[[auth.keys]]\nkid = \"a\"\nalg = \"RS256\"\npublic_key_fil = \"/k.pem\"\n",
            )?;
            let err = Config::load(Some(Path::new("typo.toml"))).unwrap_err();
            assert!(err.to_string().contains("public_key_fil"), "{err}");
            jail.create_file(
                "alg.toml",
                "[[auth.keys]]\nkid = \"a\"\nalg = \"none\"\npublic_key_file = \"/k.pem\"\n",
            )?;
            assert!(Config::load(Some(Path::new("alg.toml"))).is_err());

            // The environment can hold the list too, and a JWKS file path.
            jail.set_env(
                "SLUICE_AUTH__KEYS",
                r#"[{kid="2026-12",alg="HS256",secret="a-rotation-secret-of-32-bytes-or-more"}]"#,
            );
            jail.set_env("SLUICE_AUTH__JWKS_FILE", "/run/sluice/jwks.json");
            let c = Config::load(None).unwrap();
            assert_eq!(c.auth.keys.len(), 1);
            assert_eq!(c.auth.keys[0].kid, "2026-12");
            assert_eq!(
                c.auth.jwks_file.as_deref(),
                Some(Path::new("/run/sluice/jwks.json"))
            );
            Ok(())
        });
    }

    #[test]
    fn read_buffers_and_durations_are_bounded() {
        let refused = |edit: fn(&mut Config)| {
            let mut config = with_secret();
            edit(&mut config);
            config.validate().unwrap_err().to_string()
        };
        assert!(
            refused(|c| c.gateway.ws_read_buffer_bytes = 0)
                .contains("gateway.ws_read_buffer_bytes")
        );
        assert!(refused(|c| c.gateway.hello_timeout_ms = u64::MAX).contains("hello_timeout_ms"));
        assert!(refused(|c| c.database.schema = "public".into()).contains("database.schema"));
        assert!(refused(|c| c.amqp.publish_timeout_ms = 0).contains("amqp.publish_timeout_ms"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn file_then_env_override_and_unknown_keys_fail() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "s.toml",
                "[gateway]\nlisten = \"127.0.0.1:9000\"\nheartbeat_ms = 1000\n[runner]\nconcurrency = 3\n",
            )?;
            jail.set_env("SLUICE_GATEWAY__HEARTBEAT_MS", "2000");
            jail.set_env(
                "SLUICE_AUTH__JWT_SECRET",
                "0123456789abcdef0123456789abcdef",
            );
            jail.set_env("SLUICE_STATE_DIR", "/tmp/ignored");
            let c = Config::load(Some(Path::new("s.toml"))).unwrap();
            assert_eq!(c.gateway.listen, "127.0.0.1:9000");
            assert_eq!(c.gateway.heartbeat_ms, 2000);

            jail.create_file("bad.toml", "[gateway]\nlisen = \"x\"\n")?;
            let err = Config::load(Some(Path::new("bad.toml"))).unwrap_err();
            assert!(err.to_string().contains("lisen"), "{err}");

            jail.create_file("section.toml", "[gatway]\nlisten = \"x\"\n")?;
            let err = Config::load(Some(Path::new("section.toml"))).unwrap_err();
            assert!(err.to_string().contains("gatway"), "{err}");

            jail.set_env("SLUICE_GATEWAY__OUTBOUND_QUEUE", "0");
            let err = Config::load(None).unwrap_err();
            assert!(err.to_string().contains("gateway.outbound_queue"), "{err}");
            Ok(())
        });
    }
}

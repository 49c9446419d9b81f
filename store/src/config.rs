//! The `[database]` section: where PostgreSQL is, how many connections a
//! process keeps, and which schema holds Sluice's own tables.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// PostgreSQL connection and pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// libpq-style URL (or key=value string). Its `sslmode` and
    /// `sslrootcert` are libpq's, read by [`crate::tls`].
    pub url: String,
    /// Most pooled connections this process opens.
    pub pool_size: usize,
    /// How long a request waits for a pooled connection before failing.
    pub pool_wait_ms: u64,
    /// The schema of Sluice's own tables (jobs, events, outbox, migration
    /// history), apart from the application's tables in `public`.
    pub schema: String,
    /// The gateway's database role, granted what the gateway needs (and no
    /// more) by `sluice-jobs migrate`; empty grants nothing. A role that
    /// does not exist is skipped with a warning.
    pub gateway_role: String,
    /// The runner's database role, granted everything in Sluice's schema
    /// but ownership; empty grants nothing.
    pub runner_role: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "postgres://sluice:sluice@127.0.0.1:25432/sluice".into(),
            pool_size: 16,
            pool_wait_ms: 5_000,
            schema: "sluice".into(),
            gateway_role: "sluice_gateway".into(),
            runner_role: "sluice_runner".into(),
        }
    }
}

/// The longest `database.pool_wait_ms` accepted: ten minutes.
pub const MAX_POOL_WAIT_MS: u64 = 600_000;

impl DatabaseConfig {
    /// `pool_wait_ms` as a duration.
    pub fn pool_wait(&self) -> Duration {
        Duration::from_millis(self.pool_wait_ms)
    }

    /// Checks the section; the error names the bad setting and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        crate::tls::split_reason(&self.url).map_err(|reason| ("database.url", reason))?;
        if self.pool_size == 0 {
            return Err(("database.pool_size", "must be at least 1".into()));
        }
        if self.pool_wait_ms > MAX_POOL_WAIT_MS {
            return Err((
                "database.pool_wait_ms",
                format!("must be at most {MAX_POOL_WAIT_MS}"),
            ));
        }
        check_schema_name(&self.schema).map_err(|reason| ("database.schema", reason))?;
        for (setting, role) in [
            ("database.gateway_role", &self.gateway_role),
            ("database.runner_role", &self.runner_role),
        ] {
            if !role.is_empty() && !is_plain_identifier(role) {
                return Err((
                    setting,
                    "must be empty or a lower-case identifier (a-z, 0-9, _), at most 63 characters"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

/// A schema name Sluice may create and own: a plain lower-case identifier
/// (so it never needs quoting), and not one PostgreSQL or the application
/// already uses.
fn check_schema_name(name: &str) -> Result<(), String> {
    if !is_plain_identifier(name) {
        return Err("must be a lower-case identifier (a-z, 0-9, _), at most 63 characters".into());
    }
    if name == "public" || name == "information_schema" || name.starts_with("pg_") {
        return Err(format!(
            "`{name}` is not Sluice's to own: pick a schema of its own (default `sluice`)"
        ));
    }
    Ok(())
}

/// A name that never needs quoting in SQL, so it may be spliced.
fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_and_sluices_own() {
        let with = |schema: &str| DatabaseConfig {
            schema: schema.into(),
            ..DatabaseConfig::default()
        };
        with("sluice").validate().unwrap();
        with("sluice_2").validate().unwrap();
        for bad in [
            "",
            "public",
            "pg_temp",
            "information_schema",
            "Sluice",
            "a-b",
            "x;drop",
            "1a",
        ] {
            let (setting, _) = with(bad).validate().unwrap_err();
            assert_eq!(setting, "database.schema", "{bad:?}");
        }
        assert!(with(&"s".repeat(64)).validate().is_err());
    }

    #[test]
    fn role_names_are_plain_or_empty() {
        let with = |role: &str| DatabaseConfig {
            gateway_role: role.into(),
            ..DatabaseConfig::default()
        };
        with("").validate().unwrap();
        with("app_gateway").validate().unwrap();
        for bad in ["Gateway", "a b", "x;drop role y", "1a"] {
            let (setting, _) = with(bad).validate().unwrap_err();
            assert_eq!(setting, "database.gateway_role", "{bad:?}");
        }
    }
}

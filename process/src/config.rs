//! Reading a process's configuration: built-in defaults, then the TOML file
//! named by `SLUICE_CONFIG` (or given on the command line), then environment
//! variables `SLUICE_<SECTION>__<KEY>`, later ones winning. For example
//! `SLUICE_GATEWAY__LISTEN=0.0.0.0:8080`.
//!
//! One file serves every binary: each reads the sections it owns and
//! validates them, and all of them refuse a section nobody owns, so a typo
//! in a section name is caught at start. Every field is documented in
//! `deploy/sluice.example.toml` and the README.

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Provider};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "SLUICE_CONFIG";
/// Prefix of the per-setting environment overrides.
pub const ENV_PREFIX: &str = "SLUICE_";

/// Every section of the shared file and who owns it: `database` (the store),
/// `amqp` (the broker), `log` (every process), `auth` and `gateway` (the
/// gateway), `runner` (the runner).
pub const SECTIONS: [&str; 7] = [
    "database", "amqp", "log", "auth", "gateway", "runner", "kinds",
];

/// A configuration that could not be read or makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be parsed, or names a
    /// setting that does not exist.
    #[error("reading configuration: {0}")]
    Read(#[from] Box<figment::Error>),
    /// A setting override (see [`load_with`]) not named
    /// `SLUICE_<SECTION>__<KEY>`.
    #[error("setting override `{0}` is not named SLUICE_<SECTION>__<KEY>")]
    BadOverride(String),
    /// A section that no Sluice binary reads.
    #[error(
        "unknown configuration section `{0}` (known: database, amqp, log, auth, gateway, runner, kinds)"
    )]
    UnknownSection(String),
    /// A setting whose value is out of range or inconsistent.
    #[error("invalid setting `{setting}`: {reason}")]
    Invalid {
        /// `section.key` of the bad setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<(&'static str, String)> for ConfigError {
    fn from((setting, reason): (&'static str, String)) -> Self {
        ConfigError::Invalid { setting, reason }
    }
}

/// Loads defaults, then the file (argument, else `SLUICE_CONFIG`), then
/// the environment. The caller validates its sections.
pub fn load<C: Serialize + DeserializeOwned + Default>(
    file: Option<&Path>,
) -> Result<C, ConfigError> {
    let env_file = std::env::var_os(CONFIG_ENV).map(std::path::PathBuf::from);
    let file = file.map(Path::to_path_buf).or(env_file);
    load_with(file.as_deref(), &[])
}

/// Loads defaults, then `file` (only if given: `SLUICE_CONFIG` is not
/// read), then the environment, then `overrides`: pairs named and valued
/// exactly like the environment variables (`SLUICE_RUNNER__CONCURRENCY`,
/// `"4"`), applied without touching the process environment, which
/// parallel tests share. The caller validates its sections.
pub fn load_with<C: Serialize + DeserializeOwned + Default>(
    file: Option<&Path>,
    overrides: &[(String, String)],
) -> Result<C, ConfigError> {
    // Only `SLUICE_<SECTION>__<KEY>` variables are settings; the scripts'
    // own variables (SLUICE_STATE_DIR, ...) are left alone.
    let mut figment = figment::<C>(file)?.merge(
        Env::prefixed(ENV_PREFIX)
            .filter(|key| key.as_str().contains("__"))
            .split("__"),
    );
    for (name, value) in overrides {
        // The same key path and value parsing as `Env` above.
        let path = name
            .strip_prefix(ENV_PREFIX)
            .filter(|key| key.contains("__"))
            .map(|key| key.replace("__", ".").to_ascii_lowercase())
            .filter(|path| !path.split('.').any(str::is_empty))
            .ok_or_else(|| ConfigError::BadOverride(name.clone()))?;
        let value: figment::value::Value = match value.parse() {
            Ok(value) => value,
            Err(never) => match never {},
        };
        figment = figment.merge(Serialized::default(&path, value));
    }
    extract(figment)
}

/// Loads defaults and the file only, ignoring the environment.
pub fn load_file<C: Serialize + DeserializeOwned + Default>(file: &Path) -> Result<C, ConfigError> {
    extract(figment::<C>(Some(file))?)
}

fn figment<C: Serialize + Default>(file: Option<&Path>) -> Result<Figment, ConfigError> {
    let figment = Figment::from(Serialized::defaults(C::default()));
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

fn extract<C: DeserializeOwned>(figment: Figment) -> Result<C, ConfigError> {
    let data = figment.data().map_err(Box::new)?;
    for dict in data.values() {
        if let Some(unknown) = dict.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
            return Err(ConfigError::UnknownSection(unknown.clone()));
        }
    }
    Ok(figment.extract().map_err(Box::new)?)
}

/// A binary's whole configuration: the sections it reads and how it checks
/// them. Loading is the same for every binary, so it lives here once.
pub trait Settings: Serialize + DeserializeOwned + Default {
    /// Checks every section the binary reads; names the bad setting.
    fn validate(&self) -> Result<(), ConfigError>;

    /// Loads defaults, then the file (argument, else `SLUICE_CONFIG`), then
    /// the environment, and validates the result.
    fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        checked(load(file)?)
    }

    /// Loads defaults and the file only, ignoring the environment.
    fn load_file(file: &Path) -> Result<Self, ConfigError> {
        checked(load_file(file)?)
    }

    /// Loads defaults, then `file` if given (not `SLUICE_CONFIG`), then the
    /// environment, then `overrides` named like the environment variables
    /// (see [`load_with`]), and validates the result. For starting a
    /// service in-process without touching the process environment.
    fn load_with(file: Option<&Path>, overrides: &[(String, String)]) -> Result<Self, ConfigError> {
        checked(load_with(file, overrides)?)
    }
}

fn checked<C: Settings>(config: C) -> Result<C, ConfigError> {
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Sections {
        runner: Runner,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Runner {
        concurrency: u16,
        kind_timeouts_ms: std::collections::BTreeMap<String, u64>,
        tables: Vec<String>,
    }

    fn pair(name: &str, value: &str) -> (String, String) {
        (name.into(), value.into())
    }

    #[test]
    fn overrides_read_like_environment_variables_and_the_last_wins() {
        let c: Sections = load_with(
            None,
            &[
                pair("SLUICE_RUNNER__CONCURRENCY", "3"),
                pair("SLUICE_RUNNER__KIND_TIMEOUTS_MS__SLEEP", "1000"),
                pair("SLUICE_RUNNER__TABLES", r#"["a", "b"]"#),
                pair("SLUICE_RUNNER__CONCURRENCY", "4"),
            ],
        )
        .unwrap();
        assert_eq!(c.runner.concurrency, 4);
        assert_eq!(c.runner.kind_timeouts_ms["sleep"], 1000);
        assert_eq!(c.runner.tables, ["a", "b"]);
    }

    #[test]
    fn overrides_must_name_a_section_and_a_key() {
        for name in ["RUNNER__CONCURRENCY", "SLUICE_RUNNER", "SLUICE___X"] {
            let err = load_with::<Sections>(None, &[pair(name, "1")]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::BadOverride(n) if n == name),
                "{err}"
            );
        }
        let err =
            load_with::<Sections>(None, &[pair("SLUICE_RUNER__CONCURRENCY", "1")]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownSection(s) if s == "runer"),
            "{err}"
        );
    }
}

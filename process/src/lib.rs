//! What every Sluice process does the same way: reads its layered
//! configuration, writes its logs, exports its metrics, and waits with
//! bounded patience for the services it depends on.

pub mod config;
pub mod logs;
pub mod metrics;
pub mod patience;

pub use config::ConfigError;
pub use logs::LogConfig;
pub use patience::retry;

//! `sluice-jobs`: the runner binary. Parses arguments and hands over to the
//! library.

use sluice_process::config::Settings;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sluice_jobs::JobRunner;
use sluice_jobs::config::Config;

/// The Sluice job runner.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML); defaults to $SLUICE_CONFIG, then built-in defaults.
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Consume and run jobs (the default).
    Run,
    /// Apply database migrations and exit.
    Migrate,
    /// Inspect and act on the dead-letter queue.
    Dead {
        #[command(subcommand)]
        action: sluice_jobs::dead::DeadCommand,
    },
}

/// Runs the command; a failure is printed as one line (its causes joined
/// by `: `), whatever `RUST_BACKTRACE` says, and exits 1.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-jobs: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    sluice_process::logs::init(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Run) {
            Command::Migrate => Ok(sluice_jobs::migrate(&config).await?),
            Command::Dead { action } => sluice_jobs::dead::run(&config, action).await,
            Command::Run => {
                let runner = JobRunner::start(config)?;
                runner.shutdown_on(shutdown_signal()).await?;
                Ok(())
            }
        }
    })
}

/// Returns on SIGINT or SIGTERM; never, if SIGTERM cannot be listened for.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested");
}

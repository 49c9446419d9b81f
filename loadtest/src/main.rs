//! `sluice-loadtest`: drives a running Sluice deployment and reports what
//! it measured. Every loop is bounded in time; every failure is counted.

mod db_baseline;
mod hold;
mod ping;
mod publish;
mod report;
mod session;
mod sleep;
mod soak;
mod writers;

use clap::{Parser, Subcommand};

/// Load generator for Sluice.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sessions ping at a fixed rate while optional writers upsert batches.
    Ping(ping::PingArgs),
    /// Open and hold many idle sessions; report memory per session and survivors.
    Hold(hold::HoldArgs),
    /// Concurrent `sleep` jobs: total time shows whether slow jobs block.
    Sleep(sleep::SleepArgs),
    /// A backend publishing to connected users (HTTP or SQL): commit-to-socket
    /// latency and messages delivered per second.
    Publish(publish::PublishArgs),
    /// The writers' upserts issued straight to PostgreSQL: the physical limit.
    DbBaseline(db_baseline::DbBaselineArgs),
    /// Jobs from many sessions while dependencies restart on a schedule:
    /// counts lost and duplicated jobs, missing and repeated events.
    Soak(soak::SoakArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    report::raise_nofile();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Ping(args) => ping::run(args).await,
            Command::Hold(args) => hold::run(args).await,
            Command::Sleep(args) => sleep::run(args).await,
            Command::DbBaseline(args) => db_baseline::run(args).await,
            Command::Soak(args) => soak::run(args).await,
            Command::Publish(args) => publish::run(args).await,
        }
    })
}

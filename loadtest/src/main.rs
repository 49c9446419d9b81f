//! `sluice-loadtest`: drives a running Sluice deployment and reports what
//! it measured. Every loop is bounded in time; every failure is counted.

mod ping;
mod report;
mod session;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Ping(args) => ping::run(args).await,
        }
    })
}

//! `sluice-example`: a deployment's runner binary, Sluice's runner plus
//! `relabel_items`. Configured like `sluice-jobs` (`--config`,
//! `SLUICE_CONFIG`, `SLUICE_<SECTION>__<KEY>`).

use sluice_jobs::config::Config;
use sluice_process::config::Settings;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-example: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let file = std::env::args().skip_while(|a| a != "--config").nth(1);
    let config = Config::load(file.as_deref().map(std::path::Path::new))?;
    sluice_process::logs::init(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let runner = sluice_example::runner(config)?.start()?;
        runner.shutdown_on(shutdown_signal()).await?;
        Ok(())
    })
}

/// Returns on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested");
}

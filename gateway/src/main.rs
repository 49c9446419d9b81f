//! `sluice-gateway`: parses arguments and hands over to the library.

use sluice_process::config::Settings;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sluice_gateway::Gateway;
use sluice_gateway::config::Config;

/// The Sluice WebSocket gateway.
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
    /// Serve WebSocket and HTTP (the default).
    Serve,
    /// Print a signed token for a user, for trying Sluice by hand.
    Token {
        /// The user id (`sub` claim).
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
        /// Sign with the HS256 key of `auth.keys` with this id (and name it
        /// in the header) instead of `auth.jwt_secret`: to try a new key of
        /// a rotation.
        #[arg(long)]
        kid: Option<String>,
        /// The `scope` claim, space-separated; `sluice:publish` makes a
        /// service token for `POST /v1/publish`.
        #[arg(long)]
        scope: Option<String>,
    },
}

/// Runs the command; a failure is printed as one line (its causes joined
/// by `: `), whatever `RUST_BACKTRACE` says, and exits 1.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-gateway: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Token {
            user,
            ttl_secs,
            kid,
            scope,
        } => {
            let scope = scope.as_deref();
            let token = match kid {
                Some(kid) => {
                    sluice_gateway::auth::mint_with_kid(&config.auth, &kid, &user, ttl_secs, scope)?
                }
                None => sluice_gateway::auth::mint_scoped(&config.auth, &user, ttl_secs, scope)?,
            };
            println!("{token}");
            Ok(())
        }
        Command::Serve => {
            sluice_process::logs::init(&config.log);
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if config.gateway.worker_threads > 0 {
                builder.worker_threads(config.gateway.worker_threads);
            }
            let runtime = builder.enable_all().build()?;
            runtime.block_on(async move {
                let listener = bind_shared(&config.gateway.listen)?;
                let gateway = Gateway::start(config, listener)?;
                gateway.shutdown_on(shutdown_signal()).await?;
                Ok(())
            })
        }
    }
}

/// Binds `listen` with `SO_REUSEADDR` and `SO_REUSEPORT`, so that several
/// gateway processes can serve one port (the kernel spreads new connections
/// over them), with a listen backlog of 4096.
fn bind_shared(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    use std::net::ToSocketAddrs;
    let addr = listen
        .to_socket_addrs()
        .with_context(|| format!("resolving gateway.listen {listen:?}"))?
        .next()
        .with_context(|| format!("gateway.listen {listen:?} resolves to nothing"))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    socket.listen(4096)?;
    Ok(tokio::net::TcpListener::from_std(socket.into())?)
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

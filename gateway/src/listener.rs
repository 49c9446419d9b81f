//! The HTTP/1.1 accept loop. `axum::serve` gives hyper no timer, and
//! without a timer hyper applies no header-read timeout, so a client that
//! opens a connection and trickles (or never sends) its request head would
//! hold the connection for ever (slow-loris when nothing is in front of the
//! gateway). Here each connection is served by hyper's HTTP/1 builder with
//! a Tokio timer and `gateway.http_header_timeout_ms`, which hyper starts
//! whenever it waits for a request head: the first one and every one after
//! a keep-alive response, so an idle connection ends too.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How each accepted connection is set up.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionOptions {
    /// Time allowed for a complete request head, and for the next one on a
    /// kept-alive connection.
    pub header_timeout: Duration,
    /// `SO_SNDBUF` for each connection; 0 keeps the kernel's default.
    pub send_buffer_bytes: usize,
}

/// Serves `app` on `listener` until `stop` is cancelled; then stops
/// accepting, lets each connection finish the request it is in, and returns
/// when every connection has ended. Upgraded WebSockets are not waited for:
/// once upgraded, a connection is the session's, which drains on its own.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ConnectionOptions,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    pause_after_accept_error(&e).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        tune(&tcp, options);
        connections.spawn(serve_connection(
            tcp,
            peer,
            app.clone(),
            options,
            stop.clone(),
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// One connection: hyper's HTTP/1 with upgrades (the WebSocket route), the
/// peer address in each request's extensions as axum's `ConnectInfo`, and
/// a graceful end when `stop` is cancelled.
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    options: ConnectionOptions,
    stop: CancellationToken,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        tower_service::Service::call(&mut app, request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        // Timeouts, resets and malformed requests: the client's doing, and
        // one per connection, so not worth more than debug.
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// Per-connection socket options: no Nagle delay (pongs and events are
/// small), and the configured send buffer.
fn tune(tcp: &TcpStream, options: ConnectionOptions) {
    let _ = tcp.set_nodelay(true);
    if options.send_buffer_bytes > 0
        && let Err(e) = socket2::SockRef::from(tcp).set_send_buffer_size(options.send_buffer_bytes)
    {
        tracing::debug!(error = %e, "could not set the socket send buffer");
    }
}

/// An accept error is either about one connection (reset before accept:
/// try the next at once) or about the process (out of file descriptors:
/// pause, as accepting again at once would spin).
async fn pause_after_accept_error(e: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(error = %e, "accept failed; pausing 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

//! Limits before `hello`: a socket that announces a 16 MiB frame instead
//! of a hello is closed with 1009 after at most `gateway.max_hello_bytes`
//! (8 KiB) of it, and fifty such sockets, stalled mid-frame, leave the
//! gateway's memory where it was; and an address holding its share of
//! sockets that never said hello gets 429 for the next one.

use std::time::Duration;

use sluice_tests::system::rss_kib;
use sluice_tests::{Client, System, SystemOptions, token, unique_user};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upgrades a raw socket to a WebSocket by hand and returns it.
async fn upgraded(port: u16) -> TcpStream {
    let (head, socket) = upgrade(port).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    socket
}

/// Asks for an upgrade by hand; the response head and the socket.
async fn upgrade(port: u16) -> (String, TcpStream) {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    socket
        .write_all(
            format!(
                "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).await.unwrap();
        response.push(byte[0]);
    }
    (String::from_utf8_lossy(&response).into_owned(), socket)
}

/// Starts a masked text frame that announces `len` bytes of payload.
fn frame_header(len: u64) -> Vec<u8> {
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    header
}

/// Reads until the server's close frame and returns its code; `None` if
/// the connection ended without one.
async fn close_code(socket: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut chunk))
            .await
            .expect("no close within 10 s")
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() >= 4 && buf[0] == 0x88 {
            return Some(u16::from_be_bytes([buf[2], buf[3]]));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_first_frame_closes_1009_and_costs_no_memory() {
    // Measures the gateway process's memory.
    let system = System::start(SystemOptions::default().processes()).await;
    let port = system.port;
    let pid = system.gateway_pid(0);
    // A session first, so the gateway's pools and buffers are warm.
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&unique_user("pre"))).await;
    client.ping(1).await;
    let before = rss_kib(pid);

    let mut sockets = Vec::new();
    for _ in 0..50 {
        let mut socket = upgraded(port).await;
        socket.write_all(&frame_header(16 << 20)).await.unwrap();
        // 4 MiB of it, as far as the server reads, then the client stalls.
        let payload = vec![b'x'; 4 << 20];
        let _ = tokio::time::timeout(Duration::from_secs(2), socket.write_all(&payload)).await;
        sockets.push(socket);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid);
    for socket in &mut sockets {
        assert_eq!(close_code(socket).await, Some(1009));
    }
    let growth = after.saturating_sub(before);
    eprintln!("gateway RSS {before} KiB -> {after} KiB with 50 oversized pre-hello frames");
    assert!(
        growth < 50 * 1024,
        "RSS grew by {growth} KiB for 50 sockets (at most 1 MiB each allowed)"
    );
    // The gateway serves on.
    client.ping(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_never_say_hello_are_capped_per_address() {
    let system = System::start(
        SystemOptions::default().gateway("SLUICE_GATEWAY__MAX_UNAUTHENTICATED_PER_ADDRESS", 5),
    )
    .await;
    let port = system.port;
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(upgraded(port).await);
    }
    let (head, _) = upgrade(port).await;
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");

    // One leaves: its place comes back once the gateway sees it gone.
    drop(silent.pop());
    let started = std::time::Instant::now();
    // The socket that gets in is the one that says hello: a probe that got
    // in and left would hold the place until the gateway saw it gone.
    let mut client = loop {
        match Client::connect_with(&system.ws_url(), &[]).await {
            Ok(client) => break client,
            Err(refused) => assert!(
                started.elapsed() < Duration::from_secs(5),
                "still refused: {refused}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    client
        .send_frame(&sluice_tests::client::hello(
            &token(&unique_user("cap")),
            None,
        ))
        .await;
    assert!(matches!(
        client.next_frame().await,
        sluice_proto::ServerFrame::Welcome { .. }
    ));
    // Said hello: it no longer counts, so another socket gets in.
    client.ping(1).await;
    let (head, _) = upgrade(port).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

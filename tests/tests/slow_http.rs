//! Slow HTTP clients (slow-loris, with nothing in front of the gateway): a
//! connection that never sends its request head, trickles it, or idles
//! after a response is closed after `gateway.http_header_timeout_ms`; a
//! request body that has not fully arrived after
//! `gateway.http_body_timeout_ms` is answered 408, however steadily it
//! trickles.

use std::time::{Duration, Instant};

use sluice_tests::{System, SystemOptions, token, unique_user};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_TIMEOUT_MS: u64 = 600;
const BODY_TIMEOUT_MS: u64 = 1_000;

async fn start() -> System {
    System::start(
        SystemOptions::default()
            .gateway("SLUICE_GATEWAY__HTTP_HEADER_TIMEOUT_MS", HEADER_TIMEOUT_MS)
            .gateway("SLUICE_GATEWAY__HTTP_BODY_TIMEOUT_MS", BODY_TIMEOUT_MS),
    )
    .await
}

/// Reads until the server closes the connection; what it sent, and how
/// long the close took. Fails if the connection is still open after 10 s.
async fn read_until_closed(socket: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.read(&mut chunk)).await {
            Err(_) => panic!(
                "connection still open after 10 s; received {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&received).into_owned(),
                    started.elapsed(),
                );
            }
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
        }
    }
}

fn assert_closed_near_the_header_timeout(took: Duration) {
    let timeout = Duration::from_millis(HEADER_TIMEOUT_MS);
    assert!(
        took >= timeout.mul_f64(0.8) && took < timeout + Duration::from_secs(3),
        "closed after {took:?}, header timeout {timeout:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_do_not_finish_a_request_head_are_closed() {
    let system = start().await;
    let port = system.port;

    // Says nothing at all.
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (sent, took) = read_until_closed(&mut silent).await;
    assert!(
        !sent.contains("200 OK"),
        "nothing asked, nothing served: {sent}"
    );
    assert_closed_near_the_header_timeout(took);

    // Trickles a head that never ends, a header line every 200 ms.
    let mut trickle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let writer = tokio::spawn(async move {
        let started = Instant::now();
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if trickle
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return (started.elapsed(), trickle);
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the trickled head was still accepted after 10 s"
            );
        }
        unreachable!()
    });
    let (took, mut trickle) = writer.await.unwrap();
    assert!(
        took < Duration::from_millis(HEADER_TIMEOUT_MS) + Duration::from_secs(3),
        "a trickled head was accepted for {took:?}"
    );
    let (sent, _) = read_until_closed(&mut trickle).await;
    assert!(!sent.contains("200 OK"), "{sent}");

    // Asks once, gets the answer, then idles: the idle wait is bounded too.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (sent, took) = read_until_closed(&mut idle).await;
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent}");
    assert_closed_near_the_header_timeout(took);

    // Meanwhile the gateway serves as usual.
    assert_eq!(system.http_status("/healthz").await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_gets_408_however_it_trickles() {
    let system = start().await;
    let port = system.port;
    let user = unique_user("slowbody");
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let body = br#"{"kind":"sleep","args":{"ms":1}}"#;
    socket
        .write_all(
            format!(
                "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                token(&user),
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // One byte every 100 ms: each arrives well inside the deadline, but
    // the whole body would take 3.2 s.
    let started = Instant::now();
    let (mut reader, mut writer) = socket.into_split();
    let trickle = tokio::spawn(async move {
        for byte in body {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&response).contains("}}") {
        let n = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut chunk))
            .await
            .expect("no answer within 10 s")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        response.extend_from_slice(&chunk[..n]);
    }
    let took = started.elapsed();
    trickle.abort();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains(r#""code":"bad_request""#), "{response}");
    assert!(
        took >= Duration::from_millis(BODY_TIMEOUT_MS).mul_f64(0.8)
            && took < Duration::from_millis(BODY_TIMEOUT_MS) + Duration::from_secs(2),
        "answered after {took:?}"
    );
    let recorded: i64 = sluice_tests::system::db()
        .await
        .query_one("SELECT count(*) FROM jobs WHERE user_id = $1", &[&user])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 0, "a timed-out body records nothing");
}

//! nginx as the public edge, with the shipped snippets
//! (deploy/nginx/sluice-locations.conf and sluice-tls.conf): WebSocket
//! sessions and the API over TLS with a certificate from a throwaway
//! authority the test makes, HSTS on every answer, the operations
//! endpoints refused, and a per-address request rate answered 429 in the
//! API's JSON shape.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use sluice_proto::{EventStatus, ServerFrame};
use sluice_tests::{Client, System, SystemOptions, token, unique_user};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn behind_nginx() -> SystemOptions {
    SystemOptions {
        nginx: true,
        ..Default::default()
    }
}

fn roots(system: &System) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let cert = CertificateDer::from_pem_file(system.nginx_ca()).expect("test cert");
    roots.add(cert).expect("a usable root");
    roots
}

/// `GET path` over TLS to nginx; the whole response (head and body) and
/// the TLS version agreed.
async fn https_get(system: &System, path: &str) -> (String, rustls::ProtocolVersion) {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots(system))
    .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", system.nginx_tls_port()))
        .await
        .unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("TLS handshake with nginx");
    let version = tls.get_ref().1.protocol_version().unwrap();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut response = Vec::new();
    // nginx closes after answering (Connection: close); a TLS close_notify
    // or a plain EOF both end the read.
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response)).await;
    (String::from_utf8_lossy(&response).into_owned(), version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_the_api_work_over_tls_with_hsts() {
    let system = System::start(behind_nginx()).await;
    let user = unique_user("tls");
    let url = format!("wss://127.0.0.1:{}/v1/ws", system.nginx_tls_port());
    let mut client = Client::connect_tls(&url, roots(&system))
        .await
        .expect("wss:// through nginx");
    client
        .send_frame(&sluice_tests::client::hello(&token(&user), None))
        .await;
    assert!(
        matches!(client.next_frame().await, ServerFrame::Welcome { .. }),
        "welcome over TLS"
    );
    let job = client.submit("t", "sleep", json!({ "ms": 10 })).await;
    let events = client.events_until_terminal(job).await;
    assert_eq!(
        Client::statuses(&events),
        [EventStatus::Running, EventStatus::Done]
    );

    let (health, version) = https_get(&system, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        matches!(
            version,
            rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2
        ),
        "{version:?}"
    );
    let lower = health.to_ascii_lowercase();
    assert!(
        lower.contains("strict-transport-security: max-age=63072000"),
        "{health}"
    );
    let (metrics, _) = https_get(&system, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 404"), "{metrics}");
    assert!(metrics.contains(r#""code":"no_route""#), "{metrics}");
    assert!(
        metrics
            .to_ascii_lowercase()
            .contains("strict-transport-security"),
        "HSTS on error answers too: {metrics}"
    );

    // A client that does not trust the certificate is refused.
    let untrusted = Client::connect_tls(&url, rustls::RootCertStore::empty()).await;
    assert!(untrusted.is_err(), "a certificate nobody vouched for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_past_its_request_rate_gets_429_rate_limited() {
    // A rate no test reaches by accident elsewhere is 1000r/s; here 1r/s,
    // so the shipped burst of 100 is all this address gets at once.
    let system = System::start(behind_nginx().nginx_api_rate("1r/s")).await;
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/healthz", system.nginx_port());
    let (mut ok, mut limited) = (0, None);
    for _ in 0..130 {
        let response = http.get(&url).send().await.unwrap();
        match response.status().as_u16() {
            200 => ok += 1,
            429 => {
                let retry_after = response.headers().get("retry-after").cloned();
                let body: serde_json::Value = response.json().await.unwrap();
                limited.get_or_insert((retry_after, body));
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // The burst (100) passes, plus one a second.
    assert!((100..=110).contains(&ok), "{ok} passed");
    let (retry_after, body) = limited.expect("no request was limited");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(body["error"]["retry_after_ms"], 1000, "{body}");
    assert_eq!(retry_after.unwrap(), "1");
    // The WebSocket route is not under the request rate.
    let (_client, welcome) =
        Client::hello(&system.nginx_ws_url(), &token(&unique_user("rate"))).await;
    assert!(matches!(welcome, ServerFrame::Welcome { .. }));
}

use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;

use super::*;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests-data");

fn data(name: &str) -> String {
    format!("{DATA}/{name}")
}

fn amqps(url: &str) -> AmqpConfig {
    AmqpConfig {
        url: url.into(),
        ..AmqpConfig::default()
    }
}

fn with_ca(url: &str, ca: &str) -> AmqpConfig {
    AmqpConfig {
        tls_ca_file: data(ca),
        ..amqps(url)
    }
}

fn with_client(mut config: AmqpConfig, cert: &str, key: &str) -> AmqpConfig {
    config.tls_client_cert_file = if cert.is_empty() {
        String::new()
    } else {
        data(cert)
    };
    config.tls_client_key_file = if key.is_empty() {
        String::new()
    } else {
        data(key)
    };
    config
}

const URL: &str = "amqps://u:p@localhost/%2f";

#[test]
fn plain_amqp_needs_no_tls_and_refuses_tls_settings_it_would_ignore() {
    AmqpConfig::default().validate().unwrap();
    let plain = "amqp://u:p@127.0.0.1:5672/%2f";
    for (config, setting) in [
        (with_ca(plain, "ca.pem"), "amqp.tls_ca_file"),
        (
            with_client(amqps(plain), "client.pem", ""),
            "amqp.tls_client_cert_file",
        ),
        (
            with_client(amqps(plain), "", "client.key"),
            "amqp.tls_client_key_file",
        ),
    ] {
        let (named, reason) = config.validate().unwrap_err();
        assert_eq!(named, setting);
        assert!(reason.contains("amqps://"), "{reason}");
    }
}

#[test]
fn the_ca_file_is_read_and_checked_at_validation() {
    with_ca(URL, "ca.pem").validate().unwrap();
    // One amqps:// node among plain ones is enough for the settings to count.
    with_ca(&format!("amqp://u:p@127.0.0.1/%2f,{URL}"), "ca.pem")
        .validate()
        .unwrap();
    for (file, says) in [
        ("missing.pem", "cannot be read"),
        ("README.md", "holds no PEM certificate"),
        ("client.key", "holds no PEM certificate"),
    ] {
        let (setting, reason) = with_ca(URL, file).validate().unwrap_err();
        assert_eq!(setting, "amqp.tls_ca_file", "{file}");
        assert!(
            reason.contains(says) && reason.contains(file),
            "{file}: {reason}"
        );
    }
    // Without a CA file the system's roots are used; a host without any
    // says so, naming the setting that would fix it.
    if let Err((setting, reason)) = amqps(URL).validate() {
        assert_eq!(setting, "amqp.tls_ca_file", "{reason}");
    }
}

#[test]
fn a_client_certificate_needs_both_files_and_a_key_that_matches() {
    with_client(with_ca(URL, "ca.pem"), "client.pem", "client.key")
        .validate()
        .unwrap();
    let cases = [
        (
            "client.pem",
            "",
            "amqp.tls_client_key_file",
            "both or neither",
        ),
        (
            "",
            "client.key",
            "amqp.tls_client_cert_file",
            "both or neither",
        ),
        (
            "client.pem",
            "server.key",
            "amqp.tls_client_key_file",
            "cannot be used",
        ),
        (
            "client.pem",
            "client.pem",
            "amqp.tls_client_key_file",
            "no unencrypted PEM private key",
        ),
        (
            "client.key",
            "client.key",
            "amqp.tls_client_cert_file",
            "holds no PEM certificate",
        ),
        (
            "client.pem",
            "missing.key",
            "amqp.tls_client_key_file",
            "cannot be read",
        ),
    ];
    for (cert, key, setting, says) in cases {
        let (named, reason) = with_client(with_ca(URL, "ca.pem"), cert, key)
            .validate()
            .unwrap_err();
        assert_eq!(named, setting, "{cert} {key}: {reason}");
        assert!(reason.contains(says), "{cert} {key}: {reason}");
    }
}

/// Accepts one TLS connection on `ip` as a broker would (the test
/// server certificate for `localhost`, signed by `ca.pem`), demanding a
/// client certificate signed by `ca.pem` when `client_auth`; answers
/// whether the handshake completed, and with which client certificate.
async fn broker(
    client_auth: bool,
    ip: &str,
) -> (u16, tokio::task::JoinHandle<Result<bool, String>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if client_auth {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(certificates("ca", Path::new(&data("ca.pem"))).unwrap());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let server = builder
        .with_single_cert(
            certificates("server", Path::new(&data("server.pem"))).unwrap(),
            PrivateKeyDer::from_pem_file(data("server.key")).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let stream = acceptor.accept(socket).await.map_err(|e| e.to_string())?;
        Ok(stream.get_ref().1.peer_certificates().is_some())
    });
    (port, served)
}

/// Connects with `config` to a broker from [`broker`] at `port` (which
/// speaks no AMQP, so the connect fails after the handshake either way).
async fn connect_to(config: &AmqpConfig) -> String {
    let attempt = tokio::time::timeout(
        Duration::from_secs(10),
        crate::connect(config, "sluice-tls-test"),
    );
    match attempt.await.expect("the connect ends") {
        Ok(_) => panic!("connected to a broker that speaks no AMQP"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn amqps_does_tls_with_the_ca_file_and_the_client_certificate() {
    let (port, served) = broker(true, "127.0.0.1").await;
    let url = format!("amqps://u:p@localhost:{port}/%2f");
    connect_to(&with_client(
        with_ca(&url, "ca.pem"),
        "client.pem",
        "client.key",
    ))
    .await;
    assert_eq!(served.await.unwrap(), Ok(true));
}

#[tokio::test]
async fn amqps_refuses_a_broker_the_ca_file_does_not_vouch_for() {
    let (port, served) = broker(false, "127.0.0.1").await;
    connect_to(&with_ca(
        &format!("amqps://u:p@localhost:{port}/%2f"),
        "other-ca.pem",
    ))
    .await;
    assert!(served.await.unwrap().is_err());
    // Nor one whose certificate names another host (it names localhost
    // and 127.0.0.1 only).
    let (port, served) = broker(false, "127.0.0.2").await;
    connect_to(&with_ca(
        &format!("amqps://u:p@127.0.0.2:{port}/%2f"),
        "ca.pem",
    ))
    .await;
    assert!(served.await.unwrap().is_err());
    // And a broker that demands a client certificate refuses a client
    // without one.
    let (port, served) = broker(true, "127.0.0.1").await;
    connect_to(&with_ca(
        &format!("amqps://u:p@localhost:{port}/%2f"),
        "ca.pem",
    ))
    .await;
    assert!(served.await.unwrap().is_err());
}

#[tokio::test]
async fn a_bad_file_fails_the_connect_naming_the_setting() {
    let config = with_ca(URL, "missing.pem");
    let err = crate::connect(&config, "sluice-tls-test")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("amqp.tls_ca_file"), "{err}");
}

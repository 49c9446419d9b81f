use std::path::Path;

use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

use super::*;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests-data");

fn data(name: &str) -> String {
    format!("{DATA}/{name}")
}

fn tls_of(url: &str) -> Tls {
    split(url).unwrap_or_else(|e| panic!("{url}: {e}")).1
}

fn reason_of(url: &str) -> String {
    match split(url) {
        Err(StoreError::Config(reason)) => reason,
        other => panic!("{url}: expected a config error, got {other:?}"),
    }
}

fn file(name: &str) -> Roots {
    Roots::File(PathBuf::from(data(name)))
}

#[test]
fn each_mode_maps_to_what_libpq_does() {
    let base = "postgres://u:p@db.example.com/app";
    let ca = data("ca.pem");
    let cases = [
        ("", Mode::Prefer, Check::Nothing, SslMode::Prefer),
        (
            "?sslmode=disable",
            Mode::Disable,
            Check::Nothing,
            SslMode::Disable,
        ),
        (
            "?sslmode=prefer",
            Mode::Prefer,
            Check::Nothing,
            SslMode::Prefer,
        ),
        (
            "?sslmode=require",
            Mode::Require,
            Check::Nothing,
            SslMode::Require,
        ),
        (
            &format!("?sslmode=verify-ca&sslrootcert={ca}"),
            Mode::VerifyCa,
            Check::Chain(file("ca.pem")),
            SslMode::Require,
        ),
        (
            "?sslmode=verify-full",
            Mode::VerifyFull,
            Check::ChainAndName(Roots::System),
            SslMode::Require,
        ),
        (
            &format!("?sslmode=verify-full&sslrootcert={ca}"),
            Mode::VerifyFull,
            Check::ChainAndName(file("ca.pem")),
            SslMode::Require,
        ),
        // libpq: with a root file, prefer and require check the chain.
        (
            &format!("?sslmode=require&sslrootcert={ca}"),
            Mode::Require,
            Check::Chain(file("ca.pem")),
            SslMode::Require,
        ),
        (
            &format!("?sslrootcert={ca}"),
            Mode::Prefer,
            Check::Chain(file("ca.pem")),
            SslMode::Prefer,
        ),
        // A root file is not read, nor needed, without TLS.
        (
            "?sslmode=disable&sslrootcert=/nowhere.pem",
            Mode::Disable,
            Check::Nothing,
            SslMode::Disable,
        ),
    ];
    for (query, mode, check, ssl_mode) in cases {
        let url = format!("{base}{query}");
        let (rest, tls) = split(&url).unwrap();
        assert_eq!(rest, base, "{url}");
        assert_eq!(
            tls,
            Tls {
                mode,
                check,
                client: None
            },
            "{url}"
        );
        assert_eq!(tls.mode.ssl_mode(), ssl_mode, "{url}");
    }
    for mode in Mode::ALL {
        assert_eq!(Mode::parse(mode.as_str()).unwrap(), mode);
    }
}

#[test]
fn sslrootcert_system_means_verify_full_and_refuses_weaker_modes() {
    let tls = tls_of("postgres://u@h/d?sslrootcert=system");
    assert_eq!(
        tls,
        Tls {
            mode: Mode::VerifyFull,
            check: Check::ChainAndName(Roots::System),
            client: None
        }
    );
    assert_eq!(
        tls_of("postgres://u@h/d?sslmode=verify-full&sslrootcert=system").check,
        Check::ChainAndName(Roots::System)
    );
    for weaker in ["disable", "prefer", "require", "verify-ca"] {
        let reason = reason_of(&format!(
            "postgres://u@h/d?sslmode={weaker}&sslrootcert=system"
        ));
        assert!(reason.starts_with("database.url: "), "{reason}");
        assert!(
            reason.contains(weaker) && reason.contains("verify-full"),
            "{reason}"
        );
    }
}

#[test]
fn unknown_modes_and_verify_ca_without_roots_are_refused_naming_the_setting() {
    for bad in ["verify_full", "VERIFY-FULL", "true", ""] {
        let reason = reason_of(&format!("postgres://u@h/d?sslmode={bad}"));
        assert!(reason.starts_with("database.url: sslmode"), "{reason}");
        assert!(reason.contains(&format!("`{bad}`")), "{reason}");
    }
    assert!(reason_of("postgres://u@h/d?sslmode=allow").contains("prefer"));
    assert!(reason_of("postgres://u@h/d?sslmode=verify-ca").contains("sslrootcert"));
    assert!(reason_of("postgres://u@h/d?sslrootcert=").contains("sslrootcert is empty"));
    assert!(Mode::parse("nope").is_err());
    // The section's validation says so too, before anything connects.
    let config = crate::DatabaseConfig {
        url: "postgres://u:secret@h/d?sslmode=verify-fully".into(),
        ..crate::DatabaseConfig::default()
    };
    let (setting, reason) = config.validate().unwrap_err();
    assert_eq!(setting, "database.url");
    assert!(
        reason.contains("verify-fully") && !reason.contains("secret"),
        "{reason}"
    );
    crate::DatabaseConfig::default().validate().unwrap();
}

#[test]
fn other_parameters_survive_the_strip_in_order() {
    let url = "postgresql://u:p@h1:5433,h2/app?application_name=sluice%20jobs&sslmode=verify-full\
               &connect_timeout=7&sslrootcert=%2Fetc%2Fssl%2Frds%20ca.pem&options=-c%20x%3D1";
    let (rest, tls) = split(url).unwrap();
    assert_eq!(
        rest,
        "postgresql://u:p@h1:5433,h2/app?application_name=sluice%20jobs&connect_timeout=7\
         &options=-c%20x%3D1"
    );
    assert_eq!(
        tls.check,
        Check::ChainAndName(Roots::File("/etc/ssl/rds ca.pem".into()))
    );
    let pg: tokio_postgres::Config = rest.parse().unwrap();
    assert_eq!(pg.get_application_name(), Some("sluice jobs"));
    assert_eq!(
        pg.get_connect_timeout(),
        Some(&std::time::Duration::from_secs(7))
    );
    assert_eq!(pg.get_options(), Some("-c x=1"));
    assert_eq!(pg.get_hosts().len(), 2);

    // Only TLS parameters: no `?` left behind. No query: unchanged.
    assert_eq!(
        split("postgres://u@h/d?sslmode=require").unwrap().0,
        "postgres://u@h/d"
    );
    assert_eq!(split("postgres://u@h/d").unwrap().0, "postgres://u@h/d");
    assert_eq!(split("postgres://h").unwrap().0, "postgres://h");
    // The last one given wins, as in libpq.
    assert_eq!(
        tls_of("postgres://h/d?sslmode=disable&sslmode=require").mode,
        Mode::Require
    );
}

#[test]
fn a_password_with_query_characters_survives() {
    // Percent-encoded, as a URL should have it.
    let (rest, tls) = split("postgres://u:p%3Fa%26b%3Dc%25@h/d?sslmode=require").unwrap();
    assert_eq!(rest, "postgres://u:p%3Fa%26b%3Dc%25@h/d");
    assert_eq!(tls.mode, Mode::Require);
    let pg: tokio_postgres::Config = rest.parse().unwrap();
    assert_eq!(pg.get_password(), Some(&b"p?a&b=c%"[..]));
    // Pasted raw: tokio-postgres reads credentials up to the first `@`,
    // and so does the strip.
    let (rest, tls) = split("postgres://u:pa?ss&w=d@h/d?sslmode=disable").unwrap();
    assert_eq!(rest, "postgres://u:pa?ss&w=d@h/d");
    assert_eq!(tls.mode, Mode::Disable);
    let pg: tokio_postgres::Config = rest.parse().unwrap();
    assert_eq!(pg.get_password(), Some(&b"pa?ss&w=d"[..]));
}

#[test]
fn the_key_value_form_is_stripped_too() {
    let conn =
        r"host=h user=u password='a b\' c' sslmode = verify-ca  sslrootcert='/x y/ca.pem' dbname=d";
    let (rest, tls) = split(conn).unwrap();
    assert_eq!(rest, r"host=h user=u password='a b\' c' dbname=d");
    assert_eq!(
        tls,
        Tls {
            mode: Mode::VerifyCa,
            check: Check::Chain(Roots::File("/x y/ca.pem".into())),
            client: None
        }
    );
    let pg: tokio_postgres::Config = rest.parse().unwrap();
    assert_eq!(pg.get_password(), Some(&b"a b' c"[..]));
    assert_eq!(pg.get_dbname(), Some("d"));
    assert_eq!(tls_of("host=h sslmode=disable").mode, Mode::Disable);
    assert_eq!(split("host=h sslmode=disable").unwrap().0, "host=h");
    // Malformed: left for tokio-postgres to refuse.
    let (rest, _) = split("host=h sslmode=require password='open").unwrap();
    assert_eq!(rest, "host=h password='open");
    assert!(rest.parse::<tokio_postgres::Config>().is_err());
}

#[test]
fn connect_config_sets_the_mode_and_refuses_the_url_tokio_postgres_would() {
    let url = format!(
        "postgres://u@localhost/d?sslmode=verify-full&sslrootcert={}",
        data("ca.pem")
    );
    let (pg, _) = connect_config(&url).unwrap();
    assert_eq!(pg.get_ssl_mode(), SslMode::Require);
    let (pg, _) = connect_config("postgres://u@localhost/d?sslmode=disable").unwrap();
    assert_eq!(pg.get_ssl_mode(), SslMode::Disable);
    let (pg, _) = connect_config("postgres://u@localhost/d").unwrap();
    assert_eq!(pg.get_ssl_mode(), SslMode::Prefer);
    let Err(StoreError::Config(reason)) = connect_config("postgres://u@h/d?nonsense=1") else {
        panic!("an unknown option must be refused");
    };
    assert!(reason.starts_with("database.url: "), "{reason}");
}

/// A file under the temp dir with `contents`, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("sluice-tls-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn build_error(roots: &Path) -> String {
    let url = format!(
        "postgres://u@h/d?sslmode=verify-full&sslrootcert={}",
        roots.display()
    );
    match tls_of(&url).client_config() {
        Err(StoreError::Config(reason)) => reason,
        Ok(_) => panic!("{url}: built"),
        Err(other) => panic!("{url}: {other:?}"),
    }
}

#[test]
fn a_missing_empty_or_foreign_root_file_is_a_config_error_at_build() {
    let missing = Path::new("/nonexistent/sluice/ca.pem");
    let reason = build_error(missing);
    assert!(
        reason.starts_with("database.url: sslrootcert `/nonexistent/sluice/ca.pem` cannot be read"),
        "{reason}"
    );
    let empty = TempFile::new("empty.pem", b"");
    assert!(build_error(&empty.0).contains("holds no PEM certificate"));
    let key_only = TempFile::new("key.pem", &std::fs::read(data("server.key")).unwrap());
    assert!(build_error(&key_only.0).contains("holds no PEM certificate"));
    let broken = TempFile::new(
        "broken.pem",
        b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    assert!(build_error(&broken.0).contains("is not a PEM bundle"));
    // Through the pool, as at start.
    let config = crate::DatabaseConfig {
        url: format!(
            "postgres://u@h/d?sslmode=verify-ca&sslrootcert={}",
            missing.display()
        ),
        ..crate::DatabaseConfig::default()
    };
    assert!(
        matches!(crate::pool(&config), Err(StoreError::Config(r)) if r.contains("cannot be read"))
    );
    // Every mode with a good file builds.
    for mode in ["prefer", "require", "verify-ca", "verify-full"] {
        let url = format!(
            "postgres://u@h/d?sslmode={mode}&sslrootcert={}",
            data("ca.pem")
        );
        tls_of(&url).client_config().unwrap();
    }
    tls_of("postgres://h/d?sslmode=require")
        .client_config()
        .unwrap();
    tls_of("postgres://h/d?sslmode=disable")
        .client_config()
        .unwrap();
}

proptest::proptest! {
    /// No string reaches a panic: it is split, or refused.
    #[test]
    fn no_url_panics(url in "(postgres(ql)?://)?[a-z@:/?&=%'\\\\ ,.0-9F-]{0,40}") {
        let _ = split(&url);
    }

    /// Whatever else the query holds comes out as it went in.
    #[test]
    fn other_parameters_come_out_unchanged(
        pairs in proptest::collection::vec(("[a-z_]{1,8}", "[a-z0-9%]{0,6}"), 0..5),
        mode in proptest::sample::select(Mode::ALL.to_vec()),
    ) {
        let kept: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k != "sslmode" && k != "sslrootcert")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut all = kept.clone();
        all.insert(all.len() / 2, format!("sslmode={}", mode.as_str()));
        all.insert(0, "sslrootcert=%2Froot.pem".to_owned());
        let (rest, tls) = split(&format!("postgres://u:p@h/d?{}", all.join("&"))).unwrap();
        let expected = if kept.is_empty() {
            "postgres://u:p@h/d".to_owned()
        } else {
            format!("postgres://u:p@h/d?{}", kept.join("&"))
        };
        proptest::prop_assert_eq!(rest, expected);
        proptest::prop_assert_eq!(tls.mode, mode);
        proptest::prop_assert_ne!(tls.check, Check::ChainAndName(Roots::System));
    }
}

/// Serves one TLS handshake on 127.0.0.1 with the test server certificate
/// (for `localhost` and `127.0.0.1`, signed by `ca.pem`), and says whether
/// a client with `url`'s policy, asking for `host`, completed it.
async fn handshake(url: &str, host: &str) -> Result<(), String> {
    let certs = CertificateDer::pem_file_iter(data("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(data("server.key")).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let _ = acceptor.accept(socket).await;
    });

    let mut connector = tls_of(url).connector().map_err(|e| e.to_string())?;
    let socket = TcpStream::connect(addr).await.unwrap();
    let tls_connect = MakeTlsConnect::<TcpStream>::make_tls_connect(&mut connector, host).unwrap();
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        TlsConnect::connect(tls_connect, socket),
    )
    .await
    .expect("the handshake ends");
    serve.abort();
    outcome.map(drop).map_err(|e| e.to_string())
}

#[tokio::test]
async fn verify_full_needs_the_right_root_and_host_name() {
    let url = format!(
        "postgres://u@h/d?sslmode=verify-full&sslrootcert={}",
        data("ca.pem")
    );
    handshake(&url, "localhost").await.unwrap();
    handshake(&url, "127.0.0.1").await.unwrap();
    let wrong_name = handshake(&url, "db.example.com").await.unwrap_err();
    assert!(wrong_name.contains("not valid for name"), "{wrong_name}");
    let other = format!(
        "postgres://u@h/d?sslmode=verify-full&sslrootcert={}",
        data("other-ca.pem")
    );
    let untrusted = handshake(&other, "localhost").await.unwrap_err();
    assert!(untrusted.contains("UnknownIssuer"), "{untrusted}");
}

#[tokio::test]
async fn verify_ca_ignores_the_name_but_not_the_chain() {
    let url = format!(
        "postgres://u@h/d?sslmode=verify-ca&sslrootcert={}",
        data("ca.pem")
    );
    handshake(&url, "db.example.com").await.unwrap();
    handshake(&url, "localhost").await.unwrap();
    let other = format!(
        "postgres://u@h/d?sslmode=verify-ca&sslrootcert={}",
        data("other-ca.pem")
    );
    let untrusted = handshake(&other, "db.example.com").await.unwrap_err();
    assert!(untrusted.contains("UnknownIssuer"), "{untrusted}");
}

#[tokio::test]
async fn require_accepts_an_untrusted_certificate_unless_given_roots() {
    handshake("postgres://u@h/d?sslmode=require", "db.example.com")
        .await
        .unwrap();
    handshake("postgres://u@h/d", "localhost").await.unwrap();
    // libpq: a root file makes require check the chain.
    let other = format!(
        "postgres://u@h/d?sslmode=require&sslrootcert={}",
        data("other-ca.pem")
    );
    let untrusted = handshake(&other, "localhost").await.unwrap_err();
    assert!(untrusted.contains("UnknownIssuer"), "{untrusted}");
}

#[test]
fn sslcert_and_sslkey_are_taken_out_and_go_together() {
    let (rest, tls) = split(
        "postgres://u@h/d?sslmode=require&sslcert=/c/me.pem&application_name=x&sslkey=/c/me.key",
    )
    .unwrap();
    assert_eq!(rest, "postgres://u@h/d?application_name=x");
    assert_eq!(
        tls.client,
        Some(ClientCert {
            cert: "/c/me.pem".into(),
            key: "/c/me.key".into()
        })
    );
    let (rest, tls) = split("host=h sslcert='/a b/c.pem' sslkey=/k.pem user=u").unwrap();
    assert_eq!(rest, "host=h user=u");
    assert_eq!(tls.client.unwrap().cert, PathBuf::from("/a b/c.pem"));
    for (url, says) in [
        ("postgres://u@h/d?sslcert=/c.pem", "sslkey"),
        ("postgres://u@h/d?sslkey=/k.pem", "sslcert"),
        ("postgres://u@h/d?sslcert=&sslkey=/k.pem", "PEM files"),
        (
            "postgres://u@h/d?sslmode=disable&sslcert=/c.pem&sslkey=/k.pem",
            "disable",
        ),
    ] {
        let err = split(url).unwrap_err().to_string();
        assert!(err.contains(says), "{url}: {err}");
    }
    // Files that are missing or hold no key fail the start, naming them.
    let (_, tls) = split("postgres://u@h/d?sslcert=/nowhere/c.pem&sslkey=/nowhere/k.pem").unwrap();
    let err = tls.client_config().unwrap_err().to_string();
    assert!(
        err.contains("sslcert") && err.contains("/nowhere/c.pem"),
        "{err}"
    );
}

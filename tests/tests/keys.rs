//! Key rotation through the real gateway: a JWKS file (`auth.jwks_file`)
//! holding key A, then A and B, then B only, each change read on SIGHUP by
//! the gateway process (or by the reload timer, in-process). Tokens of a
//! key in the file get `welcome`; once a key is removed, its tokens are
//! closed with 1008 "unknown key id". The gateway never restarts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sluice_proto::ServerFrame;
use sluice_tests::client::{Received, hello};
use sluice_tests::{Client, System, SystemOptions, eventually, unique_user};

// Test-only key pairs (gateway/tests-data/README.md): public in this
// repository, so trusted nowhere else.
const KEY_A: &str = include_str!("../../gateway/tests-data/ec-a.key.pem");
const KEY_B: &str = include_str!("../../gateway/tests-data/ec-b.key.pem");

/// How long a reload may take to be seen after the signal (or the tick).
const RELOAD_PATIENCE: Duration = Duration::from_secs(10);

/// A token for `user`, ES256, signed with `private_pem` and naming `kid`.
fn token(private_pem: &str, kid: &str, user: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let exp = sluice_proto::now_ms() / 1000 + 3600;
    let key = EncodingKey::from_ec_pem(private_pem.as_bytes()).expect("a test key");
    jsonwebtoken::encode(&header, &json!({ "sub": user, "exp": exp }), &key)
        .expect("signing a test token")
}

/// Writes a JWKS document of these (kid, private key) pairs' public keys
/// to `path` as an operator should: a new file renamed over the old, so the
/// gateway never reads half of one.
fn write_jwks(path: &Path, keys: &[(&str, &str)]) {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|(kid, private_pem)| {
            let key = EncodingKey::from_ec_pem(private_pem.as_bytes()).expect("a test key");
            let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).expect("a public JWK");
            jwk.common.key_id = Some((*kid).to_owned());
            serde_json::to_value(jwk).expect("a JWK as JSON")
        })
        .collect();
    let fresh = path.with_extension("json.new");
    std::fs::write(&fresh, json!({ "keys": keys }).to_string()).expect("writing the JWKS");
    std::fs::rename(&fresh, path).expect("renaming the JWKS into place");
}

/// A folder for the key file, removed when dropped.
struct KeyDir(PathBuf);

impl KeyDir {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("sluice-e2e-keys-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("a folder for the key file");
        KeyDir(dir)
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether `hello` with `token` gets `welcome` (rather than a close).
async fn welcomed(url: &str, token: &str) -> bool {
    let mut client = Client::connect(url).await;
    client.send_frame(&hello(token, None)).await;
    match client.try_receive(Duration::from_secs(5)).await {
        Some(Received::Frame(ServerFrame::Welcome { .. })) => true,
        Some(Received::Frame(other)) => panic!("expected welcome or a close, got {other:?}"),
        Some(Received::Closed(_)) | None => false,
    }
}

/// Waits until `hello` with `token` is welcomed.
async fn welcomed_eventually(url: &str, token: &str, what: &str) {
    eventually(RELOAD_PATIENCE, what, || async {
        welcomed(url, token).await.then_some(())
    })
    .await;
}

/// Waits until `hello` with `token` is refused, and checks that it is
/// refused with 1008 "unknown key id".
async fn refused_eventually(url: &str, token: &str, what: &str) {
    eventually(RELOAD_PATIENCE, what, || async {
        (!welcomed(url, token).await).then_some(())
    })
    .await;
    let mut client = Client::connect(url).await;
    client.send_frame(&hello(token, None)).await;
    assert_eq!(
        client.expect_close_with_reason().await,
        (Some(1008), "unknown key id".to_owned()),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_added_and_a_key_removed_are_seen_after_sighup() {
    let dir = KeyDir::new();
    let jwks = dir.0.join("jwks.json");
    write_jwks(&jwks, &[("key-a", KEY_A)]);
    let system = System::start(
        SystemOptions::default()
            .processes()
            .gateway("SLUICE_AUTH__JWKS_FILE", jwks.display())
            // The timer off: only SIGHUP reloads, so it is SIGHUP that works.
            .gateway("SLUICE_AUTH__KEYS_RELOAD_SECS", 0),
    )
    .await;
    let url = system.ws_url();
    let user = unique_user("keys");
    let token_a = token(KEY_A, "key-a", &user);
    let token_b = token(KEY_B, "key-b", &user);

    Client::hello(&url, &token_a).await;
    refused_eventually(&url, &token_b, "key B refused before it is added").await;

    // Rotation, step 1: the new key beside the old; both accepted.
    write_jwks(&jwks, &[("key-a", KEY_A), ("key-b", KEY_B)]);
    system.signal_gateway(0, "HUP");
    welcomed_eventually(&url, &token_b, "key B accepted after SIGHUP").await;
    Client::hello(&url, &token_a).await;

    // Step 2: the old key removed; its tokens refused, the new one's not.
    write_jwks(&jwks, &[("key-b", KEY_B)]);
    system.signal_gateway(0, "HUP");
    refused_eventually(&url, &token_a, "key A refused after its removal").await;
    Client::hello(&url, &token_b).await;

    // A broken file keeps the keys in use (the gateway logs a warning).
    std::fs::write(&jwks, "{ not json").expect("breaking the JWKS");
    system.signal_gateway(0, "HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    Client::hello(&url, &token_b).await;
    assert_eq!(
        system.http_status("/readyz").await,
        Some(200),
        "SIGHUP must not stop the gateway"
    );
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reload_timer_picks_up_a_new_key_without_a_signal() {
    let dir = KeyDir::new();
    let jwks = dir.0.join("jwks.json");
    write_jwks(&jwks, &[("key-a", KEY_A)]);
    let system = System::start(
        SystemOptions::default()
            .gateway("SLUICE_AUTH__JWKS_FILE", jwks.display())
            .gateway("SLUICE_AUTH__KEYS_RELOAD_SECS", 1),
    )
    .await;
    let url = system.ws_url();
    let user = unique_user("keys-timer");
    Client::hello(&url, &token(KEY_A, "key-a", &user)).await;
    write_jwks(&jwks, &[("key-b", KEY_B)]);
    welcomed_eventually(
        &url,
        &token(KEY_B, "key-b", &user),
        "key B accepted after a tick",
    )
    .await;
    refused_eventually(
        &url,
        &token(KEY_A, "key-a", &user),
        "key A refused after a tick",
    )
    .await;
    system.stop().await;
}

//! Verification: the default key, keys by `kid`, algorithms, claims, reloads.

use super::*;

fn config(aud: Option<&str>) -> AuthConfig {
    AuthConfig {
        jwt_secret: "0123456789abcdef0123456789abcdef".into(),
        audience: aud.map(str::to_owned),
        allowed_origins: vec![],
        ..AuthConfig::default()
    }
}

#[test]
fn minted_tokens_verify_and_bad_ones_do_not() {
    let cfg = config(None);
    let v = Verifier::new(&cfg).unwrap();
    let token = mint(&cfg, "alice", 60).unwrap();
    assert_eq!(v.verify(&token).unwrap().sub, "alice");
    assert_eq!(v.verify("nope").unwrap_err(), AuthError::Invalid);
    let other = mint(
        &config(None).tap_secret("another-secret-of-32-bytes-xxxxx"),
        "alice",
        60,
    )
    .unwrap();
    assert_eq!(v.verify(&other).unwrap_err(), AuthError::Invalid);
}

#[test]
fn expiry_and_audience_are_checked() {
    let cfg = config(Some("sluice"));
    let v = Verifier::new(&cfg).unwrap();
    let expired =
        sluice_proto::mint(cfg.jwt_secret.as_bytes(), "a", -3600, Some("sluice")).unwrap();
    assert_eq!(v.verify(&expired).unwrap_err(), AuthError::Expired);
    let wrong_aud = mint(&config(Some("other")), "a", 60).unwrap();
    assert_eq!(v.verify(&wrong_aud).unwrap_err(), AuthError::Audience);
    let no_aud = mint(&config(None), "a", 60).unwrap();
    assert!(v.verify(&no_aud).is_err());
    assert!(v.verify(&mint(&cfg, "a", 60).unwrap()).is_ok());
}

#[test]
fn bearer_header_parsing() {
    assert_eq!(bearer("Bearer abc"), Some("abc"));
    assert_eq!(bearer("bearer  abc "), Some("abc"));
    assert_eq!(bearer("Basic abc"), None);
    assert_eq!(bearer("Bearer "), None);
}

trait TapSecret {
    fn tap_secret(self, s: &str) -> Self;
}
impl TapSecret for AuthConfig {
    fn tap_secret(mut self, s: &str) -> Self {
        self.jwt_secret = s.into();
        self
    }
}

// Key pairs made for these tests only (`openssl genpkey`); see
// gateway/tests-data/README.md.
const RSA_A_KEY: &str = include_str!("../../tests-data/rsa-a.key.pem");
const RSA_A_PUB: &str = include_str!("../../tests-data/rsa-a.pub.pem");
const EC_A_KEY: &str = include_str!("../../tests-data/ec-a.key.pem");
const EC_A_PUB: &str = include_str!("../../tests-data/ec-a.pub.pem");
const EC_B_KEY: &str = include_str!("../../tests-data/ec-b.key.pem");
const EC_B_PUB: &str = include_str!("../../tests-data/ec-b.pub.pem");
const ED_A_KEY: &str = include_str!("../../tests-data/ed-a.key.pem");
const ED_A_PUB: &str = include_str!("../../tests-data/ed-a.pub.pem");

const SECRET_2026: &str = "a-rotation-secret-of-32-bytes-or-more";

use crate::config::KeyConfig;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{AlgorithmFamily, EncodingKey, Header};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A folder of its own under the temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("sluice-auth-{}-{label}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now() -> u64 {
    sluice_proto::now_ms() / 1000
}

/// Claims of a token for `sub` valid for ten minutes.
fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "exp": now() + 600 })
}

fn encoding(alg: Algorithm, private_pem: &str) -> EncodingKey {
    let pem = private_pem.as_bytes();
    match alg.family() {
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem),
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem),
        AlgorithmFamily::Ed => EncodingKey::from_ed_pem(pem),
        AlgorithmFamily::Hmac => Ok(EncodingKey::from_secret(pem)),
    }
    .unwrap()
}

/// A token of `claims` signed with `alg` and `key` (a private key PEM, or
/// an HMAC secret), naming `kid` when given.
fn sign(alg: Algorithm, key: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &encoding(alg, key)).unwrap()
}

/// The public JWK of a private key, with `kid` (and `alg` when given).
fn jwk(private_pem: &str, alg: Algorithm, kid: &str, name_alg: bool) -> Value {
    let mut jwk = Jwk::from_encoding_key(&encoding(alg, private_pem), alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    if !name_alg {
        jwk.common.key_algorithm = None;
    }
    serde_json::to_value(jwk).unwrap()
}

fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

fn hs_key(kid: &str, secret: &str) -> KeyConfig {
    KeyConfig {
        kid: kid.into(),
        alg: Algorithm::HS256,
        secret: Some(secret.into()),
        secret_file: None,
        public_key_file: None,
        public_key_pem: None,
    }
}

fn pem_key(kid: &str, alg: Algorithm, pem: &str) -> KeyConfig {
    KeyConfig {
        kid: kid.into(),
        alg,
        secret: None,
        secret_file: None,
        public_key_file: None,
        public_key_pem: Some(pem.into()),
    }
}

fn file_key(kid: &str, alg: Algorithm, path: &Path) -> KeyConfig {
    KeyConfig {
        public_key_file: Some(path.to_path_buf()),
        public_key_pem: None,
        ..pem_key(kid, alg, "")
    }
}

fn with_keys(keys: Vec<KeyConfig>) -> AuthConfig {
    AuthConfig {
        keys,
        ..config(None)
    }
}

#[test]
fn a_token_without_kid_uses_the_default_key_and_one_with_kid_its_key() {
    let cfg = with_keys(vec![hs_key("2026-12", SECRET_2026)]);
    let v = Verifier::new(&cfg).unwrap();
    assert_eq!(v.kids(), ["2026-12:HS256"]);
    let default = mint(&cfg, "ada", 60).unwrap();
    assert_eq!(v.verify(&default).unwrap().sub, "ada");
    let named = mint_with_kid(&cfg, "2026-12", "bob", 60, None).unwrap();
    let header = jsonwebtoken::decode_header(&named).unwrap();
    assert_eq!(header.kid.as_deref(), Some("2026-12"));
    assert_eq!(v.verify(&named).unwrap().sub, "bob");

    // Each key verifies only its own tokens.
    let default_secret_named = sign(
        Algorithm::HS256,
        &cfg.jwt_secret,
        Some("2026-12"),
        &claims("eve"),
    );
    assert_eq!(
        v.verify(&default_secret_named).unwrap_err(),
        AuthError::Invalid
    );
    let rotation_secret_unnamed = sign(Algorithm::HS256, SECRET_2026, None, &claims("eve"));
    assert_eq!(
        v.verify(&rotation_secret_unnamed).unwrap_err(),
        AuthError::Invalid
    );
}

#[test]
fn an_unknown_kid_is_refused_as_such() {
    let v = Verifier::new(&with_keys(vec![hs_key("2026-12", SECRET_2026)])).unwrap();
    let token = sign(Algorithm::HS256, SECRET_2026, Some("2025-06"), &claims("a"));
    let refused = v.verify(&token).unwrap_err();
    assert_eq!(refused, AuthError::UnknownKey);
    assert_eq!(refused.to_string(), "unknown key id");
    let empty = sign(Algorithm::HS256, SECRET_2026, Some(""), &claims("a"));
    assert_eq!(v.verify(&empty).unwrap_err(), AuthError::UnknownKey);
    // No key ids configured at all: any kid is unknown.
    let plain = Verifier::new(&config(None)).unwrap();
    assert_eq!(plain.verify(&token).unwrap_err(), AuthError::UnknownKey);
}

#[test]
fn rs256_es256_and_eddsa_tokens_verify_with_pem_public_keys() {
    let dir = Scratch::new("pem");
    let rsa_file = dir.write("rsa-a.pub.pem", RSA_A_PUB);
    let ed_file = dir.write("ed-a.pub.pem", ED_A_PUB);
    let v = Verifier::new(&with_keys(vec![
        file_key("idp-1", Algorithm::RS256, &rsa_file),
        pem_key("idp-2", Algorithm::ES256, EC_A_PUB),
        file_key("idp-3", Algorithm::EdDSA, &ed_file),
    ]))
    .unwrap();
    assert_eq!(v.kids(), ["idp-1:RS256", "idp-2:ES256", "idp-3:EdDSA"]);
    for (alg, key, kid) in [
        (Algorithm::RS256, RSA_A_KEY, "idp-1"),
        (Algorithm::ES256, EC_A_KEY, "idp-2"),
        (Algorithm::EdDSA, ED_A_KEY, "idp-3"),
    ] {
        let token = sign(alg, key, Some(kid), &claims(kid));
        assert_eq!(v.verify(&token).unwrap().sub, kid, "{alg:?}");
    }
    // Signed by another key of the same kind: not this kid's.
    let forged = sign(Algorithm::ES256, EC_B_KEY, Some("idp-2"), &claims("eve"));
    assert_eq!(v.verify(&forged).unwrap_err(), AuthError::Invalid);
}

#[test]
fn jwks_keys_verify_by_kid_and_what_cannot_verify_is_left_out() {
    let dir = Scratch::new("jwks");
    let mut encryption = jwk(EC_B_KEY, Algorithm::ES256, "enc-1", true);
    encryption["use"] = json!("enc");
    let mismatched = {
        let mut jwk = jwk(EC_B_KEY, Algorithm::ES256, "odd-1", true);
        jwk["alg"] = json!("RS256");
        jwk
    };
    let document = jwks(&[
        jwk(RSA_A_KEY, Algorithm::RS256, "rsa-a", true),
        // No `alg`: ES256 is implied by the curve.
        jwk(EC_A_KEY, Algorithm::ES256, "ec-a", false),
        encryption,
        mismatched,
        json!({ "kty": "oct", "kid": "hmac-1", "k": "c2VjcmV0" }),
        json!({ "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA" }),
        json!({ "kty": "RSA", "kid": "pq-1", "alg": "ML-DSA-65", "n": "AQAB", "e": "AQAB" }),
    ]);
    let path = dir.write("jwks.json", document);
    let v = Verifier::new(&AuthConfig {
        jwks_file: Some(path),
        ..config(None)
    })
    .unwrap();
    assert_eq!(v.kids(), ["ec-a:ES256", "rsa-a:RS256"]);
    assert_eq!(v.skipped().len(), 5, "{:?}", v.skipped());
    let rsa = sign(Algorithm::RS256, RSA_A_KEY, Some("rsa-a"), &claims("r"));
    assert_eq!(v.verify(&rsa).unwrap().sub, "r");
    let ec = sign(Algorithm::ES256, EC_A_KEY, Some("ec-a"), &claims("e"));
    assert_eq!(v.verify(&ec).unwrap().sub, "e");
    let hmac = sign(Algorithm::HS256, "secret", Some("hmac-1"), &claims("h"));
    assert_eq!(v.verify(&hmac).unwrap_err(), AuthError::UnknownKey);
}

/// The classic confusion: a token naming HS256 and an RSA key's id, its
/// HMAC keyed with the (public) key's own bytes. The key's algorithm is
/// RS256 and only RS256 is accepted with it.
#[test]
fn the_algorithm_is_the_keys_never_the_tokens() {
    let dir = Scratch::new("confusion");
    let path = dir.write(
        "jwks.json",
        jwks(&[jwk(RSA_A_KEY, Algorithm::RS256, "idp-jwks", true)]),
    );
    let v = Verifier::new(&AuthConfig {
        jwks_file: Some(path),
        ..with_keys(vec![
            pem_key("idp-1", Algorithm::RS256, RSA_A_PUB),
            pem_key("idp-2", Algorithm::ES256, EC_A_PUB),
        ])
    })
    .unwrap();
    for kid in ["idp-1", "idp-jwks"] {
        let confused = sign(Algorithm::HS256, RSA_A_PUB, Some(kid), &claims("eve"));
        assert_eq!(
            v.verify(&confused).unwrap_err(),
            AuthError::Invalid,
            "{kid}"
        );
        // Another algorithm of the same family is no better.
        let rs384 = sign(Algorithm::RS384, RSA_A_KEY, Some(kid), &claims("eve"));
        assert_eq!(v.verify(&rs384).unwrap_err(), AuthError::Invalid, "{kid}");
        let ps256 = sign(Algorithm::PS256, RSA_A_KEY, Some(kid), &claims("eve"));
        assert_eq!(v.verify(&ps256).unwrap_err(), AuthError::Invalid, "{kid}");
    }
    let confused = sign(Algorithm::HS256, EC_A_PUB, Some("idp-2"), &claims("eve"));
    assert_eq!(v.verify(&confused).unwrap_err(), AuthError::Invalid);
    // The default key is HS256 only: an RS256 token without kid is refused.
    let unnamed = sign(Algorithm::RS256, RSA_A_KEY, None, &claims("eve"));
    assert_eq!(v.verify(&unnamed).unwrap_err(), AuthError::Invalid);
    // And the right algorithm still works.
    let fine = sign(Algorithm::RS256, RSA_A_KEY, Some("idp-1"), &claims("ada"));
    assert_eq!(v.verify(&fine).unwrap().sub, "ada");
}

#[test]
fn the_issuer_is_required_when_configured() {
    let cfg = AuthConfig {
        issuer: Some("https://idp.example".into()),
        ..config(None)
    };
    let v = Verifier::new(&cfg).unwrap();
    let minted = mint(&cfg, "ada", 60).unwrap();
    assert_eq!(
        v.verify(&minted).unwrap().iss.as_deref(),
        Some("https://idp.example")
    );
    let secret = &cfg.jwt_secret;
    let none = sign(Algorithm::HS256, secret, None, &claims("a"));
    let refused = v.verify(&none).unwrap_err();
    assert_eq!(
        (refused.clone(), refused.to_string().as_str()),
        (AuthError::Issuer, "wrong issuer")
    );
    let mut wrong = claims("a");
    wrong["iss"] = json!("https://other.example");
    let wrong = sign(Algorithm::HS256, secret, None, &wrong);
    assert_eq!(v.verify(&wrong).unwrap_err(), AuthError::Issuer);
    // Without an issuer configured, any (or none) is accepted.
    let open = Verifier::new(&config(None)).unwrap();
    assert!(open.verify(&wrong).is_ok());
    assert!(open.verify(&none).is_ok());
}

#[test]
fn not_before_is_checked_and_leeway_applies_to_both_times() {
    let secret = "0123456789abcdef0123456789abcdef";
    let strict = Verifier::new(&config(None)).unwrap();
    let lenient = Verifier::new(&AuthConfig {
        leeway_secs: 60,
        ..config(None)
    })
    .unwrap();
    assert_eq!(lenient.leeway_secs(), 60);
    let early = sign(
        Algorithm::HS256,
        secret,
        None,
        &json!({ "sub": "a", "exp": now() + 600, "nbf": now() + 30 }),
    );
    let refused = strict.verify(&early).unwrap_err();
    assert_eq!(
        (refused.clone(), refused.to_string().as_str()),
        (AuthError::NotYetValid, "token not yet valid")
    );
    assert!(lenient.verify(&early).is_ok());
    let started = sign(
        Algorithm::HS256,
        secret,
        None,
        &json!({ "sub": "a", "exp": now() + 600, "nbf": now() - 5 }),
    );
    assert!(strict.verify(&started).is_ok());
    let late = sign(
        Algorithm::HS256,
        secret,
        None,
        &json!({ "sub": "a", "exp": now() - 30 }),
    );
    assert_eq!(strict.verify(&late).unwrap_err(), AuthError::Expired);
    assert!(lenient.verify(&late).is_ok());
    let long_gone = sign(
        Algorithm::HS256,
        secret,
        None,
        &json!({ "sub": "a", "exp": now() - 120 }),
    );
    assert_eq!(lenient.verify(&long_gone).unwrap_err(), AuthError::Expired);
    let far_off = sign(
        Algorithm::HS256,
        secret,
        None,
        &json!({ "sub": "a", "exp": now() + 600, "nbf": now() + 120 }),
    );
    assert_eq!(
        lenient.verify(&far_off).unwrap_err(),
        AuthError::NotYetValid
    );
}

#[test]
fn a_bad_key_file_is_an_error_naming_the_setting_and_the_file() {
    let dir = Scratch::new("bad");
    let missing = dir.0.join("missing.pem");
    let err = Verifier::new(&with_keys(vec![file_key(
        "idp-1",
        Algorithm::RS256,
        &missing,
    )]))
    .err()
    .unwrap();
    assert_eq!(err.setting(), "auth.keys");
    assert_eq!(err.file(), Some(missing.as_path()));
    let line = sluice_process::ConfigError::from(err).to_string();
    assert!(
        line.contains("auth.keys") && line.contains("idp-1") && line.contains("missing.pem"),
        "{line}"
    );

    let bad_json = dir.write("jwks.json", "{\"keys\": [");
    let err = Verifier::new(&AuthConfig {
        jwks_file: Some(bad_json.clone()),
        ..config(None)
    })
    .err()
    .unwrap();
    assert!(matches!(err, KeyError::BadJwks { .. }), "{err}");
    assert_eq!(err.setting(), "auth.jwks_file");
    assert!(err.to_string().contains("jwks.json"), "{err}");

    for (what, alg, pem) in [
        ("a private key", Algorithm::RS256, RSA_A_KEY),
        ("an EC key for RS256", Algorithm::RS256, EC_A_PUB),
        ("an RSA key for ES256", Algorithm::ES256, RSA_A_PUB),
        ("a P-256 key for ES384", Algorithm::ES384, EC_A_PUB),
        (
            "not PEM",
            Algorithm::ES256,
            "-----BEGIN PUBLIC KEY-----\nnope\n",
        ),
        ("empty", Algorithm::EdDSA, ""),
    ] {
        let path = dir.write("key.pem", pem);
        let err = Verifier::new(&with_keys(vec![file_key("k", alg, &path)]))
            .err()
            .unwrap_or_else(|| panic!("{what} was accepted"));
        assert!(matches!(err, KeyError::BadPem { .. }), "{what}: {err}");
        assert!(err.to_string().contains("key.pem"), "{what}: {err}");
    }

    // RSA under 2048 bits, as PEM and as a JWK (the modulus cut short).
    let weak = dir.write(
        "weak.pem",
        include_str!("../../tests-data/rsa-1024.pub.pem"),
    );
    let err = Verifier::new(&with_keys(vec![file_key("weak", Algorithm::RS256, &weak)]))
        .err()
        .unwrap();
    assert!(err.to_string().contains("1024-bit modulus"), "{err}");
    let mut weak = jwk(RSA_A_KEY, Algorithm::RS256, "weak", true);
    let n = weak["n"].as_str().unwrap()[..168].to_owned();
    weak["n"] = json!(n);
    let path = dir.write("weak.json", jwks(&[weak]));
    let err = Verifier::new(&AuthConfig {
        jwks_file: Some(path),
        ..config(None)
    })
    .err()
    .unwrap();
    assert!(
        matches!(err, KeyError::BadJwk { .. }) && err.to_string().contains("modulus"),
        "{err}"
    );

    let mut short = jwk(EC_A_KEY, Algorithm::ES256, "ec-a", true);
    short["x"] = json!("AAAA");
    let path = dir.write("short.json", jwks(&[short]));
    let err = Verifier::new(&AuthConfig {
        jwks_file: Some(path),
        ..config(None)
    })
    .err()
    .unwrap();
    assert!(matches!(err, KeyError::BadJwk { .. }), "{err}");

    // One kid in the JWKS file and in auth.keys: which would it be?
    let path = dir.write(
        "dup.json",
        jwks(&[jwk(EC_A_KEY, Algorithm::ES256, "2026-12", true)]),
    );
    let err = Verifier::new(&AuthConfig {
        jwks_file: Some(path),
        ..with_keys(vec![hs_key("2026-12", SECRET_2026)])
    })
    .err()
    .unwrap();
    assert!(matches!(err, KeyError::DuplicateKid { .. }), "{err}");
}

#[test]
fn a_reload_that_fails_keeps_the_previous_keys() {
    let dir = Scratch::new("keep");
    let jwks_path = dir.write(
        "jwks.json",
        jwks(&[jwk(EC_A_KEY, Algorithm::ES256, "ec-a", true)]),
    );
    let pem_path = dir.write("rsa.pem", RSA_A_PUB);
    let v = Verifier::new(&AuthConfig {
        jwks_file: Some(jwks_path.clone()),
        ..with_keys(vec![file_key("rsa-a", Algorithm::RS256, &pem_path)])
    })
    .unwrap();
    assert!(v.has_key_files());
    let ec = sign(Algorithm::ES256, EC_A_KEY, Some("ec-a"), &claims("e"));
    let rsa = sign(Algorithm::RS256, RSA_A_KEY, Some("rsa-a"), &claims("r"));
    let before = v.kids();

    let unchanged = v.reload().unwrap();
    assert_eq!(
        (unchanged.kids.clone(), unchanged.changed),
        (before.clone(), false)
    );

    std::fs::write(&jwks_path, "not json").unwrap();
    let err = v.reload().unwrap_err();
    assert!(matches!(err, KeyError::BadJwks { .. }), "{err}");
    assert_eq!(err.file(), Some(jwks_path.as_path()));
    std::fs::remove_file(&jwks_path).unwrap();
    assert!(matches!(v.reload().unwrap_err(), KeyError::ReadJwks { .. }));
    std::fs::write(
        &jwks_path,
        jwks(&[jwk(EC_A_KEY, Algorithm::ES256, "ec-a", true)]),
    )
    .unwrap();
    std::fs::write(
        &pem_path,
        "-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let err = v.reload().unwrap_err();
    assert!(matches!(err, KeyError::BadPem { .. }), "{err}");
    assert_eq!(err.file(), Some(pem_path.as_path()));

    // Through every failure the first set stayed in use.
    assert_eq!(v.kids(), before);
    assert_eq!(v.verify(&ec).unwrap().sub, "e");
    assert_eq!(v.verify(&rsa).unwrap().sub, "r");
}

/// A rotation as the README describes it: the new key beside the old, both
/// accepted; then the old removed, and refused.
#[test]
fn a_reload_picks_up_a_new_kid_and_drops_a_removed_one() {
    let dir = Scratch::new("rotate");
    let path = dir.write(
        "jwks.json",
        jwks(&[jwk(EC_A_KEY, Algorithm::ES256, "key-a", true)]),
    );
    let v = Verifier::new(&AuthConfig {
        jwks_file: Some(path.clone()),
        ..config(None)
    })
    .unwrap();
    let sessions_copy = v.clone();
    let token_a = sign(Algorithm::ES256, EC_A_KEY, Some("key-a"), &claims("a"));
    let token_b = sign(Algorithm::ES256, EC_B_KEY, Some("key-b"), &claims("b"));
    assert!(v.verify(&token_a).is_ok());
    assert_eq!(v.verify(&token_b).unwrap_err(), AuthError::UnknownKey);

    std::fs::write(
        &path,
        jwks(&[
            jwk(EC_A_KEY, Algorithm::ES256, "key-a", true),
            jwk(EC_B_KEY, Algorithm::ES256, "key-b", true),
        ]),
    )
    .unwrap();
    let overlap = v.reload().unwrap();
    assert!(overlap.changed);
    assert_eq!(overlap.kids, ["key-a:ES256", "key-b:ES256"]);
    for verifier in [&v, &sessions_copy] {
        assert_eq!(verifier.verify(&token_a).unwrap().sub, "a");
        assert_eq!(verifier.verify(&token_b).unwrap().sub, "b");
    }

    std::fs::write(
        &path,
        jwks(&[jwk(EC_B_KEY, Algorithm::ES256, "key-b", true)]),
    )
    .unwrap();
    let after = sessions_copy.reload().unwrap();
    assert_eq!(
        (after.kids, after.changed),
        (vec!["key-b:ES256".to_owned()], true)
    );
    for verifier in [&v, &sessions_copy] {
        assert_eq!(
            verifier.verify(&token_a).unwrap_err(),
            AuthError::UnknownKey
        );
        assert_eq!(verifier.verify(&token_b).unwrap().sub, "b");
    }

    // The same rotation with a PEM file: the key behind a kid replaced.
    let pem = dir.write("idp.pem", EC_A_PUB);
    let v = Verifier::new(&with_keys(vec![file_key("idp", Algorithm::ES256, &pem)])).unwrap();
    let old = sign(Algorithm::ES256, EC_A_KEY, Some("idp"), &claims("old"));
    let new = sign(Algorithm::ES256, EC_B_KEY, Some("idp"), &claims("new"));
    assert!(v.verify(&old).is_ok() && v.verify(&new).is_err());
    std::fs::write(&pem, EC_B_PUB).unwrap();
    assert!(v.reload().unwrap().changed);
    assert!(v.verify(&old).is_err() && v.verify(&new).is_ok());
}

#[test]
fn minting_with_a_kid_needs_an_hs256_key_of_that_id() {
    let cfg = with_keys(vec![
        hs_key("2026-12", SECRET_2026),
        pem_key("idp-2", Algorithm::ES256, EC_A_PUB),
    ]);
    for kid in ["2025-01", "idp-2"] {
        let err = mint_with_kid(&cfg, kid, "ada", 60, None).unwrap_err();
        assert!(matches!(err, MintKeyError::NoSuchKey(_)), "{kid}: {err}");
    }
}

/// Hostile tokens and odd keys end in a refusal, never a panic.
#[test]
fn malformed_tokens_and_degenerate_keys_are_refused() {
    let dir = Scratch::new("odd");
    let mut even_exponent = jwk(RSA_A_KEY, Algorithm::RS256, "odd-e", true);
    even_exponent["e"] = json!("AA");
    let path = dir.write("jwks.json", jwks(&[even_exponent]));
    let v = Verifier::new(&AuthConfig {
        jwks_file: Some(path),
        ..config(None)
    })
    .unwrap();
    let token = sign(Algorithm::RS256, RSA_A_KEY, Some("odd-e"), &claims("a"));
    assert_eq!(v.verify(&token).unwrap_err(), AuthError::Invalid);

    // The hand-made encoding is sound: a good header made with it decodes.
    let sound = format!("{}.e30.sig", base64url(br#"{"alg":"HS256","kid":"odd-e"}"#));
    let header = jsonwebtoken::decode_header(&sound).unwrap();
    assert_eq!(header.kid.as_deref(), Some("odd-e"));
    for header in [
        json!({ "alg": "HS256", "kid": 5 }),
        json!({ "alg": "none" }),
        json!({ "alg": "HS256", "kid": ["a"] }),
        json!({}),
    ] {
        let token = format!(
            "{}.{}.sig",
            base64url(header.to_string().as_bytes()),
            base64url(claims("a").to_string().as_bytes())
        );
        assert_eq!(
            v.verify(&token).unwrap_err(),
            AuthError::Invalid,
            "{header}"
        );
    }
    for token in ["", ".", "..", "a.b.c", "a.b.c.d", "\u{0}.\u{0}.\u{0}"] {
        assert_eq!(
            v.verify(token).unwrap_err(),
            AuthError::Invalid,
            "{token:?}"
        );
    }
}

/// Base64url without padding (RFC 4648, section 5), for hand-made tokens.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let bits = chunk
            .iter()
            .fold(0u32, |bits, byte| (bits << 8) | u32::from(*byte))
            << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((bits >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[test]
fn an_hmac_secret_file_is_read_again_so_hs256_rotates_without_a_restart() {
    let dir = Scratch::new("secret-file");
    let path = dir.write("hs-2026-12.secret", format!("{SECRET_2026}\n"));
    let cfg = with_keys(vec![KeyConfig {
        secret: None,
        secret_file: Some(path.clone()),
        ..hs_key("2026-12", "")
    }]);
    let v = Verifier::new(&cfg).unwrap();
    assert!(v.has_key_files());
    // The trailing newline is not part of the secret.
    let old = sign(Algorithm::HS256, SECRET_2026, Some("2026-12"), &claims("a"));
    assert_eq!(v.verify(&old).unwrap().sub, "a");

    // The file is replaced: the next reload verifies with the new secret only.
    let next = "another-rotation-secret-of-32-bytes-at-least";
    std::fs::write(&path, next).unwrap();
    assert!(v.reload().unwrap().changed);
    let new = sign(Algorithm::HS256, next, Some("2026-12"), &claims("b"));
    assert_eq!(v.verify(&new).unwrap().sub, "b");
    assert_eq!(v.verify(&old).unwrap_err(), AuthError::Invalid);

    // A short secret or the development secret is refused at every read,
    // naming the file, and the keys in use stay.
    for bad in ["too-short", crate::config::DEV_JWT_SECRET] {
        std::fs::write(&path, bad).unwrap();
        let err = v.reload().unwrap_err();
        assert!(matches!(err, KeyError::BadSecret { .. }), "{err}");
        assert_eq!(err.file(), Some(path.as_path()));
        assert_eq!(v.verify(&new).unwrap().sub, "b");
    }
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        v.reload().unwrap_err(),
        KeyError::ReadSecret { .. }
    ));
}

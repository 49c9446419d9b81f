//! The verification keys: the default HS256 secret (`auth.jwt_secret`), the
//! entries of `auth.keys` and the public keys of `auth.jwks_file`, read into
//! one [`KeySet`]. Reading and checking key material is all here (a JWKS
//! document's keys in `jwks`); choosing a key for a token and checking the
//! token is [`super::Verifier`]'s.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, Validation};

use crate::config::{AuthConfig, KeyConfig};

mod jwks;

/// The largest key file read (PEM or JWKS). Key sets are kilobytes; a path
/// pointing at something huge (or endless, like a device) fails the load
/// instead of filling memory.
pub const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

/// Why the key set could not be read. Each names the key or the file, and
/// [`KeyError::setting`] the setting, so the one line logged (or printed at
/// start) says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A `public_key_file` could not be read.
    #[error("key {kid:?}: reading {}: {source}", path.display())]
    ReadPem {
        /// The key's id.
        kid: String,
        /// Its `public_key_file`.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// A `public_key_file` or `public_key_pem` holds no public key of the
    /// kind the key's `alg` needs.
    #[error("key {kid:?}: {} holds no {alg:?} public key (PEM, BEGIN PUBLIC KEY): {source}", origin(file.as_deref()))]
    BadPem {
        /// The key's id.
        kid: String,
        /// Its `public_key_file`, or none for an inline `public_key_pem`.
        file: Option<PathBuf>,
        /// The key's algorithm.
        alg: Algorithm,
        /// What was wrong with the key.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// A `secret_file` could not be read.
    #[error("key {kid:?}: reading {}: {source}", path.display())]
    ReadSecret {
        /// The key's id.
        kid: String,
        /// Its `secret_file`.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// A `secret_file` holds a secret too short for the key's `alg`, or
    /// the public development secret.
    #[error("key {kid:?}: {}: {reason}", path.display())]
    BadSecret {
        /// The key's id.
        kid: String,
        /// Its `secret_file`.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An `auth.keys` entry without the key its `alg` needs (the config
    /// check refuses it first; this keeps an unchecked config from panicking).
    #[error("key {kid:?}: no key of the kind {alg:?} needs")]
    Incomplete {
        /// The key's id.
        kid: String,
        /// The key's algorithm.
        alg: Algorithm,
    },
    /// The JWKS file could not be read.
    #[error("reading {}: {source}", path.display())]
    ReadJwks {
        /// `auth.jwks_file`.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The JWKS file is not a JWKS document.
    #[error("{}: not a JWKS document: {source}", path.display())]
    BadJwks {
        /// `auth.jwks_file`.
        path: PathBuf,
        /// Where the JSON went wrong.
        #[source]
        source: serde_json::Error,
    },
    /// A key of the JWKS file has unusable key material.
    #[error("{}: key {kid:?}: {source}", path.display())]
    BadJwk {
        /// `auth.jwks_file`.
        path: PathBuf,
        /// The key's id.
        kid: String,
        /// What was wrong with it.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// Two keys have the same `kid`, so a token naming it could mean either.
    #[error("key id {kid:?} appears twice{}", file.as_ref().map(|f| format!(" (in {} or also in auth.keys)", f.display())).unwrap_or_default())]
    DuplicateKid {
        /// The repeated id.
        kid: String,
        /// The JWKS file, when one of the two is there.
        file: Option<PathBuf>,
    },
}

fn origin(file: Option<&Path>) -> String {
    match file {
        Some(path) => path.display().to_string(),
        None => "public_key_pem".into(),
    }
}

impl KeyError {
    /// The setting to fix: `auth.keys` or `auth.jwks_file`.
    pub fn setting(&self) -> &'static str {
        match self {
            KeyError::ReadPem { .. }
            | KeyError::BadPem { .. }
            | KeyError::ReadSecret { .. }
            | KeyError::BadSecret { .. }
            | KeyError::Incomplete { .. } => "auth.keys",
            KeyError::DuplicateKid { file: None, .. } => "auth.keys",
            KeyError::ReadJwks { .. }
            | KeyError::BadJwks { .. }
            | KeyError::BadJwk { .. }
            | KeyError::DuplicateKid { file: Some(_), .. } => "auth.jwks_file",
        }
    }

    /// The file that could not be used, if a file is to blame.
    pub fn file(&self) -> Option<&Path> {
        match self {
            KeyError::ReadPem { path, .. }
            | KeyError::ReadSecret { path, .. }
            | KeyError::BadSecret { path, .. }
            | KeyError::ReadJwks { path, .. }
            | KeyError::BadJwks { path, .. }
            | KeyError::BadJwk { path, .. } => Some(path),
            KeyError::BadPem { file, .. } | KeyError::DuplicateKid { file, .. } => file.as_deref(),
            KeyError::Incomplete { .. } => None,
        }
    }
}

impl From<KeyError> for sluice_process::ConfigError {
    fn from(e: KeyError) -> Self {
        sluice_process::ConfigError::Invalid {
            setting: e.setting(),
            reason: e.to_string(),
        }
    }
}

/// One verification key and the rules a token must pass with it.
pub(crate) struct Key {
    /// The only algorithm a token verified with this key may name: the
    /// key's own, never the token's choice.
    pub(crate) alg: Algorithm,
    /// The secret or public key.
    pub(crate) decoding: DecodingKey,
    /// `alg` and the claim rules (`exp`, `nbf`, `aud`, `iss`, leeway).
    pub(crate) validation: Validation,
}

/// Every key a token may be verified with: the default one for tokens
/// whose header names no `kid`, and the others by `kid`. Built whole and
/// swapped whole on reload, so a verification sees one set or the other.
pub struct KeySet {
    /// `auth.jwt_secret`, HS256.
    default: Key,
    /// `auth.keys` and the keys of `auth.jwks_file`.
    by_kid: HashMap<String, Key>,
    /// Keys of the JWKS file left out, and why (not for signatures, no
    /// `kid`, a type or algorithm Sluice does not verify).
    skipped: Vec<String>,
}

impl KeySet {
    /// Reads the keys `config` names, files included. Fails whole: one bad
    /// key or file and no set is returned.
    pub fn load(config: &AuthConfig) -> Result<KeySet, KeyError> {
        let key = |alg: Algorithm, decoding: DecodingKey| Key {
            alg,
            decoding,
            validation: rules(config, alg),
        };
        let default = key(
            Algorithm::HS256,
            DecodingKey::from_secret(config.jwt_secret.as_bytes()),
        );
        let mut by_kid = HashMap::new();
        for entry in &config.keys {
            let decoding = configured(entry)?;
            if by_kid
                .insert(entry.kid.clone(), key(entry.alg, decoding))
                .is_some()
            {
                return Err(KeyError::DuplicateKid {
                    kid: entry.kid.clone(),
                    file: None,
                });
            }
        }
        let mut skipped = Vec::new();
        if let Some(path) = &config.jwks_file {
            for (kid, alg, decoding) in jwks::read(path, &mut skipped)? {
                if by_kid.contains_key(&kid) {
                    return Err(KeyError::DuplicateKid {
                        kid,
                        file: Some(path.clone()),
                    });
                }
                by_kid.insert(kid, key(alg, decoding));
            }
        }
        Ok(KeySet {
            default,
            by_kid,
            skipped,
        })
    }

    /// The key for a token whose header names `kid` (the default key when
    /// it names none); `None` for an id no key has.
    pub(crate) fn select(&self, kid: Option<&str>) -> Option<&Key> {
        match kid {
            None => Some(&self.default),
            Some(kid) => self.by_kid.get(kid),
        }
    }

    /// The key ids, sorted, each with its algorithm (`2026-12:HS256`), for
    /// logs and for tests.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self
            .by_kid
            .iter()
            .map(|(kid, key)| format!("{kid}:{:?}", key.alg))
            .collect();
        kids.sort();
        kids
    }

    /// Keys of the JWKS file that were left out, and why.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Whether `other` holds the same keys (ids, algorithms, material):
    /// a timed reload that changed nothing is not worth an info line.
    pub fn same_keys(&self, other: &KeySet) -> bool {
        self.by_kid.len() == other.by_kid.len()
            && same_key(&self.default, &other.default)
            && self.by_kid.iter().all(|(kid, key)| {
                other
                    .by_kid
                    .get(kid)
                    .is_some_and(|theirs| same_key(key, theirs))
            })
    }

    /// Whether any key comes from a file, so that reading again may change
    /// something.
    pub fn has_files(config: &AuthConfig) -> bool {
        config.jwks_file.is_some()
            || config
                .keys
                .iter()
                .any(|k| k.public_key_file.is_some() || k.secret_file.is_some())
    }
}

fn same_key(a: &Key, b: &Key) -> bool {
    use jsonwebtoken::DecodingKeyKind as Kind;
    a.alg == b.alg
        && match (a.decoding.kind(), b.decoding.kind()) {
            (Kind::SecretOrDer(x), Kind::SecretOrDer(y)) => x == y,
            (Kind::RsaModulusExponent { n, e }, Kind::RsaModulusExponent { n: n2, e: e2 }) => {
                n == n2 && e == e2
            }
            _ => false,
        }
}

/// What a token verified with a key of `alg` must also pass: `exp` and
/// `sub` always, `nbf` when present, `aud` and `iss` when configured, with
/// `auth.leeway_secs` on both times.
fn rules(config: &AuthConfig, alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = config.leeway_secs;
    validation.validate_nbf = true;
    let mut required = vec!["exp", "sub"];
    match &config.audience {
        Some(aud) => {
            required.push("aud");
            validation.set_audience(&[aud]);
        }
        None => validation.validate_aud = false,
    }
    if let Some(iss) = &config.issuer {
        required.push("iss");
        validation.set_issuer(&[iss]);
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// The key an `auth.keys` entry names, its file read if it has one.
fn configured(entry: &KeyConfig) -> Result<DecodingKey, KeyError> {
    let incomplete = || KeyError::Incomplete {
        kid: entry.kid.clone(),
        alg: entry.alg,
    };
    if entry.alg.family() == AlgorithmFamily::Hmac {
        return match (&entry.secret, &entry.secret_file) {
            (Some(secret), _) => Ok(DecodingKey::from_secret(secret.as_bytes())),
            (None, Some(path)) => secret_from_file(entry, path),
            (None, None) => Err(incomplete()),
        };
    }
    let (pem, file) = match (&entry.public_key_file, &entry.public_key_pem) {
        (Some(path), _) => {
            let pem = read_bounded(path).map_err(|source| KeyError::ReadPem {
                kid: entry.kid.clone(),
                path: path.clone(),
                source,
            })?;
            (pem, Some(path.clone()))
        }
        (None, Some(pem)) => (pem.as_bytes().to_vec(), None),
        (None, None) => return Err(incomplete()),
    };
    public_from_pem(entry.alg, &pem).map_err(|source| KeyError::BadPem {
        kid: entry.kid.clone(),
        file,
        alg: entry.alg,
        source,
    })
}

/// The HMAC secret in `path`: its bytes, without the newline an editor or
/// `echo` leaves at the end. Checked here, at every read, since a file can
/// change after the config check: at least the hash's size, never the
/// development secret.
fn secret_from_file(entry: &KeyConfig, path: &Path) -> Result<DecodingKey, KeyError> {
    read_secret(entry, path).map(|secret| DecodingKey::from_secret(&secret))
}

/// The checked secret of [`secret_from_file`], for signing too.
pub(crate) fn read_secret(entry: &KeyConfig, path: &Path) -> Result<Vec<u8>, KeyError> {
    let mut secret = read_bounded(path).map_err(|source| KeyError::ReadSecret {
        kid: entry.kid.clone(),
        path: path.to_owned(),
        source,
    })?;
    while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        secret.pop();
    }
    let bad = |reason: String| KeyError::BadSecret {
        kid: entry.kid.clone(),
        path: path.to_owned(),
        reason,
    };
    if secret == crate::config::DEV_JWT_SECRET.as_bytes() {
        return Err(bad("holds the public development secret".into()));
    }
    let min = entry.min_secret_bytes();
    if secret.len() < min {
        return Err(bad(format!(
            "holds {} bytes; {:?} needs at least {min}",
            secret.len(),
            entry.alg
        )));
    }
    Ok(secret)
}

/// A public key for `alg` from PEM (`-----BEGIN PUBLIC KEY-----`, or
/// `RSA PUBLIC KEY` for RSA), its material checked.
fn public_from_pem(alg: Algorithm, pem: &[u8]) -> Result<DecodingKey, jsonwebtoken::errors::Error> {
    let key = match alg.family() {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem)?,
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem)?,
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem)?,
        AlgorithmFamily::Hmac => return Err(ErrorKind::InvalidKeyFormat.into()),
    };
    check_material(&key, alg)?;
    Ok(key)
}

/// The shortest RSA modulus accepted, in bytes: 2048 bits (NIST SP 800-57;
/// a 1024-bit key is within reach of a well-funded attacker).
pub const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Decodes the key's material now (the RSA public key's DER and modulus
/// size, the curve point's length), so that a bad key fails the load, and a
/// reload keeps the previous set, instead of every token failing later. A
/// private key given as a public one fails here too.
fn check_material(key: &DecodingKey, alg: Algorithm) -> Result<(), jsonwebtoken::errors::Error> {
    let jwk = Jwk::from_decoding_key(key, Some(alg))?;
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) => {
            let fits = matches!(
                (alg, &ec.curve),
                (Algorithm::ES256, EllipticCurve::P256) | (Algorithm::ES384, EllipticCurve::P384)
            );
            if !fits {
                return Err(ErrorKind::InvalidEcdsaKey.into());
            }
        }
        AlgorithmParameters::RSA(rsa) => {
            let modulus_bytes = match key.kind() {
                DecodingKeyKind::RsaModulusExponent { n, .. } => {
                    n.iter().skip_while(|byte| **byte == 0).count()
                }
                // Decoded from DER: `n` is base64url of its bytes, without
                // leading zeros or padding.
                DecodingKeyKind::SecretOrDer(_) => rsa.n.trim_end_matches('=').len() * 3 / 4,
            };
            if modulus_bytes < MIN_RSA_MODULUS_BYTES {
                return Err(ErrorKind::InvalidRsaKey(format!(
                    "a {}-bit modulus; at least {} bits are needed",
                    modulus_bytes * 8,
                    MIN_RSA_MODULUS_BYTES * 8
                ))
                .into());
            }
        }
        _ => {}
    }
    Ok(())
}

/// The file's bytes, refused past [`MAX_KEY_FILE_BYTES`].
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_KEY_FILE_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

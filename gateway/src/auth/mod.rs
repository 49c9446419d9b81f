//! Token verification with several keys chosen by `kid` (HS256 secrets,
//! RSA, ECDSA and Ed25519 public keys, a JWKS file), reloaded on SIGHUP and
//! on a timer; and minting (HS256, the default secret) for the `token`
//! subcommand and the development token endpoint.
//!
//! [`keys`] reads the key set; [`reload`] keeps it fresh; this module picks
//! a token's key and checks the token.

pub mod keys;
pub mod reload;

use std::sync::{Arc, PoisonError, RwLock};

use crate::config::AuthConfig;
use jsonwebtoken::Algorithm;
use sluice_proto::MAX_USER_BYTES;

pub use keys::{KeyError, KeySet};
pub use sluice_proto::Claims;

/// Why a token was refused; the reason text goes into the 1008 close frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    /// No token in `hello` nor in the upgrade request.
    Missing,
    #[error("token expired")]
    /// Its `exp` has passed (beyond the leeway).
    Expired,
    #[error("invalid token")]
    /// Not a token, not signed with the key it names, or signed with an
    /// algorithm other than that key's.
    Invalid,
    #[error("wrong audience")]
    /// Not for the configured audience.
    Audience,
    #[error("wrong issuer")]
    /// Not from the configured issuer (or from none).
    Issuer,
    #[error("token not yet valid")]
    /// Its `nbf` is still ahead (beyond the leeway).
    NotYetValid,
    #[error("unknown key id")]
    /// Its header names a `kid` no configured key has (a key removed after
    /// a rotation, or never configured).
    UnknownKey,
    #[error("invalid user id")]
    /// Its `sub` is empty or longer than a routing key allows.
    BadSubject,
}

/// Checks tokens against the key set and the configured claim rules.
/// Clones share one key set: a reload through any of them is seen by all
/// (the sessions, the upgrade handler, the HTTP API and the reload task).
#[derive(Clone)]
pub struct Verifier {
    shared: Arc<Shared>,
}

struct Shared {
    /// What the key set is read from, kept for reloads.
    config: AuthConfig,
    /// The key set in use; a reload swaps the `Arc` whole, and a
    /// verification holds the one it started with.
    keys: RwLock<Arc<KeySet>>,
}

/// What a good reload read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The key ids now accepted (besides the default key), with their
    /// algorithms, sorted.
    pub kids: Vec<String>,
    /// Keys of the JWKS file left out, and why.
    pub skipped: Vec<String>,
    /// Whether the keys differ from the previous set.
    pub changed: bool,
}

impl Verifier {
    /// A verifier for `config`, its key files read now: a bad one is an
    /// error naming the setting and the file, so the gateway does not start.
    pub fn new(config: &AuthConfig) -> Result<Self, KeyError> {
        let keys = KeySet::load(config)?;
        Ok(Self {
            shared: Arc::new(Shared {
                config: config.clone(),
                keys: RwLock::new(Arc::new(keys)),
            }),
        })
    }

    /// The token's claims, if it is valid now with the key its header's
    /// `kid` names (the default key when it names none).
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let keys = self.keys();
        let key = keys
            .select(header.kid.as_deref())
            .ok_or(AuthError::UnknownKey)?;
        // `key.validation` allows the key's algorithm only: a token naming
        // another (HS256 against an RSA key, say) fails here.
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &key.validation)
            .map_err(|e| refusal(&e))?;
        let sub = &data.claims.sub;
        if sub.is_empty() || sub.len() > MAX_USER_BYTES {
            return Err(AuthError::BadSubject);
        }
        Ok(data.claims)
    }

    /// Reads the key set again (`auth.jwks_file`, each `public_key_file`)
    /// and, if all of it reads, uses it from the next verification on. On
    /// an error the previous set stays in use. Blocking file reads: call it
    /// off the async threads ([`reload::keep_fresh`] does, and logs).
    pub fn reload(&self) -> Result<Reloaded, KeyError> {
        let fresh = KeySet::load(&self.shared.config)?;
        let reloaded = Reloaded {
            kids: fresh.kids(),
            skipped: fresh.skipped().to_vec(),
            changed: !fresh.same_keys(&self.keys()),
        };
        *self
            .shared
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        Ok(reloaded)
    }

    /// The key ids accepted now (besides the default key), sorted.
    pub fn kids(&self) -> Vec<String> {
        self.keys().kids()
    }

    /// Keys of the JWKS file left out at the last load, and why.
    pub fn skipped(&self) -> Vec<String> {
        self.keys().skipped().to_vec()
    }

    /// `auth.leeway_secs`: a session lives this long past its token's `exp`,
    /// as the token was accepted this long past it.
    pub fn leeway_secs(&self) -> u64 {
        self.shared.config.leeway_secs
    }

    /// Whether any key comes from a file (so a timed reload may change
    /// something).
    pub fn has_key_files(&self) -> bool {
        KeySet::has_files(&self.shared.config)
    }

    fn keys(&self) -> Arc<KeySet> {
        self.shared
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The refusal a verification error means to the client.
fn refusal(e: &jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::Issuer,
        _ => AuthError::Invalid,
    }
}

/// The token carried by an `Authorization: Bearer <jwt>` header value.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Signs a token for `user` valid for `ttl_secs` with the default secret
/// and the configured audience and issuer (the `token` subcommand and the
/// development token endpoint).
pub fn mint(
    config: &AuthConfig,
    user: &str,
    ttl_secs: u64,
) -> Result<String, sluice_proto::MintError> {
    mint_scoped(config, user, ttl_secs, None)
}

/// [`mint`] with a `scope` claim: `sluice:publish` makes a service token
/// for `POST /v1/publish`.
pub fn mint_scoped(
    config: &AuthConfig,
    user: &str,
    ttl_secs: u64,
    scope: Option<&str>,
) -> Result<String, sluice_proto::MintError> {
    mint_signed(
        config,
        config.jwt_secret.as_bytes(),
        None,
        user,
        ttl_secs,
        scope,
    )
}

/// Why [`mint_with_kid`] signed nothing.
#[derive(Debug, thiserror::Error)]
pub enum MintKeyError {
    /// No `auth.keys` entry can sign with that id.
    #[error("auth.keys has no HS256 key with kid {0:?}: only HS256 keys (with a secret) can sign")]
    NoSuchKey(String),
    /// The key's `secret_file` could not be read or holds no usable secret.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] sluice_proto::MintError),
}

/// Signs a token as [`mint`] does, but with the HS256 key of `auth.keys`
/// named `kid`, and that `kid` in its header: to try a key added for a
/// rotation before the issuer switches to it.
pub fn mint_with_kid(
    config: &AuthConfig,
    kid: &str,
    user: &str,
    ttl_secs: u64,
    scope: Option<&str>,
) -> Result<String, MintKeyError> {
    let key = config
        .keys
        .iter()
        .find(|key| key.kid == kid && key.alg == Algorithm::HS256)
        .ok_or_else(|| MintKeyError::NoSuchKey(kid.to_owned()))?;
    let secret = match (&key.secret, &key.secret_file) {
        (Some(secret), _) => secret.as_bytes().to_vec(),
        (None, Some(path)) => keys::read_secret(key, path)?,
        (None, None) => return Err(MintKeyError::NoSuchKey(kid.to_owned())),
    };
    Ok(mint_signed(
        config,
        &secret,
        Some(kid),
        user,
        ttl_secs,
        scope,
    )?)
}

fn mint_signed(
    config: &AuthConfig,
    secret: &[u8],
    kid: Option<&str>,
    user: &str,
    ttl_secs: u64,
    scope: Option<&str>,
) -> Result<String, sluice_proto::MintError> {
    sluice_proto::mint_with(
        secret,
        user,
        i64::try_from(ttl_secs).unwrap_or(i64::MAX),
        sluice_proto::MintOptions {
            audience: config.audience.as_deref(),
            issuer: config.issuer.as_deref(),
            kid,
            scope,
        },
    )
}

#[cfg(test)]
mod tests;

//! JWT (HS256) verification, and minting for the `token` subcommand.

use crate::config::AuthConfig;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sluice_proto::MAX_USER_BYTES;

pub use sluice_proto::Claims;

/// Why a token was refused; the reason text goes into the 1008 close frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    /// No token in `hello` nor in the upgrade request.
    Missing,
    #[error("token expired")]
    /// Its `exp` has passed.
    Expired,
    #[error("invalid token")]
    /// Not a token signed with the configured secret.
    Invalid,
    #[error("wrong audience")]
    /// Not for the configured audience.
    Audience,
    #[error("invalid user id")]
    /// Its `sub` is empty or longer than a routing key allows.
    BadSubject,
}

/// Checks tokens against the configured secret and audience.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    /// A verifier for `config`.
    pub fn new(config: &AuthConfig) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        match &config.audience {
            Some(aud) => {
                validation.set_required_spec_claims(&["exp", "sub", "aud"]);
                validation.set_audience(&[aud]);
            }
            None => {
                validation.set_required_spec_claims(&["exp", "sub"]);
                validation.validate_aud = false;
            }
        }
        Self {
            key: DecodingKey::from_secret(config.jwt_secret.as_bytes()),
            validation,
        }
    }

    /// The token's claims, if it is valid now.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidAudience => AuthError::Audience,
                _ => AuthError::Invalid,
            },
        )?;
        let sub = &data.claims.sub;
        if sub.is_empty() || sub.len() > MAX_USER_BYTES {
            return Err(AuthError::BadSubject);
        }
        Ok(data.claims)
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

/// Signs a token for `user` valid for `ttl_secs` with the configured secret
/// and audience (the `token` subcommand and the development token endpoint).
pub fn mint(
    config: &AuthConfig,
    user: &str,
    ttl_secs: u64,
) -> Result<String, sluice_proto::MintError> {
    sluice_proto::mint(
        config.jwt_secret.as_bytes(),
        user,
        i64::try_from(ttl_secs).unwrap_or(i64::MAX),
        config.audience.as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(aud: Option<&str>) -> AuthConfig {
        AuthConfig {
            jwt_secret: "0123456789abcdef0123456789abcdef".into(),
            audience: aud.map(str::to_owned),
            allowed_origins: vec![],
        }
    }

    #[test]
    fn minted_tokens_verify_and_bad_ones_do_not() {
        let cfg = config(None);
        let v = Verifier::new(&cfg);
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
        let v = Verifier::new(&cfg);
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
}

//! Tokens: the claims Sluice reads from a JWT, and the one way they are
//! signed, [`mint_with`] (and [`mint`], its common case): the `token`
//! subcommand, the development token endpoint, the tests and the load
//! generator all mint through it. Verification is the gateway's.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

/// The claims Sluice reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id; every event of this user's jobs goes to this user only.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Audience, checked when the gateway is configured with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Issuer, checked when the gateway is configured with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Space-separated scopes (RFC 8693 `scope`): a service token carries
    /// [`PUBLISH_SCOPE`] to publish to users. User tokens need none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The scope a token needs for `POST /v1/publish`.
pub const PUBLISH_SCOPE: &str = "sluice:publish";

impl Claims {
    /// Whether the token's `scope` claim lists `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|one| one == scope))
    }
}

/// A token could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("signing a token: {0}")]
pub struct MintError(#[from] jsonwebtoken::errors::Error);

/// Signs an HS256 token for `user`, expiring `ttl_secs` from now (negative:
/// already expired, for tests of refusal), with `audience` when given.
pub fn mint(
    secret: &[u8],
    user: &str,
    ttl_secs: i64,
    audience: Option<&str>,
) -> Result<String, MintError> {
    mint_with(
        secret,
        user,
        ttl_secs,
        MintOptions {
            audience,
            ..MintOptions::default()
        },
    )
}

/// What a minted token carries besides its user and expiry: the claims a
/// gateway may be configured to require, and the key id of the secret it is
/// signed with (for a gateway that holds several).
#[derive(Debug, Clone, Copy, Default)]
pub struct MintOptions<'a> {
    /// The `aud` claim.
    pub audience: Option<&'a str>,
    /// The `iss` claim.
    pub issuer: Option<&'a str>,
    /// The `kid` of the header: which of the gateway's keys verifies it.
    /// Without one, the gateway uses its default secret.
    pub kid: Option<&'a str>,
    /// The `scope` claim (space-separated), e.g. [`PUBLISH_SCOPE`] for a
    /// service token.
    pub scope: Option<&'a str>,
}

/// Signs an HS256 token for `user`, expiring `ttl_secs` from now (negative:
/// already expired), with the claims and key id of `options`.
pub fn mint_with(
    secret: &[u8],
    user: &str,
    ttl_secs: i64,
    options: MintOptions<'_>,
) -> Result<String, MintError> {
    let claims = Claims {
        sub: user.to_owned(),
        exp: (crate::now_ms() / 1000).saturating_add_signed(ttl_secs),
        aud: options.audience.map(str::to_owned),
        iss: options.issuer.map(str::to_owned),
        scope: options.scope.map(str::to_owned),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = options.kid.map(str::to_owned);
    Ok(jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_whole_words_of_the_claim() {
        let with = |scope: Option<&str>| Claims {
            sub: "svc".into(),
            exp: 0,
            aud: None,
            iss: None,
            scope: scope.map(str::to_owned),
        };
        assert!(with(Some("read sluice:publish")).has_scope(PUBLISH_SCOPE));
        assert!(with(Some(PUBLISH_SCOPE)).has_scope(PUBLISH_SCOPE));
        assert!(!with(Some("sluice:publisher")).has_scope(PUBLISH_SCOPE));
        assert!(!with(Some("sluice:publish2 x")).has_scope(PUBLISH_SCOPE));
        assert!(!with(None).has_scope(PUBLISH_SCOPE));
    }
    use jsonwebtoken::{DecodingKey, Validation, decode};

    #[test]
    fn minted_claims_verify_with_the_same_secret_only() {
        let token = mint(b"0123456789abcdef", "ada", 60, Some("sluice")).unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&["sluice"]);
        let claims = decode::<Claims>(
            &token,
            &DecodingKey::from_secret(b"0123456789abcdef"),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(
            (claims.sub.as_str(), claims.aud.as_deref()),
            ("ada", Some("sluice"))
        );
        let now = crate::now_ms() / 1000;
        assert!((now + 59..=now + 61).contains(&claims.exp));
        assert!(
            decode::<Claims>(
                &token,
                &DecodingKey::from_secret(b"another secret!!"),
                &validation
            )
            .is_err()
        );
        let expired = mint(b"0123456789abcdef", "ada", -3600, None).unwrap();
        assert!(
            decode::<Claims>(
                &expired,
                &DecodingKey::from_secret(b"0123456789abcdef"),
                &Validation::new(Algorithm::HS256)
            )
            .is_err()
        );
    }

    #[test]
    fn options_set_the_issuer_the_key_id_and_the_scope() {
        let options = MintOptions {
            audience: None,
            issuer: Some("https://idp.example"),
            kid: Some("2026-12"),
            scope: Some("sluice:publish"),
        };
        let token = mint_with(b"0123456789abcdef", "ada", 60, options).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("2026-12"));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&["https://idp.example"]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        let claims = decode::<Claims>(
            &token,
            &DecodingKey::from_secret(b"0123456789abcdef"),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims.iss.as_deref(), Some("https://idp.example"));
        assert!(claims.has_scope(PUBLISH_SCOPE));
        let plain = mint(b"0123456789abcdef", "ada", 60, None).unwrap();
        assert_eq!(jsonwebtoken::decode_header(&plain).unwrap().kid, None);
    }
}

//! Tokens: the claims Sluice reads from a JWT, and the one function that
//! signs them (the `token` subcommand, the development token endpoint, the
//! tests and the load generator all mint through it). Verification is the
//! gateway's.

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
    let claims = Claims {
        sub: user.to_owned(),
        exp: (crate::now_ms() / 1000).saturating_add_signed(ttl_secs),
        aud: audience.map(str::to_owned),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
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
}

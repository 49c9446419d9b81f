//! The keys of a JWKS document (RFC 7517): which of them Sluice can verify
//! with, and with which algorithm.

use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::{KeyError, check_material, read_bounded};

/// The usable keys of the JWKS file at `path` (id, algorithm, key); keys it
/// leaves out are described in `skipped`.
pub(super) fn read(
    path: &Path,
    skipped: &mut Vec<String>,
) -> Result<Vec<(String, Algorithm, DecodingKey)>, KeyError> {
    let bytes = read_bounded(path).map_err(|source| KeyError::ReadJwks {
        path: path.to_path_buf(),
        source,
    })?;
    let set: JwkSet = serde_json::from_slice(&bytes).map_err(|source| KeyError::BadJwks {
        path: path.to_path_buf(),
        source,
    })?;
    let mut keys = Vec::with_capacity(set.keys.len());
    let mut kids = std::collections::HashSet::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let Some(kid) = jwk.common.key_id.clone().filter(|kid| !kid.is_empty()) else {
            skipped.push(format!("key {i}: no kid"));
            continue;
        };
        if let Some(usage) = &jwk.common.public_key_use
            && *usage != PublicKeyUse::Signature
        {
            skipped.push(format!("{kid:?}: not a signature key"));
            continue;
        }
        let alg = match jwk_algorithm(jwk) {
            Ok(alg) => alg,
            Err(why) => {
                skipped.push(format!("{kid:?}: {why}"));
                continue;
            }
        };
        let bad = |source| KeyError::BadJwk {
            path: path.to_path_buf(),
            kid: kid.clone(),
            source,
        };
        let decoding = DecodingKey::from_jwk(jwk).map_err(bad)?;
        check_material(&decoding, alg).map_err(bad)?;
        if !kids.insert(kid.clone()) {
            return Err(KeyError::DuplicateKid {
                kid,
                file: Some(path.to_path_buf()),
            });
        }
        keys.push((kid, alg, decoding));
    }
    Ok(keys)
}

/// The algorithm a JWKS key verifies: its `alg` when it names one that fits
/// its key type, else the one its type implies (RS256 for RSA, ES256 or
/// ES384 by curve, EdDSA for Ed25519). Symmetric (`oct`) keys are left out:
/// HMAC secrets are configured in `auth.keys`, where their length is checked.
fn jwk_algorithm(jwk: &Jwk) -> Result<Algorithm, &'static str> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return Err("a curve Sluice does not verify"),
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::OctetKeyPair(_) => return Err("a curve Sluice does not verify"),
        AlgorithmParameters::OctetKey(_) => {
            return Err("a symmetric key (HMAC secrets belong in auth.keys)");
        }
        _ => return Err("a key type Sluice does not verify"),
    };
    let Some(named) = jwk.common.key_algorithm else {
        return Ok(implied);
    };
    let alg = Algorithm::try_from(named).map_err(|_| "an alg Sluice does not verify")?;
    let fits = match implied.family() {
        AlgorithmFamily::Rsa => alg.family() == AlgorithmFamily::Rsa,
        _ => alg == implied,
    };
    if fits {
        Ok(alg)
    } else {
        Err("its alg does not fit its key type")
    }
}

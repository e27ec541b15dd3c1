//! `private_key_jwt` (RFC 7523 §2.2, as SMART Backend Services use it): the app signs
//! a short JWT with its private key; we hold only the public keys it registered.
//!
//! The algorithm is chosen by the registered key, never by the token's header alone:
//! an EC P-256 key verifies only ES256, an RSA key only RS/PS, so a header that names
//! HMAC or `none` cannot select a weaker check.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::super::error::{DomainError, Result};

/// `client_assertion_type` for a JWT assertion.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How far ahead an assertion's `exp` may be (SMART: no more than five minutes).
pub const MAX_LIFETIME_SECS: u64 = 300;

/// Tolerated clock skew between the app and us.
const LEEWAY_SECS: u64 = 5;

/// A registered JWK Set is small: a few keys for rotation.
const MAX_KEYS: usize = 10;
const MAX_JWKS_BYTES: usize = 16 * 1024;

/// Members that only a private or symmetric key has. A registered set must not hold
/// them: a private key sent to us is a leaked key.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Checks a JWK Set an administrator registers and returns it as stored text.
pub fn validate_jwks(value: &serde_json::Value) -> Result<String> {
    let invalid = |why: &str| DomainError::Invalid(format!("jwks: {why}"));
    let text = value.to_string();
    if text.len() > MAX_JWKS_BYTES {
        return Err(invalid("at most 16 KiB"));
    }
    let keys = value
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| invalid("must be a JWK Set: {\"keys\": [...]}"))?;
    if keys.is_empty() || keys.len() > MAX_KEYS {
        return Err(invalid("must hold 1 to 10 keys"));
    }
    for key in keys {
        let object = key
            .as_object()
            .ok_or_else(|| invalid("every key must be an object"))?;
        if PRIVATE_MEMBERS.iter().any(|m| object.contains_key(*m)) {
            return Err(invalid(
                "holds private or symmetric key material: register public keys only",
            ));
        }
    }
    let set: JwkSet =
        serde_json::from_value(value.clone()).map_err(|_| invalid("a key is not a valid JWK"))?;
    let mut kids = std::collections::HashSet::new();
    for jwk in &set.keys {
        let kid = jwk
            .common
            .key_id
            .as_deref()
            .filter(|k| !k.is_empty() && k.len() <= 200)
            .ok_or_else(|| invalid("every key needs a kid"))?;
        if !kids.insert(kid.to_owned()) {
            return Err(invalid("kids must be distinct"));
        }
        if algorithms_for(jwk).is_empty() {
            return Err(invalid(
                "keys must be EC P-256/P-384, RSA of 2048 bits or more, or Ed25519",
            ));
        }
        DecodingKey::from_jwk(jwk).map_err(|_| invalid("a key does not decode"))?;
    }
    Ok(text)
}

/// The signature algorithms a registered key verifies.
fn algorithms_for(jwk: &Jwk) -> Vec<Algorithm> {
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => vec![],
        },
        AlgorithmParameters::RSA(rsa) => {
            let bits = URL_SAFE_NO_PAD
                .decode(rsa.n.trim_end_matches('='))
                .map(|n| n.iter().skip_while(|b| **b == 0).count() * 8)
                .unwrap_or(0);
            if bits >= 2048 {
                vec![
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ]
            } else {
                vec![]
            }
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        _ => vec![],
    }
}

/// The claims an assertion must carry.
#[derive(Debug, Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub sub: String,
    pub exp: u64,
    pub jti: String,
}

/// Who an assertion says it is, read before its signature is checked — only to find
/// the client whose keys will check it.
pub fn claimed_client(assertion: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Unverified {
        iss: Option<String>,
    }
    jsonwebtoken::dangerous::insecure_decode::<Unverified>(assertion)
        .ok()?
        .claims
        .iss
}

/// Why an assertion was refused, for the audit entry (the app gets `invalid_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NoKeys,
    UnknownKey,
    BadSignature,
    WrongAudience,
    Expired,
    TooLongLived,
    Malformed,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoKeys => "no_registered_keys",
            Refusal::UnknownKey => "unknown_kid",
            Refusal::BadSignature => "bad_signature",
            Refusal::WrongAudience => "wrong_audience",
            Refusal::Expired => "expired",
            Refusal::TooLongLived => "exp_too_far",
            Refusal::Malformed => "malformed",
        }
    }
}

/// Verifies `assertion` against the client's registered `jwks`: signature by the key
/// its `kid` names, `iss` = `sub` = `client_id`, `aud` one of `audiences`, `exp` in the
/// future and at most five minutes ahead, a `jti`. Replay is checked by the caller,
/// which records the `jti`.
pub fn verify(
    assertion: &str,
    jwks: Option<&str>,
    client_id: &str,
    audiences: &[String],
    now_secs: u64,
) -> std::result::Result<AssertionClaims, Refusal> {
    let set: JwkSet = jwks
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or(Refusal::NoKeys)?;
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| Refusal::Malformed)?;
    let kid = header.kid.as_deref().ok_or(Refusal::UnknownKey)?;
    let jwk = set.find(kid).ok_or(Refusal::UnknownKey)?;
    if !algorithms_for(jwk).contains(&header.alg) {
        return Err(Refusal::BadSignature);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| Refusal::UnknownKey)?;
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.leeway = LEEWAY_SECS;
    validation.set_issuer(&[client_id]);
    validation.sub = Some(client_id.to_owned());
    validation.set_audience(audiences);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let claims = match jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            use jsonwebtoken::errors::ErrorKind as K;
            return Err(match e.kind() {
                K::ExpiredSignature => Refusal::Expired,
                K::InvalidAudience => Refusal::WrongAudience,
                K::InvalidSignature => Refusal::BadSignature,
                _ => Refusal::Malformed,
            });
        }
    };
    if claims.exp > now_secs + MAX_LIFETIME_SECS + LEEWAY_SECS {
        return Err(Refusal::TooLongLived);
    }
    if claims.jti.is_empty() || claims.jti.len() > 200 {
        return Err(Refusal::Malformed);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_key_set_with_private_material_is_refused() {
        let set = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            "d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}]});
        let err = validate_jwks(&set).unwrap_err().to_string();
        assert!(err.contains("private"), "{err}");
    }

    #[test]
    fn a_public_p256_key_with_a_kid_is_accepted_and_one_without_is_not() {
        let key = json!({"kty": "EC", "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        assert!(validate_jwks(&json!({"keys": [key.clone()]})).is_err());
        let mut with_kid = key;
        with_kid["kid"] = json!("k1");
        assert!(validate_jwks(&json!({"keys": [with_kid]})).is_ok());
        assert!(validate_jwks(&json!({"keys": []})).is_err());
        assert!(validate_jwks(&json!([1])).is_err());
    }

    #[test]
    fn a_symmetric_key_is_refused() {
        let set = json!({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]});
        assert!(validate_jwks(&set).is_err());
    }
}

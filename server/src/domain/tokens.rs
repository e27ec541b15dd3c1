//! Access tokens (EdDSA-signed JWTs) and refresh tokens (opaque, stored hashed).
//!
//! Access tokens are pinned to one algorithm (EdDSA) and one key id, with `iss`, `aud`,
//! `exp` and `nbf` checked, so `alg: none`, HMAC-with-the-public-key and foreign tokens
//! fail before any claim is read.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::now_ms;

/// Seconds of clock skew tolerated between nodes.
const LEEWAY_SECS: u64 = 5;

/// Claims of an access token. `sid` names the session, so revoking the session (logout,
/// refresh reuse, deactivation) cuts the access token off too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub sid: String,
    pub rid: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
    /// Only in an app's token (client credentials): the granted scopes, space-separated.
    /// A person's token has none and is limited by their account's rights alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key {path}: {reason}")]
    Load { path: String, reason: String },
}

/// Signs and verifies access tokens with one Ed25519 key.
pub struct TokenSigner {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl TokenSigner {
    /// Loads the PKCS#8 PEM key at `path`; when `create` is set and the file does not
    /// exist, generates one and writes it with owner-only permissions.
    pub fn load_or_create(
        path: &Path,
        create: bool,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, KeyError> {
        let err = |reason: String| KeyError::Load {
            path: path.display().to_string(),
            reason,
        };
        let pem = match std::fs::read_to_string(path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let key = SigningKey::generate(&mut rand::rngs::OsRng);
                let pem = key
                    .to_pkcs8_pem(Default::default())
                    .map_err(|e| err(e.to_string()))?
                    .to_string();
                write_private(path, &pem).map_err(|e| err(e.to_string()))?;
                tracing::info!(kid = %kid_of(&key), "generated a new access-token signing key");
                pem
            }
            Err(e) => return Err(err(e.to_string())),
        };
        Self::from_pem(&pem, issuer, audience).map_err(err)
    }

    pub fn from_pem(pem: &str, issuer: &str, audience: &str) -> Result<Self, String> {
        let key = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}"))?;
        let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        let public = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        let decoding = DecodingKey::from_ed_components(&public).map_err(|e| e.to_string())?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Ok(TokenSigner {
            kid: kid_of(&key),
            encoding,
            decoding,
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A signed access token for `ttl_secs`.
    pub fn issue(
        &self,
        user_id: &str,
        region_id: &str,
        session_id: &str,
        ttl_secs: u64,
    ) -> Result<String, String> {
        self.issue_with_scope(user_id, region_id, session_id, ttl_secs, None)
    }

    /// A signed access token for an app's account, carrying its granted `scope`.
    pub fn issue_with_scope(
        &self,
        user_id: &str,
        region_id: &str,
        session_id: &str,
        ttl_secs: u64,
        scope: Option<String>,
    ) -> Result<String, String> {
        let now = (now_ms() / 1000) as u64;
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id.to_owned(),
            sid: session_id.to_owned(),
            rid: region_id.to_owned(),
            iat: now,
            nbf: now,
            exp: now + ttl_secs,
            jti: uuid::Uuid::new_v4().to_string(),
            scope,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// The claims of a token we issued and that has not expired; `None` for anything
    /// else. The reason is not returned: callers answer every failure the same way.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::EdDSA || header.kid.as_deref() != Some(self.kid.as_str()) {
            return None;
        }
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// Key id: the first 16 hex digits of SHA-256 of the public key.
fn kid_of(key: &SigningKey) -> String {
    hex::encode(Sha256::digest(key.verifying_key().as_bytes()))[..16].to_owned()
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// A new opaque refresh token: 256 random bits, base64url.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What we store for a refresh token: its SHA-256. The token has 256 bits of entropy, so
/// a fast hash is enough and lookups by hash are constant-time in effect.
pub fn hash_refresh_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = key.to_pkcs8_pem(Default::default()).unwrap();
        TokenSigner::from_pem(&pem, "tsunagu", "tsunagu-api").unwrap()
    }

    #[test]
    fn an_issued_token_verifies_with_its_claims() {
        let s = signer();
        let t = s.issue("u1", "r1", "s1", 900).unwrap();
        let c = s.verify(&t).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.rid.as_str(), c.sid.as_str()),
            ("u1", "r1", "s1")
        );
    }

    #[test]
    fn a_token_from_another_key_is_refused() {
        let t = signer().issue("u1", "r1", "s1", 900).unwrap();
        assert!(signer().verify(&t).is_none());
    }

    #[test]
    fn a_key_written_to_disk_loads_back_with_the_same_kid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/jwt.pem");
        let a = TokenSigner::load_or_create(&path, true, "i", "a").unwrap();
        let b = TokenSigner::load_or_create(&path, false, "i", "a").unwrap();
        assert_eq!(a.kid(), b.kid());
        let t = a.issue("u", "r", "s", 60).unwrap();
        assert!(b.verify(&t).is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = new_refresh_token();
        assert_ne!(a, new_refresh_token());
        assert_eq!(hash_refresh_token(&a).len(), 64);
        assert_ne!(hash_refresh_token(&a), a);
    }
}

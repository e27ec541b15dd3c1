//! Access tokens (EdDSA-signed JWTs) and refresh tokens (opaque, stored hashed).
//!
//! Access tokens are pinned to one algorithm (EdDSA) and to the key ids of our key ring,
//! with `iss`, `aud`, `exp` and `nbf` checked, so `alg: none`, HMAC-with-the-public-key
//! and foreign tokens fail before any claim is read.
//!
//! Rotation (`tsunagu-server keys jwt-rotate`) adds a key to the ring directory. Every
//! node reloads the ring every [`RELOAD_EVERY`]; the new key verifies at once and signs
//! only after `auth.jwt_key_activation_secs`, by which time every node has it. The key it
//! replaces keeps verifying for [`MAX_TOKEN_SECS`] (the longest token life) and is then
//! refused: nobody is signed out, and no token outlives its key's retirement.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// The longest an access token lives: the policy's maximum `access_token_ttl_secs`. A key
/// replaced longer ago than this (plus the leeway) signed no token still valid.
pub const MAX_TOKEN_SECS: u64 = 3600;

/// How often a running server re-reads its key ring ([`TokenSigner::reload`]).
pub const RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a signer's keys come from, so that it can reload them: the base key file
/// (`auth.jwt_key_file`, the one key before any rotation) and the ring directory
/// (`auth.jwt_key_dir`) where `keys jwt-rotate` adds `jwt-<unix ms>.pem`.
#[derive(Debug, Clone)]
pub struct RingSource {
    pub base_file: PathBuf,
    pub dir: PathBuf,
    /// Seconds a new key is only accepted before it signs.
    pub activation_secs: u64,
}

/// What a key of the ring is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Signs new tokens (and verifies).
    Signing,
    /// Added, not yet active: verifies only (another node may already sign with it).
    Next,
    /// Replaced, verifying the tokens it signed until they have all expired.
    Verifying,
    /// Replaced longer ago than a token lives: refused; its file can be removed.
    Retired,
}

/// One key of the ring.
struct RingKey {
    kid: String,
    /// When it was added (Unix ms, from its file name); 0 for the base key.
    created_ms: i64,
    path: PathBuf,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// The keys, oldest first.
struct Ring {
    keys: Vec<RingKey>,
}

impl Ring {
    fn active(&self, k: &RingKey, now_ms: i64, activation_ms: i64) -> bool {
        k.created_ms == 0 || k.created_ms + activation_ms <= now_ms
    }

    /// The signing key: the newest active one (the oldest when none is active yet).
    fn signing(&self, now_ms: i64, activation_ms: i64) -> &RingKey {
        self.keys
            .iter()
            .rev()
            .find(|k| self.active(k, now_ms, activation_ms))
            .unwrap_or(&self.keys[0])
    }

    fn state(&self, i: usize, now_ms: i64, activation_ms: i64) -> KeyState {
        let signing = self.signing(now_ms, activation_ms);
        let k = &self.keys[i];
        if k.kid == signing.kid {
            return KeyState::Signing;
        }
        if k.created_ms > signing.created_ms {
            return KeyState::Next;
        }
        // Replaced: by the first newer key that became active.
        let replaced_at = self.keys[i + 1..]
            .iter()
            .find(|n| self.active(n, now_ms, activation_ms))
            .map(|n| n.created_ms.max(1) + activation_ms)
            .unwrap_or(now_ms);
        let lifetime_ms = ((MAX_TOKEN_SECS + LEEWAY_SECS) * 1000) as i64;
        if replaced_at + lifetime_ms <= now_ms {
            KeyState::Retired
        } else {
            KeyState::Verifying
        }
    }

    fn verifying(&self, kid: &str, now_ms: i64, activation_ms: i64) -> Option<&RingKey> {
        let i = self.keys.iter().position(|k| k.kid == kid)?;
        (self.state(i, now_ms, activation_ms) != KeyState::Retired).then(|| &self.keys[i])
    }
}

/// Signs and verifies access tokens with a ring of Ed25519 keys: one signs, the ones it
/// replaced verify the tokens they signed until those expire, so a rotation signs nobody
/// out. Tokens carry the key id (`kid`); only a key of the ring is accepted.
pub struct TokenSigner {
    ring: std::sync::RwLock<Arc<Ring>>,
    source: Option<RingSource>,
    activation_ms: i64,
    validation: Validation,
    issuer: String,
    audience: String,
}

fn ring_key(pem: &str, created_ms: i64, path: PathBuf) -> Result<RingKey, String> {
    let key =
        SigningKey::from_pkcs8_pem(pem).map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}"))?;
    let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
    let encoding = EncodingKey::from_ed_der(der.as_bytes());
    let public = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    let decoding = DecodingKey::from_ed_components(&public).map_err(|e| e.to_string())?;
    Ok(RingKey {
        kid: kid_of(&key),
        created_ms,
        path,
        encoding,
        decoding,
    })
}

/// `jwt-<unix ms>.pem` → its time.
fn ring_file_time(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("jwt-")?
        .strip_suffix(".pem")?
        .parse::<i64>()
        .ok()
        .filter(|t| *t > 0)
}

fn load_ring(source: &RingSource, create: bool) -> Result<Ring, KeyError> {
    let err = |path: &Path, reason: String| KeyError::Load {
        path: path.display().to_string(),
        reason,
    };
    let mut keys = Vec::new();
    let base = &source.base_file;
    match std::fs::read_to_string(base) {
        Ok(pem) => keys.push(ring_key(&pem, 0, base.clone()).map_err(|e| err(base, e))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(base, e.to_string())),
    }
    if source.dir.exists() {
        let entries =
            std::fs::read_dir(&source.dir).map_err(|e| err(&source.dir, e.to_string()))?;
        let mut added = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| err(&source.dir, e.to_string()))?.path();
            if let Some(t) = ring_file_time(&path) {
                let pem = std::fs::read_to_string(&path).map_err(|e| err(&path, e.to_string()))?;
                added.push(ring_key(&pem, t, path.clone()).map_err(|e| err(&path, e))?);
            }
        }
        added.sort_by_key(|k| k.created_ms);
        keys.extend(added);
    }
    if keys.is_empty() {
        if !create {
            return Err(err(base, "no such file (and no key in the ring)".into()));
        }
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = key
            .to_pkcs8_pem(Default::default())
            .map_err(|e| err(base, e.to_string()))?
            .to_string();
        write_private(base, &pem).map_err(|e| err(base, e.to_string()))?;
        tracing::info!(kid = %kid_of(&key), "generated a new access-token signing key");
        keys.push(ring_key(&pem, 0, base.clone()).map_err(|e| err(base, e))?);
    }
    Ok(Ring { keys })
}

/// Adds a new key to the ring in `dir` (`jwt-<unix ms>.pem`, mode 0600): it verifies at
/// once and signs `activation_secs` later. Returns its key id and file.
pub fn add_ring_key(dir: &Path) -> Result<(String, PathBuf), KeyError> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let path = dir.join(format!("jwt-{}.pem", now_ms()));
    let err = |reason: String| KeyError::Load {
        path: path.display().to_string(),
        reason,
    };
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| err(e.to_string()))?
        .to_string();
    write_private(&path, &pem).map_err(|e| err(e.to_string()))?;
    Ok((kid_of(&key), path))
}

impl TokenSigner {
    /// Loads the PKCS#8 PEM key at `path` alone (no ring); when `create` is set and the
    /// file does not exist, generates one and writes it with owner-only permissions.
    pub fn load_or_create(
        path: &Path,
        create: bool,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, KeyError> {
        let source = RingSource {
            base_file: path.to_owned(),
            dir: path.with_extension("no-ring"),
            activation_secs: 0,
        };
        let ring = load_ring(&source, create)?;
        Ok(Self::from_ring(ring, None, 0, issuer, audience))
    }

    /// Loads the base key and the ring (generating the base key when `create` is set and
    /// there is no key at all). [`TokenSigner::reload`] re-reads both.
    pub fn load_ring(
        source: RingSource,
        create: bool,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, KeyError> {
        let ring = load_ring(&source, create)?;
        let activation_ms = (source.activation_secs * 1000) as i64;
        Ok(Self::from_ring(
            ring,
            Some(source),
            activation_ms,
            issuer,
            audience,
        ))
    }

    pub fn from_pem(pem: &str, issuer: &str, audience: &str) -> Result<Self, String> {
        let key = ring_key(pem, 0, PathBuf::new())?;
        Ok(Self::from_ring(
            Ring { keys: vec![key] },
            None,
            0,
            issuer,
            audience,
        ))
    }

    fn from_ring(
        ring: Ring,
        source: Option<RingSource>,
        activation_ms: i64,
        issuer: &str,
        audience: &str,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        TokenSigner {
            ring: std::sync::RwLock::new(Arc::new(ring)),
            source,
            activation_ms,
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    fn ring(&self) -> Arc<Ring> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the key ring (every [`RELOAD_EVERY`] in a running server). A ring that
    /// fails to load leaves the loaded one in place. Returns whether the keys changed.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let Some(source) = &self.source else {
            return Ok(false);
        };
        let fresh = load_ring(source, false)?;
        let old = self.ring();
        let changed = fresh.keys.len() != old.keys.len()
            || fresh
                .keys
                .iter()
                .zip(&old.keys)
                .any(|(a, b)| a.kid != b.kid);
        if changed {
            *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
            tracing::info!(kid = %self.kid(), "reloaded the access-token key ring");
        }
        Ok(changed)
    }

    /// The id of the key that signs now.
    pub fn kid(&self) -> String {
        self.ring()
            .signing(now_ms(), self.activation_ms)
            .kid
            .clone()
    }

    /// Every key of the ring, oldest first: id, when it was added (Unix ms; 0 for the
    /// base key), its file and what it does now.
    pub fn keys(&self) -> Vec<(String, i64, PathBuf, KeyState)> {
        let ring = self.ring();
        let now = now_ms();
        (0..ring.keys.len())
            .map(|i| {
                let k = &ring.keys[i];
                (
                    k.kid.clone(),
                    k.created_ms,
                    k.path.clone(),
                    ring.state(i, now, self.activation_ms),
                )
            })
            .collect()
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
        let ring = self.ring();
        let key = ring.signing(now_ms(), self.activation_ms);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|e| e.to_string())
    }

    /// The claims of a token we issued and that has not expired; `None` for anything
    /// else. The reason is not returned: callers answer every failure the same way.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::EdDSA {
            return None;
        }
        let ring = self.ring();
        let key = ring.verifying(header.kid.as_deref()?, now_ms(), self.activation_ms)?;
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
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

    fn ring_in(dir: &Path, activation_secs: u64) -> TokenSigner {
        TokenSigner::load_ring(
            RingSource {
                base_file: dir.join("jwt-ed25519.pem"),
                dir: dir.join("jwt"),
                activation_secs,
            },
            true,
            "i",
            "a",
        )
        .unwrap()
    }

    #[test]
    fn a_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key_once_active() {
        let dir = tempfile::tempdir().unwrap();
        let signer = ring_in(dir.path(), 0);
        let old_kid = signer.kid();
        let before = signer.issue("u", "r", "s", 900).unwrap();
        let (new_kid, _) = add_ring_key(&dir.path().join("jwt")).unwrap();
        assert!(signer.reload().unwrap());
        assert_eq!(signer.kid(), new_kid, "activation 0: signs at once");
        assert!(
            signer.verify(&before).is_some(),
            "the old key's tokens still verify"
        );
        let after = signer.issue("u", "r", "s", 900).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&after).unwrap().kid.as_deref(),
            Some(new_kid.as_str())
        );
        assert!(signer.verify(&after).is_some());
        let states: Vec<_> = signer.keys().into_iter().map(|k| (k.0, k.3)).collect();
        assert_eq!(
            states,
            vec![(old_kid, KeyState::Verifying), (new_kid, KeyState::Signing)]
        );
    }

    #[test]
    fn a_new_key_waits_for_its_activation_and_a_replaced_one_retires_after_a_token_life() {
        let dir = tempfile::tempdir().unwrap();
        let signer = ring_in(dir.path(), 60);
        let old = signer.kid();
        add_ring_key(&dir.path().join("jwt")).unwrap();
        signer.reload().unwrap();
        assert_eq!(signer.kid(), old, "the new key only verifies for 60 s");
        let ring = signer.ring();
        let t0 = ring.keys[1].created_ms;
        let act = 60_000;
        assert_eq!(ring.state(1, t0 + 1_000, act), KeyState::Next);
        assert_eq!(ring.state(1, t0 + act, act), KeyState::Signing);
        assert_eq!(ring.state(0, t0 + act, act), KeyState::Verifying);
        let life = ((MAX_TOKEN_SECS + LEEWAY_SECS) * 1000) as i64;
        assert_eq!(ring.state(0, t0 + act + life - 1, act), KeyState::Verifying);
        assert_eq!(ring.state(0, t0 + act + life, act), KeyState::Retired);
        assert!(ring.verifying(&old, t0 + act + life, act).is_none());
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = new_refresh_token();
        assert_ne!(a, new_refresh_token());
        assert_eq!(hash_refresh_token(&a).len(), 64);
        assert_ne!(hash_refresh_token(&a), a);
    }
}

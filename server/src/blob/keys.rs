//! Key-encryption keys (KEKs): they wrap each file's data key. KEKs come from files in
//! a key directory or from the environment — never from the database — so a stolen
//! database (or bucket) alone opens nothing. Rotating means adding a new KEK and
//! re-wrapping data keys; blobs are never rewritten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use zeroize::Zeroizing;

const WRAP_DOMAIN: &[u8] = b"tsunagu-dek-v1";
/// Associated-data prefix of a wrapped TOTP secret (followed by the user id), so a
/// wrapped secret can be neither swapped between users nor passed off as a data key.
pub const TOTP_DOMAIN: &[u8] = b"tsunagu-totp-v1";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("KEK {0:?} is not configured")]
    UnknownKek(String),
    #[error("the wrapped data key does not open (wrong KEK or tampered)")]
    Unwrap,
    #[error("key material: {0}")]
    Invalid(String),
    #[error("key directory: {0}")]
    Io(#[from] std::io::Error),
}

/// The configured KEKs and which one wraps new data keys.
pub struct KeyRing {
    keks: BTreeMap<String, Zeroizing<[u8; 32]>>,
    current: String,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("ids", &self.keks.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish()
    }
}

fn parse_key(id: &str, b64: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(b64.trim())
            .map_err(|_| KeyError::Invalid(format!("KEK {id:?} is not base64")))?,
    );
    if bytes.len() != 32 {
        return Err(KeyError::Invalid(format!("KEK {id:?} must be 32 bytes")));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&bytes);
    Ok(key)
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl KeyRing {
    /// Loads every `<id>.kek` file in `dir` and every `id=base64` pair of `env_keks`
    /// (comma separated). The current KEK is `current` if given, else the greatest id
    /// (generated ids are timestamps, so: the newest). With `create` and no KEK at all,
    /// generates one in `dir`.
    pub fn load(
        dir: &Path,
        env_keks: Option<&str>,
        current: Option<&str>,
        create: bool,
    ) -> Result<Self, KeyError> {
        let mut keks = BTreeMap::new();
        if dir.exists() {
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                if path.extension().and_then(|e| e.to_str()) != Some("kek") {
                    continue;
                }
                let Some(id) = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .filter(|s| valid_id(s))
                else {
                    continue;
                };
                let text = Zeroizing::new(std::fs::read_to_string(&path)?);
                keks.insert(id.to_owned(), parse_key(id, &text)?);
            }
        }
        for pair in env_keks
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (id, b64) = pair.split_once('=').ok_or_else(|| {
                KeyError::Invalid("TSUNAGU_FILES_KEKS entries are id=base64".into())
            })?;
            if !valid_id(id) {
                return Err(KeyError::Invalid(format!("bad KEK id {id:?}")));
            }
            keks.insert(id.to_owned(), parse_key(id, b64)?);
        }
        if keks.is_empty() && create {
            let id = generate_kek(dir)?;
            return Self::load(dir, env_keks, Some(&id), false);
        }
        let current = match current {
            Some(id) => id.to_owned(),
            None => keks.keys().next_back().cloned().ok_or_else(|| {
                KeyError::Invalid("no KEK configured (files.kek_dir or TSUNAGU_FILES_KEKS)".into())
            })?,
        };
        if !keks.contains_key(&current) {
            return Err(KeyError::UnknownKek(current));
        }
        Ok(KeyRing { keks, current })
    }

    pub fn current_id(&self) -> &str {
        &self.current
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keks.keys().map(String::as_str)
    }

    /// Wraps a data key under the current KEK, bound to the file id.
    pub fn wrap(&self, file_id: &str, dek: &[u8; 32]) -> (String, String) {
        let kek = &self.keks[&self.current];
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = [WRAP_DOMAIN, file_id.as_bytes()].concat();
        let sealed = Aes256Gcm::new(kek.as_ref().into())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: dek,
                    aad: &aad,
                },
            )
            .expect("wrapping 32 bytes cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        (self.current.clone(), STANDARD.encode(out))
    }

    /// Unwraps a data key; fails for an unknown KEK or any tampering.
    pub fn unwrap(
        &self,
        kek_id: &str,
        file_id: &str,
        wrapped: &str,
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let kek = self
            .keks
            .get(kek_id)
            .ok_or_else(|| KeyError::UnknownKek(kek_id.to_owned()))?;
        let raw = Zeroizing::new(STANDARD.decode(wrapped).map_err(|_| KeyError::Unwrap)?);
        if raw.len() != 12 + 32 + 16 {
            return Err(KeyError::Unwrap);
        }
        let aad = [WRAP_DOMAIN, file_id.as_bytes()].concat();
        let dek = Zeroizing::new(
            Aes256Gcm::new(kek.as_ref().into())
                .decrypt(
                    Nonce::from_slice(&raw[..12]),
                    Payload {
                        msg: &raw[12..],
                        aad: &aad,
                    },
                )
                .map_err(|_| KeyError::Unwrap)?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&dek);
        Ok(key)
    }
}

impl KeyRing {
    /// Wraps a short secret (a TOTP seed) under the current KEK, bound to `domain` and
    /// `owner_id`: `(kek id, base64 of nonce ‖ ciphertext ‖ tag)`.
    pub fn seal(&self, domain: &[u8], owner_id: &str, secret: &[u8]) -> (String, String) {
        let kek = &self.keks[&self.current];
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = [domain, owner_id.as_bytes()].concat();
        let sealed = Aes256Gcm::new(kek.as_ref().into())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .expect("sealing a short secret cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        (self.current.clone(), STANDARD.encode(out))
    }

    /// Opens what [`KeyRing::seal`] made; fails for an unknown KEK, another owner or
    /// domain, or any tampering.
    pub fn open(
        &self,
        domain: &[u8],
        kek_id: &str,
        owner_id: &str,
        sealed: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let kek = self
            .keks
            .get(kek_id)
            .ok_or_else(|| KeyError::UnknownKek(kek_id.to_owned()))?;
        let raw = Zeroizing::new(STANDARD.decode(sealed).map_err(|_| KeyError::Unwrap)?);
        if raw.len() < 12 + 16 {
            return Err(KeyError::Unwrap);
        }
        let aad = [domain, owner_id.as_bytes()].concat();
        Aes256Gcm::new(kek.as_ref().into())
            .decrypt(
                Nonce::from_slice(&raw[..12]),
                Payload {
                    msg: &raw[12..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Unwrap)
    }
}

/// Writes a new random KEK `kek-<UTC timestamp>.kek` (mode 0600) into `dir`; returns
/// its id.
pub fn generate_kek(dir: &Path) -> Result<String, KeyError> {
    std::fs::create_dir_all(dir)?;
    let id = format!("kek-{}", chrono::Utc::now().format("%Y%m%d%H%M%S%3f"));
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    let path: PathBuf = dir.join(format!("{id}.kek"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    let mut f = options.open(&path)?;
    f.write_all(STANDARD.encode(key.as_ref()).as_bytes())?;
    f.sync_all()?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_unwraps_only_with_its_kek_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::load(dir.path(), None, None, true).unwrap();
        let dek = [7u8; 32];
        let (kek, wrapped) = ring.wrap("file-a", &dek);
        assert_eq!(*ring.unwrap(&kek, "file-a", &wrapped).unwrap(), dek);
        assert!(matches!(
            ring.unwrap(&kek, "file-b", &wrapped),
            Err(KeyError::Unwrap)
        ));
        assert!(matches!(
            ring.unwrap("nope", "file-a", &wrapped),
            Err(KeyError::UnknownKek(_))
        ));
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_owner_and_domain() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::load(dir.path(), None, None, true).unwrap();
        let (kek, sealed) = ring.seal(TOTP_DOMAIN, "user-a", b"JBSWY3DPEHPK3PXP");
        assert!(!sealed.contains("JBSWY3DP"));
        assert_eq!(
            ring.open(TOTP_DOMAIN, &kek, "user-a", &sealed)
                .unwrap()
                .as_slice(),
            b"JBSWY3DPEHPK3PXP"
        );
        assert!(ring.open(TOTP_DOMAIN, &kek, "user-b", &sealed).is_err());
        assert!(ring.open(WRAP_DOMAIN, &kek, "user-a", &sealed).is_err());
    }

    #[test]
    fn the_newest_kek_is_current_and_old_ones_still_unwrap() {
        let dir = tempfile::tempdir().unwrap();
        let old = KeyRing::load(dir.path(), None, None, true).unwrap();
        let (old_id, wrapped) = old.wrap("f", &[1u8; 32]);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let new_id = generate_kek(dir.path()).unwrap();
        let ring = KeyRing::load(dir.path(), None, None, false).unwrap();
        assert_eq!(ring.current_id(), new_id);
        assert_eq!(*ring.unwrap(&old_id, "f", &wrapped).unwrap(), [1u8; 32]);
        let env = format!("envkey={}", STANDARD.encode([9u8; 32]));
        let ring = KeyRing::load(dir.path(), Some(&env), Some("envkey"), false).unwrap();
        assert_eq!(ring.current_id(), "envkey");
    }
}

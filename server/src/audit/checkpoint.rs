//! Signed checkpoints of the audit chain. Every `checkpoint_every` entries, and at the
//! head when the last checkpoint is older than `checkpoint_interval_secs`, the hash of
//! one entry is signed with an Ed25519 key from configuration. Anyone who rewrites the
//! chain consistently (recomputing every hash after their change) still cannot forge
//! the signature over an entry that was checkpointed before.
//!
//! Before signing, the entries since the previous checkpoint are re-verified, so a
//! checkpoint never vouches for a chain that was already broken.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::{ChainBreak, EntryRow, ProblemReason, ENTRY_COLUMNS, GENESIS_HASH};
use crate::clock::now_ms;
use crate::store::{Conn, Result, Store};

/// What the signature covers: a fixed domain-separation line, the seq and the hash.
pub const MESSAGE_PREFIX: &str = "tsunagu-audit-checkpoint-v1";

/// How often the background task looks for work.
pub const TICK: Duration = Duration::from_secs(10);

/// Most checkpoints written in one run, so a backlog (a lowered `checkpoint_every`)
/// is worked off in bounded steps.
const MAX_PER_RUN: usize = 1000;

/// The signed message for the entry at `seq` with `hash`.
pub fn message(seq: i64, hash: &str) -> String {
    format!("{MESSAGE_PREFIX}\n{seq}\n{hash}")
}

/// Key id: the first 16 hex digits of SHA-256 of the public key.
pub fn key_id_of(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))[..16].to_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("audit signing key {path}: {reason}")]
    Load { path: String, reason: String },
}

/// Signs checkpoints. Held by the checkpoint task only; everything else gets the
/// [`CheckpointVerifier`].
pub struct CheckpointSigner {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// Loads the PKCS#8 PEM key at `path`; when `create` is set and the file does not
    /// exist, generates one and writes it with owner-only permissions.
    pub fn load_or_create(path: &Path, create: bool) -> Result<Self, KeyError> {
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
                tracing::info!(
                    key_id = %key_id_of(&key.verifying_key()),
                    "generated a new audit checkpoint signing key"
                );
                pem
            }
            Err(e) => return Err(err(e.to_string())),
        };
        Self::from_pem(&pem).map_err(err)
    }

    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let key = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}"))?;
        Ok(Self::from_key(key))
    }

    pub fn from_key(key: SigningKey) -> Self {
        let key_id = key_id_of(&key.verifying_key());
        CheckpointSigner { key, key_id }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// A verifier of this key alone (see [`CheckpointVerifier::load`] for the one that
    /// also knows the keys this one replaced).
    pub fn verifier(&self) -> CheckpointVerifier {
        CheckpointVerifier::single(self.key.verifying_key())
    }

    /// Hex of the Ed25519 signature over [`message`].
    pub fn sign(&self, seq: i64, hash: &str) -> String {
        hex::encode(self.key.sign(message(seq, hash).as_bytes()).to_bytes())
    }
}

/// Checks checkpoint signatures: the public half of the configured key and those of the
/// keys it replaced (`audit.verify_keys_dir`, written by `keys audit-rotate`), by key id,
/// so checkpoints signed before a rotation still verify. Clones share the key set;
/// [`CheckpointVerifier::refresh`] re-reads it (each verification does).
#[derive(Debug, Clone)]
pub struct CheckpointVerifier {
    keys: Arc<std::sync::RwLock<VerifierKeys>>,
    source: Option<Arc<VerifierSource>>,
}

#[derive(Debug, Clone)]
struct VerifierKeys {
    current: String,
    by_id: std::collections::BTreeMap<String, VerifyingKey>,
}

/// Where the verifier reads its keys again.
#[derive(Debug)]
struct VerifierSource {
    signing_key_file: std::path::PathBuf,
    verify_keys_dir: std::path::PathBuf,
}

impl CheckpointVerifier {
    fn single(key: VerifyingKey) -> Self {
        let id = key_id_of(&key);
        CheckpointVerifier {
            keys: Arc::new(std::sync::RwLock::new(VerifierKeys {
                current: id.clone(),
                by_id: [(id, key)].into(),
            })),
            source: None,
        }
    }

    /// The current key (the public half of `signing_key_file`) and every earlier one in
    /// `verify_keys_dir`.
    pub fn load(signing_key_file: &Path, verify_keys_dir: &Path) -> Result<Self, KeyError> {
        let source = VerifierSource {
            signing_key_file: signing_key_file.to_owned(),
            verify_keys_dir: verify_keys_dir.to_owned(),
        };
        let keys = read_verifier_keys(&source)?;
        Ok(CheckpointVerifier {
            keys: Arc::new(std::sync::RwLock::new(keys)),
            source: Some(Arc::new(source)),
        })
    }

    /// Re-reads the keys (after a rotation on another node); on failure the loaded ones
    /// stay.
    pub fn refresh(&self) {
        let Some(source) = &self.source else { return };
        match read_verifier_keys(source) {
            Ok(keys) => *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys,
            Err(e) => tracing::warn!(error = %e, "re-reading the audit verifying keys failed"),
        }
    }

    /// The id of the current signing key.
    pub fn key_id(&self) -> String {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .current
            .clone()
    }

    /// Every key id it accepts.
    pub fn key_ids(&self) -> Vec<String> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.by_id.keys().cloned().collect()
    }

    /// Why the checkpoint does not verify, if it does not.
    pub fn check(
        &self,
        seq: i64,
        hash: &str,
        key_id: &str,
        signature: &str,
    ) -> std::result::Result<(), String> {
        let key = {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            keys.by_id.get(key_id).copied()
        };
        let Some(key) = key else {
            return Err(format!(
                "checkpoint at seq {seq} was signed with key {key_id:?}, which is neither the \
                 configured key nor one it replaced"
            ));
        };
        let bad = || format!("the signature of the checkpoint at seq {seq} does not verify");
        let bytes = hex::decode(signature).map_err(|_| bad())?;
        let signature = Signature::from_slice(&bytes).map_err(|_| bad())?;
        key.verify_strict(message(seq, hash).as_bytes(), &signature)
            .map_err(|_| bad())
    }
}

fn read_verifier_keys(source: &VerifierSource) -> Result<VerifierKeys, KeyError> {
    let err = |path: &Path, reason: String| KeyError::Load {
        path: path.display().to_string(),
        reason,
    };
    let path = &source.signing_key_file;
    let pem = std::fs::read_to_string(path).map_err(|e| err(path, e.to_string()))?;
    let current = SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| err(path, format!("not an Ed25519 PKCS#8 key: {e}")))?
        .verifying_key();
    let current_id = key_id_of(&current);
    let mut by_id = std::collections::BTreeMap::new();
    let dir = &source.verify_keys_dir;
    if dir.exists() {
        for entry in std::fs::read_dir(dir).map_err(|e| err(dir, e.to_string()))? {
            let path = entry.map_err(|e| err(dir, e.to_string()))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("pub") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| err(&path, e.to_string()))?;
            let key = public_key_from_text(&text).map_err(|e| err(&path, e))?;
            by_id.insert(key_id_of(&key), key);
        }
    }
    by_id.insert(current_id.clone(), current);
    Ok(VerifierKeys {
        current: current_id,
        by_id,
    })
}

/// A public key as `keys audit-rotate` keeps it: base64 of the 32 bytes.
pub fn public_key_text(key: &VerifyingKey) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

fn public_key_from_text(text: &str) -> std::result::Result<VerifyingKey, String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "not base64".to_owned())?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "an Ed25519 public key has 32 bytes".to_owned())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| e.to_string())
}

/// Rotates the checkpoint signing key at `signing_key_file`: keeps the public half of
/// the old key in `verify_keys_dir` (first, so no checkpoint is ever signed by a key
/// the verifiers cannot find), then replaces the file with a new key (written beside it
/// and renamed over it). Returns `(old key id, new key id)`. Running servers sign with
/// the new key from their next checkpoint run (they re-read the file).
pub fn rotate_signing_key(
    signing_key_file: &Path,
    verify_keys_dir: &Path,
) -> Result<(String, String), KeyError> {
    let old = CheckpointSigner::load_or_create(signing_key_file, false)?;
    let err = |path: &Path, reason: String| KeyError::Load {
        path: path.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(verify_keys_dir).map_err(|e| err(verify_keys_dir, e.to_string()))?;
    let public_path = verify_keys_dir.join(format!("{}.pub", old.key_id()));
    if !public_path.exists() {
        write_private(&public_path, &public_key_text(&old.key.verifying_key()))
            .map_err(|e| err(&public_path, e.to_string()))?;
    }
    let new = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = new
        .to_pkcs8_pem(Default::default())
        .map_err(|e| err(signing_key_file, e.to_string()))?
        .to_string();
    let staged = signing_key_file.with_extension("pem.new");
    let _ = std::fs::remove_file(&staged);
    write_private(&staged, &pem).map_err(|e| err(&staged, e.to_string()))?;
    std::fs::rename(&staged, signing_key_file).map_err(|e| err(signing_key_file, e.to_string()))?;
    Ok((old.key_id().to_owned(), key_id_of(&new.verifying_key())))
}

/// When to checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointSettings {
    /// Sign every entry whose seq is a multiple of this.
    pub every: i64,
    /// Sign the head when the last checkpoint is older than this (ms) and newer
    /// entries exist.
    pub interval_ms: i64,
}

/// A stored checkpoint.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CheckpointRow {
    pub seq: i64,
    pub hash: String,
    pub key_id: String,
    pub signature: String,
    pub created_at: i64,
}

/// One pass of the task: signs what is due, returns how many checkpoints it wrote.
pub async fn run_once(
    store: &Store,
    signer: &CheckpointSigner,
    settings: CheckpointSettings,
) -> Result<usize> {
    run_once_at(store, signer, settings, now_ms()).await
}

/// [`run_once`] as if the clock read `now` (ms).
pub async fn run_once_at(
    store: &Store,
    signer: &CheckpointSigner,
    settings: CheckpointSettings,
    now: i64,
) -> Result<usize> {
    let every = settings.every.max(1);
    let mut conn = store.conn().await?;
    let (head_seq,): (i64,) = sqlx::query_as("SELECT last_seq FROM audit_chain_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    let last: Option<CheckpointRow> = sqlx::query_as(
        "SELECT seq, hash, key_id, signature, created_at FROM audit_checkpoints \
         ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    // Where verification of the next segment starts: the last checkpoint (which we
    // signed, and which the verifier checks) or the start of the chain.
    let (mut from_seq, mut from_hash) = match &last {
        Some(cp) => (cp.seq, cp.hash.clone()),
        None => (0, GENESIS_HASH.to_owned()),
    };
    let mut written = 0;
    let mut next = (from_seq / every + 1) * every;
    while next <= head_seq && written < MAX_PER_RUN {
        let Some(hash) = verified_hash(&mut conn, from_seq, &from_hash, next).await? else {
            return Ok(written);
        };
        insert(&mut conn, signer, next, &hash, now).await?;
        written += 1;
        (from_seq, from_hash) = (next, hash);
        next += every;
    }
    if written == MAX_PER_RUN || head_seq <= from_seq {
        return Ok(written);
    }
    // Entries newer than the last checkpoint: is it time to sign the head?
    let reference = match (written, &last) {
        (0, Some(cp)) => cp.created_at,
        (0, None) => {
            let first: Option<(i64,)> =
                sqlx::query_as("SELECT at_ms FROM audit_events ORDER BY seq LIMIT 1")
                    .fetch_optional(&mut *conn)
                    .await?;
            first.map(|(at,)| at).unwrap_or(now)
        }
        _ => now,
    };
    if now - reference >= settings.interval_ms {
        if let Some(hash) = verified_hash(&mut conn, from_seq, &from_hash, head_seq).await? {
            insert(&mut conn, signer, head_seq, &hash, now).await?;
            written += 1;
        }
    }
    Ok(written)
}

async fn insert(
    conn: &mut Conn,
    signer: &CheckpointSigner,
    seq: i64,
    hash: &str,
    now: i64,
) -> Result<()> {
    // Another node may have signed the same seq: theirs stands.
    sqlx::query(
        "INSERT INTO audit_checkpoints (seq, hash, key_id, signature, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
    )
    .bind(seq)
    .bind(hash)
    .bind(signer.key_id())
    .bind(signer.sign(seq, hash))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The hash of entry `to`, after checking that the entries `from+1 ..= to` chain from
/// `from_hash` gap-free and unmodified. `None` (and an error in the log) when they do
/// not: the task then signs nothing until an operator has looked.
async fn verified_hash(
    conn: &mut Conn,
    from: i64,
    from_hash: &str,
    to: i64,
) -> Result<Option<String>> {
    let mut expected_seq = from + 1;
    let mut prev = from_hash.to_owned();
    while expected_seq <= to {
        let page: Vec<EntryRow> = sqlx::query_as(&format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_events WHERE seq >= $1 AND seq <= $2 \
             ORDER BY seq LIMIT 1000"
        ))
        .bind(expected_seq)
        .bind(to)
        .fetch_all(&mut *conn)
        .await?;
        if page.is_empty() {
            break;
        }
        for row in page {
            if row.seq != expected_seq || row.prev_hash != prev || row.compute_hash() != row.hash {
                tracing::error!(
                    seq = expected_seq,
                    "audit chain does not verify: no checkpoint is signed until it is \
                     investigated (run `tsunagu-server audit verify`)"
                );
                metrics::counter!("tsunagu_audit_chain_broken_total").increment(1);
                return Ok(None);
            }
            prev = row.hash;
            expected_seq += 1;
        }
    }
    if expected_seq <= to {
        tracing::error!(
            seq = expected_seq,
            "audit chain has a gap: no checkpoint is signed until it is investigated"
        );
        metrics::counter!("tsunagu_audit_chain_broken_total").increment(1);
        return Ok(None);
    }
    Ok(Some(prev))
}

/// Checks every checkpoint below the first chain problem (all of them when the chain is
/// intact): its signature, its key, and that the entry at its seq still has the signed
/// hash. Returns how many verified and the first that did not.
pub(super) async fn verify_checkpoints(
    conn: &mut Conn,
    verifier: &CheckpointVerifier,
    chain_len: i64,
    chain_break: Option<&ChainBreak>,
) -> Result<(i64, Option<ChainBreak>)> {
    let stop_at = chain_break.map(|b| b.seq).unwrap_or(i64::MAX);
    let mut verified = 0_i64;
    let mut last_good = 0_i64;
    let mut after = i64::MIN;
    loop {
        let page: Vec<(i64, String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT c.seq, c.hash, c.key_id, c.signature, e.hash FROM audit_checkpoints c \
             LEFT JOIN audit_events e ON e.seq = c.seq WHERE c.seq > $1 ORDER BY c.seq LIMIT 1000",
        )
        .bind(after)
        .fetch_all(&mut *conn)
        .await?;
        if page.is_empty() {
            return Ok((verified, None));
        }
        for (seq, hash, key_id, signature, entry_hash) in page {
            if seq >= stop_at {
                return Ok((verified, None));
            }
            if let Err(why) = verifier.check(seq, &hash, &key_id, &signature) {
                return Ok((
                    verified,
                    Some(ChainBreak::new(seq, ProblemReason::BadCheckpoint, why)),
                ));
            }
            match entry_hash {
                None if seq > chain_len => {
                    return Ok((
                        verified,
                        Some(ChainBreak::new(
                            chain_len + 1,
                            ProblemReason::Truncated,
                            format!(
                                "a signed checkpoint vouches for seq {seq} but the chain ends \
                                 at seq {chain_len}: the entries after {chain_len} were removed"
                            ),
                        )),
                    ))
                }
                None => {
                    return Ok((
                        verified,
                        Some(ChainBreak::new(
                            seq,
                            ProblemReason::Missing,
                            format!("the entry signed at checkpoint {seq} is missing"),
                        )),
                    ))
                }
                Some(h) if h != hash => {
                    return Ok((
                        verified,
                        Some(ChainBreak::new(
                            seq,
                            ProblemReason::Modified,
                            format!(
                                "entry {seq} is not the one signed at its checkpoint: entries \
                                 {} to {seq} were rewritten with recomputed hashes",
                                last_good + 1
                            ),
                        )),
                    ))
                }
                Some(_) => {}
            }
            verified += 1;
            last_good = seq;
            after = seq;
        }
    }
}

/// Runs [`run_once`] every [`TICK`] until aborted. Errors are logged (ids only) and
/// retried on the next tick. With `key_file`, the signing key is re-read from it when it
/// changed (`keys audit-rotate` on a shared key directory), so a rotation needs no
/// restart.
pub fn spawn(
    store: Store,
    signer: Arc<CheckpointSigner>,
    settings: CheckpointSettings,
    key_file: Option<std::path::PathBuf>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut signer = signer;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(path) = &key_file {
                match CheckpointSigner::load_or_create(path, false) {
                    Ok(fresh) if fresh.key_id() != signer.key_id() => {
                        tracing::info!(key_id = %fresh.key_id(), "audit checkpoint signing key changed");
                        signer = Arc::new(fresh);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "re-reading the audit signing key failed"),
                }
            }
            match run_once(&store, &signer, settings).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(written = n, "signed audit checkpoints"),
                Err(e) => tracing::warn!(error = %e, "audit checkpoint failed"),
            }
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_seq_hash_and_key() {
        let signer = CheckpointSigner::from_key(SigningKey::generate(&mut rand::rngs::OsRng));
        let v = signer.verifier();
        let h = "ab".repeat(32);
        let sig = signer.sign(7, &h);
        assert!(v.check(7, &h, signer.key_id(), &sig).is_ok());
        assert!(v.check(8, &h, signer.key_id(), &sig).is_err());
        assert!(v.check(7, &"cd".repeat(32), signer.key_id(), &sig).is_err());
        assert!(v.check(7, &h, "0000000000000000", &sig).is_err());
        assert!(v.check(7, &h, signer.key_id(), "zz").is_err());
        let other = CheckpointSigner::from_key(SigningKey::generate(&mut rand::rngs::OsRng));
        assert!(other
            .verifier()
            .check(7, &h, signer.key_id(), &sig)
            .is_err());
    }

    #[test]
    fn after_a_rotation_checkpoints_of_the_old_and_the_new_key_both_verify() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.pem");
        let verify_dir = dir.path().join("audit-verify");
        let old = CheckpointSigner::load_or_create(&file, true).unwrap();
        let h = "ab".repeat(32);
        let old_sig = old.sign(1, &h);
        let verifier = CheckpointVerifier::load(&file, &verify_dir).unwrap();
        let (was, now) = rotate_signing_key(&file, &verify_dir).unwrap();
        assert_eq!(was, old.key_id());
        let new = CheckpointSigner::load_or_create(&file, false).unwrap();
        assert_eq!(new.key_id(), now);
        let new_sig = new.sign(2, &h);
        // The verifier loaded before the rotation learns the new key on refresh.
        assert!(verifier.check(2, &h, &now, &new_sig).is_err());
        verifier.refresh();
        assert!(
            verifier.check(1, &h, &was, &old_sig).is_ok(),
            "older checkpoints verify"
        );
        assert!(verifier.check(2, &h, &now, &new_sig).is_ok());
        assert_eq!(verifier.key_id(), now);
        // A key nobody kept is still refused.
        let stranger = CheckpointSigner::from_key(SigningKey::generate(&mut rand::rngs::OsRng));
        assert!(verifier
            .check(3, &h, stranger.key_id(), &stranger.sign(3, &h))
            .is_err());
    }

    #[test]
    fn a_key_written_to_disk_loads_back_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.pem");
        assert!(CheckpointSigner::load_or_create(&path, false).is_err());
        let a = CheckpointSigner::load_or_create(&path, true).unwrap();
        let b = CheckpointSigner::load_or_create(&path, false).unwrap();
        assert_eq!(a.key_id(), b.key_id());
        assert_eq!(a.key_id().len(), 16);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

//! Password hashing with argon2id on a small dedicated pool.
//!
//! Why a pool of its own: each argon2id hash needs 19 MiB of working memory. On tokio's
//! blocking pool every sign-in ran on whichever of up to 512 threads was free, each of
//! which kept its 19 MiB in its own malloc arena after the hash: 1,820 sign-ins left
//! 1.2 GiB resident. Here a few threads (one per core, at most [`MAX_HASHERS`]) each
//! allocate the working memory once and reuse it for every hash, so resident memory is
//! bounded by the pool's size whatever the sign-in rate, and hashing can never take
//! more cores than the pool has — sign-in storms queue instead of starving the server.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;

use super::error::{DomainError, Internal, Result};

/// Longest password accepted: bounds the hashing work an attacker can ask for.
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// Upper bound on hashing threads (and so on 19 MiB working areas).
pub const MAX_HASHERS: usize = 4;
/// Largest memory cost accepted from a stored hash (KiB): a tampered row cannot make
/// a worker allocate without bound.
const MAX_MEMORY_KIB: u32 = 256 * 1024;

/// OWASP's minimum for argon2id (19 MiB, two passes), the cost new hashes get by default.
pub const OWASP_MEMORY_KIB: u32 = 19 * 1024;
pub const OWASP_ITERATIONS: u32 = 2;

/// The cost of new hashes. Process-wide like the pool it sizes (it bounds each worker's
/// memory); set from `[auth]` at start-up by [`set_cost`]. Verification never reads it:
/// every stored hash carries its own parameters in its PHC string.
static MEMORY_KIB: AtomicU32 = AtomicU32::new(OWASP_MEMORY_KIB);
static ITERATIONS: AtomicU32 = AtomicU32::new(OWASP_ITERATIONS);

/// Refuses a cost below the OWASP minimum, except in debug builds: the test suite hashes
/// hundreds of passwords and sets a token cost, which a release build must never accept.
pub fn check_cost(memory_kib: u32, iterations: u32) -> std::result::Result<(), String> {
    Params::new(memory_kib, iterations, 1, None).map_err(|e| format!("argon2 cost: {e}"))?;
    if memory_kib > MAX_MEMORY_KIB {
        return Err(format!("argon2 memory above {MAX_MEMORY_KIB} KiB"));
    }
    if !cfg!(debug_assertions) && (memory_kib < OWASP_MEMORY_KIB || iterations < OWASP_ITERATIONS) {
        return Err(format!(
            "argon2 cost below the OWASP minimum ({OWASP_MEMORY_KIB} KiB, t={OWASP_ITERATIONS})"
        ));
    }
    Ok(())
}

/// Sets the cost of new hashes (after [`check_cost`]).
pub fn set_cost(memory_kib: u32, iterations: u32) -> std::result::Result<(), String> {
    check_cost(memory_kib, iterations)?;
    MEMORY_KIB.store(memory_kib, Ordering::Relaxed);
    ITERATIONS.store(iterations, Ordering::Relaxed);
    Ok(())
}

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The process-wide hashing pool. Process-wide on purpose: it is a bound on a machine
/// resource (cores and memory), which several servers in one test process share too.
fn pool() -> &'static std_mpsc::Sender<Job> {
    static POOL: OnceLock<std_mpsc::Sender<Job>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std_mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, MAX_HASHERS);
        for i in 0..threads {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    // Allocated on first use, then reused for every hash.
                    let mut memory: Vec<Block> = Vec::new();
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return,
                        }
                    }
                });
        }
        tx
    })
}

/// Runs `work` on the pool with the worker's reusable memory.
async fn on_pool<T: Send + 'static>(
    work: impl FnOnce(&mut Vec<Block>) -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = oneshot::channel();
    pool()
        .send(Box::new(move |memory| {
            let _ = tx.send(work(memory));
        }))
        .map_err(|_| DomainError::Internal("password hashing pool stopped".into()))?;
    rx.await
        .map_err(|_| DomainError::Internal("password hashing failed".into()))?
}

/// The raw argon2 output for `password` under `params`, using `memory`.
fn raw_hash(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &[u8],
    salt: &[u8],
    memory: &mut Vec<Block>,
) -> Result<Vec<u8>> {
    let out_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; out_len];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut out, &mut memory[..blocks])
        .map_err(|e| DomainError::Internal(Internal::caused_by("argon2", e)))?;
    Ok(out)
}

/// Hashes with argon2id at the configured cost (by default the crate's recommended
/// parameters: 19 MiB, t=2, p=1).
pub async fn hash(password: SecretString) -> Result<String> {
    let (m_cost, t_cost) = (
        MEMORY_KIB.load(Ordering::Relaxed),
        ITERATIONS.load(Ordering::Relaxed),
    );
    on_pool(move |memory| {
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_raw = salt
            .decode_b64(&mut salt_bytes)
            .map_err(|e| DomainError::Internal(Internal::caused_by("salt", e)))?;
        let params = Params::new(m_cost, t_cost, 1, None)
            .map_err(|e| DomainError::Internal(Internal::caused_by("params", e)))?;
        let raw = raw_hash(
            Algorithm::Argon2id,
            Version::V0x13,
            params.clone(),
            password.expose_secret().as_bytes(),
            salt_raw,
            memory,
        )?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: (&params)
                .try_into()
                .map_err(|e| DomainError::Internal(Internal::caused_by("params", e)))?,
            salt: Some(salt.as_salt()),
            hash: Some(
                Output::new(&raw)
                    .map_err(|e| DomainError::Internal(Internal::caused_by("output", e)))?,
            ),
        };
        Ok(phc.to_string())
    })
    .await
}

/// Verifies `password` against a PHC string. A malformed stored hash counts as a
/// mismatch (and is logged), never as a match.
pub async fn verify(password: SecretString, phc: String) -> Result<bool> {
    on_pool(move |memory| {
        let Some((algorithm, version, params, salt, expected)) = parse(&phc) else {
            tracing::error!("stored password hash is malformed");
            return Ok(false);
        };
        let raw = raw_hash(
            algorithm,
            version,
            params,
            password.expose_secret().as_bytes(),
            &salt,
            memory,
        )?;
        // `Output`'s equality is constant-time.
        Ok(Output::new(&raw).is_ok_and(|out| out == expected))
    })
    .await
}

/// Algorithm, version, parameters, salt and hash of a stored PHC string.
fn parse(phc: &str) -> Option<(Algorithm, Version, Params, Vec<u8>, Output)> {
    let parsed = PasswordHash::new(phc).ok()?;
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .ok()?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).ok()?;
    if params.m_cost() > MAX_MEMORY_KIB {
        return None;
    }
    let mut salt = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt).ok()?.to_vec();
    let expected = parsed.hash?;
    Some((algorithm, version, params, salt, expected))
}

/// The region's rules for a new password.
pub fn check_policy(password: &str, min_chars: usize, login: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < min_chars {
        return Err(DomainError::WeakPassword(format!(
            "the password must have at least {min_chars} characters"
        )));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(DomainError::WeakPassword(format!(
            "the password must have at most {MAX_PASSWORD_CHARS} characters"
        )));
    }
    if password.eq_ignore_ascii_case(login) {
        return Err(DomainError::WeakPassword(
            "the password must not be the login id".into(),
        ));
    }
    Ok(())
}

/// A one-time password for bootstrap and resets: 20 characters from an alphabet without
/// look-alikes (about 115 bits).
pub fn generate_one_time() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_nothing_else() {
        let phc = hash(SecretString::from("correct horse battery"))
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(
            verify(SecretString::from("correct horse battery"), phc.clone())
                .await
                .unwrap()
        );
        assert!(!verify(SecretString::from("correct horse batterY"), phc)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn hashes_interoperate_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Ours verifies with the crate's verifier...
        let phc = hash(SecretString::from("ながいパスワード")).await.unwrap();
        let parsed = PasswordHash::new(&phc).unwrap();
        assert!(Argon2::default()
            .verify_password("ながいパスワード".as_bytes(), &parsed)
            .is_ok());
        // ...and the crate's (as stored before this pool existed) verifies with ours.
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"older hash", &salt)
            .unwrap()
            .to_string();
        assert!(verify(SecretString::from("older hash"), theirs.clone())
            .await
            .unwrap());
        assert!(!verify(SecretString::from("older hasH"), theirs)
            .await
            .unwrap());
    }

    #[test]
    fn a_cost_below_the_owasp_minimum_is_accepted_only_in_debug_builds() {
        assert!(check_cost(OWASP_MEMORY_KIB, OWASP_ITERATIONS).is_ok());
        assert_eq!(check_cost(64, 1).is_ok(), cfg!(debug_assertions));
        assert_eq!(
            check_cost(OWASP_MEMORY_KIB, 1).is_ok(),
            cfg!(debug_assertions)
        );
        assert!(check_cost(4, 1).is_err(), "below argon2's own minimum");
        assert!(check_cost(MAX_MEMORY_KIB + 1, 2).is_err());
    }

    #[tokio::test]
    async fn a_hash_keeps_its_cost_so_it_verifies_after_the_cost_changes() {
        // Other tests in this binary hash meanwhile; any cost is correct for them.
        set_cost(64, 1).unwrap();
        let cheap = hash(SecretString::from("ながいパスワード")).await;
        set_cost(OWASP_MEMORY_KIB, OWASP_ITERATIONS).unwrap();
        let cheap = cheap.unwrap();
        assert!(cheap.contains("$m=64,t=1,p=1$"), "{cheap}");
        assert!(verify(SecretString::from("ながいパスワード"), cheap)
            .await
            .unwrap());
        let full = hash(SecretString::from("ながいパスワード")).await.unwrap();
        assert!(full.contains("$m=19456,t=2,p=1$"), "{full}");
    }

    #[tokio::test]
    async fn a_stored_hash_asking_for_huge_memory_is_refused() {
        let phc = "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$\
                   AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(!verify(SecretString::from("x"), phc.into()).await.unwrap());
    }

    #[tokio::test]
    async fn a_malformed_stored_hash_never_matches() {
        assert!(!verify(SecretString::from("x"), "not-a-hash".into())
            .await
            .unwrap());
    }

    #[test]
    fn policy_counts_characters_not_bytes() {
        assert!(check_policy("ながいパスワードです。", 10, "nurse").is_ok());
        assert!(check_policy("短い", 10, "nurse").is_err());
        assert!(check_policy("Nurse.Sato", 4, "nurse.sato").is_err());
    }

    #[test]
    fn one_time_passwords_differ() {
        assert_ne!(generate_one_time(), generate_one_time());
        assert_eq!(generate_one_time().len(), 20);
    }
}

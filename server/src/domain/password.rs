//! Password hashing with argon2id. Hashing is deliberately slow, so it runs on the
//! blocking pool, never on the async workers.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use secrecy::{ExposeSecret, SecretString};

use super::error::{DomainError, Result};

/// Longest password accepted: bounds the hashing work an attacker can ask for.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Hashes with argon2id and the crate's recommended parameters (19 MiB, t=2, p=1).
pub async fn hash(password: SecretString) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| DomainError::Internal(format!("argon2: {e}")))
    })
    .await?
}

/// Verifies `password` against a PHC string. A malformed stored hash counts as a
/// mismatch (and is logged), never as a match.
pub async fn verify(password: SecretString, phc: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = match PasswordHash::new(&phc) {
            Ok(p) => p,
            Err(_) => {
                tracing::error!("stored password hash is malformed");
                return Ok(false);
            }
        };
        Ok(Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok())
    })
    .await?
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

//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s) with a one-step window either side and
//! replay protection: the caller records the matched step and refuses it next time.

use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};

use super::error::{DomainError, Internal, Result};

const STEP_SECS: u64 = 30;

/// A fresh 160-bit secret, base32.
pub fn new_secret() -> String {
    Secret::generate_secret().to_encoded().to_string()
}

/// The generator for `secret_b32`, labelled for authenticator apps.
pub fn generator(secret_b32: &str, issuer: &str, account: &str) -> Result<TOTP> {
    let bytes = Secret::Encoded(secret_b32.to_owned())
        .to_bytes()
        .map_err(|_| DomainError::Internal("stored TOTP secret is malformed".into()))?;
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        STEP_SECS,
        bytes,
        Some(issuer.to_owned()),
        account.to_owned(),
    )
    .map_err(|e| DomainError::Internal(Internal::caused_by("totp", e)))
}

/// The time step whose code equals `code`, looking one step back and one ahead.
pub fn matching_step(totp: &TOTP, code: &str, now_secs: u64) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = now_secs / STEP_SECS;
    [current.saturating_sub(1), current, current + 1]
        .into_iter()
        .find(|step| {
            let expected = totp.generate(step * STEP_SECS);
            bool::from(expected.as_bytes().ct_eq(code.as_bytes()))
        })
        .map(|step| step as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_code_matches_and_a_stale_one_does_not() {
        let secret = new_secret();
        let t = generator(&secret, "Tsunagu", "nurse").unwrap();
        let now = 1_800_000_000;
        let code = t.generate(now);
        assert_eq!(matching_step(&t, &code, now), Some((now / 30) as i64));
        let old = t.generate(now - 300);
        assert_eq!(matching_step(&t, &old, now), None);
        assert_eq!(matching_step(&t, "12345", now), None);
        assert!(t.get_url().starts_with("otpauth://totp/"));
    }
}

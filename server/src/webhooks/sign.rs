//! Standard Webhooks signing: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`,
//! the key being the bytes after `whsec_` in the secret the admin was shown.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tsunagu_protocol::webhooks::WEBHOOK_SECRET_PREFIX;
use zeroize::Zeroizing;

/// Bytes of a signing key (Standard Webhooks allows 24 to 64).
pub const KEY_BYTES: usize = 32;

/// A fresh random signing key.
pub fn new_key() -> Zeroizing<[u8; KEY_BYTES]> {
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    key
}

/// The key as the admin is shown it once: `whsec_<base64>`.
pub fn secret_text(key: &[u8]) -> String {
    format!("{WEBHOOK_SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The `webhook-signature` header value for one attempt.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (and of Svix's libraries).
    #[test]
    fn the_signature_matches_the_specifications_example() {
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_secret_is_whsec_and_the_base64_of_its_key() {
        let key = new_key();
        let text = secret_text(key.as_ref());
        let b64 = text.strip_prefix("whsec_").unwrap();
        assert_eq!(STANDARD.decode(b64).unwrap(), key.as_ref());
    }
}

//! Segmented authenticated encryption of one file (the STREAM construction).
//!
//! The plaintext is cut into fixed-size segments; each is sealed with AES-256-GCM under
//! the file's own random data key. The nonce is the file's random 7-byte prefix, the
//! segment index (32-bit big endian) and a last-segment flag; the associated data binds
//! the file id and the segment index. So a flipped bit, a truncated blob, a dropped
//! last segment, reordered segments or a blob swapped in from another file all fail
//! authentication — decryption never yields wrong bytes.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

/// Plaintext bytes per segment.
pub const SEGMENT_SIZE: u64 = 64 * 1024;
/// AES-GCM tag bytes added to every segment.
pub const TAG_SIZE: u64 = 16;
const AAD_DOMAIN: &[u8] = b"tsunagu-blob-v1";

/// Authentication failed: the stored bytes are not what was written for this file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("integrity check failed at segment {segment}")]
pub struct IntegrityError {
    pub segment: u64,
}

/// The key material of one file. The data key is zeroed on drop.
pub struct FileKey {
    key: Zeroizing<[u8; 32]>,
    prefix: [u8; 7],
    file_id: [u8; 16],
}

impl FileKey {
    /// A fresh random data key and nonce prefix for a new file.
    pub fn generate(file_id: uuid::Uuid) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        let mut prefix = [0u8; 7];
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        rand::rngs::OsRng.fill_bytes(&mut prefix);
        FileKey {
            key,
            prefix,
            file_id: *file_id.as_bytes(),
        }
    }

    pub fn from_parts(key: Zeroizing<[u8; 32]>, prefix: [u8; 7], file_id: uuid::Uuid) -> Self {
        FileKey {
            key,
            prefix,
            file_id: *file_id.as_bytes(),
        }
    }

    pub fn data_key(&self) -> &[u8; 32] {
        &self.key
    }

    pub fn prefix(&self) -> [u8; 7] {
        self.prefix
    }

    fn nonce(&self, index: u64, last: bool) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..7].copy_from_slice(&self.prefix);
        // Files are limited far below 2^32 segments (256 TiB); the index is checked.
        n[7..11].copy_from_slice(&(index as u32).to_be_bytes());
        n[11] = u8::from(last);
        n
    }

    fn aad(&self, index: u64) -> Vec<u8> {
        let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + 16 + 8);
        aad.extend_from_slice(AAD_DOMAIN);
        aad.extend_from_slice(&self.file_id);
        aad.extend_from_slice(&index.to_be_bytes());
        aad
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.as_ref().into())
    }

    /// Seals segment `index`; `last` marks the final segment of the file.
    pub fn seal(&self, index: u64, last: bool, plain: &[u8]) -> Vec<u8> {
        assert!(
            index <= u64::from(u32::MAX),
            "file too large for the segment counter"
        );
        let nonce = self.nonce(index, last);
        let aad = self.aad(index);
        self.cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of a bounded segment cannot fail")
    }

    /// Opens segment `index`, or fails if anything about it is not as sealed.
    pub fn open(&self, index: u64, last: bool, sealed: &[u8]) -> Result<Vec<u8>, IntegrityError> {
        if index > u64::from(u32::MAX) {
            return Err(IntegrityError { segment: index });
        }
        let nonce = self.nonce(index, last);
        let aad = self.aad(index);
        self.cipher()
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| IntegrityError { segment: index })
    }
}

/// Segments in a file of `size` plaintext bytes (an empty file has one, empty, segment).
pub fn segment_count(size: u64) -> u64 {
    if size == 0 {
        1
    } else {
        size.div_ceil(SEGMENT_SIZE)
    }
}

/// Bytes the sealed blob of a `size`-byte file occupies.
pub fn sealed_size(size: u64) -> u64 {
    size + TAG_SIZE * segment_count(size)
}

/// Plaintext bytes in segment `index` of a `size`-byte file.
pub fn plain_len(size: u64, index: u64) -> u64 {
    let start = index * SEGMENT_SIZE;
    size.saturating_sub(start).min(SEGMENT_SIZE)
}

/// Where segment `index` lies in the blob: (offset, sealed length).
pub fn sealed_span(size: u64, index: u64) -> (u64, u64) {
    (
        index * (SEGMENT_SIZE + TAG_SIZE),
        plain_len(size, index) + TAG_SIZE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FileKey {
        FileKey::generate(uuid::Uuid::new_v4())
    }

    #[test]
    fn a_sealed_segment_opens_only_at_its_index_flag_and_file() {
        let k = key();
        let sealed = k.seal(3, false, b"vital signs stable");
        assert_eq!(k.open(3, false, &sealed).unwrap(), b"vital signs stable");
        assert!(k.open(4, false, &sealed).is_err(), "reordered");
        assert!(k.open(3, true, &sealed).is_err(), "final flag differs");
        let other = FileKey::from_parts(
            Zeroizing::new(*k.data_key()),
            k.prefix(),
            uuid::Uuid::new_v4(),
        );
        assert!(
            other.open(3, false, &sealed).is_err(),
            "swapped between files"
        );
        let mut flipped = sealed.clone();
        flipped[5] ^= 1;
        assert!(k.open(3, false, &flipped).is_err(), "bit flip");
        assert!(
            k.open(3, false, &sealed[..sealed.len() - 1]).is_err(),
            "truncated"
        );
    }

    #[test]
    fn sizes_and_spans_add_up() {
        assert_eq!(segment_count(0), 1);
        assert_eq!(segment_count(1), 1);
        assert_eq!(segment_count(SEGMENT_SIZE), 1);
        assert_eq!(segment_count(SEGMENT_SIZE + 1), 2);
        assert_eq!(sealed_size(0), TAG_SIZE);
        assert_eq!(
            sealed_size(SEGMENT_SIZE + 1),
            SEGMENT_SIZE + 1 + 2 * TAG_SIZE
        );
        assert_eq!(plain_len(SEGMENT_SIZE + 1, 1), 1);
        assert_eq!(
            sealed_span(SEGMENT_SIZE + 1, 1),
            (SEGMENT_SIZE + TAG_SIZE, 1 + TAG_SIZE)
        );
    }
}

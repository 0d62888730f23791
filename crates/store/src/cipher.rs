//! Encryption at rest for BMC passwords: ChaCha20-Poly1305 under a key
//! derived with HKDF-SHA256 from the configured secret.
//!
//! Sealed layout: `1 | key id (4) | nonce (12) | ciphertext + tag`.
//! The key id lets a wrong key be told apart from a corrupted value.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;
const SALT: &[u8] = b"bootloader/bmc-secrets/v1";
const HEADER: usize = 1 + 4 + 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value was encrypted with another secret key")]
    WrongKey,
    #[error("sealed value failed authentication (corrupted)")]
    Corrupted,
    #[error("no randomness available: {0}")]
    Random(String),
}

pub struct SecretCipher {
    aead: ChaCha20Poly1305,
    key_id: [u8; 4],
}

impl std::fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretCipher(key id {})", hex::encode(self.key_id))
    }
}

impl SecretCipher {
    pub fn from_passphrase(passphrase: &str) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(SALT), passphrase.as_bytes());
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
        let _ = hk.expand(b"chacha20poly1305 key", &mut key);
        let digest = Sha256::digest(key);
        let key_id = [digest[0], digest[1], digest[2], digest[3]];
        Self {
            aead: ChaCha20Poly1305::new(Key::from_slice(&key)),
            key_id,
        }
    }

    pub fn seal(&self, plaintext: &str) -> Result<Vec<u8>, CipherError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| CipherError::Random(e.to_string()))?;
        let ciphertext = self
            .aead
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .map_err(|_| CipherError::Malformed)?;
        let mut out = Vec::with_capacity(HEADER + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<String, CipherError> {
        if sealed.len() < HEADER + 16 || sealed[0] != VERSION {
            return Err(CipherError::Malformed);
        }
        if sealed[1..5] != self.key_id {
            return Err(CipherError::WrongKey);
        }
        let plain = self
            .aead
            .decrypt(Nonce::from_slice(&sealed[5..HEADER]), &sealed[HEADER..])
            .map_err(|_| CipherError::Corrupted)?;
        String::from_utf8(plain).map_err(|_| CipherError::Corrupted)
    }
}

/// A new random passphrase (for a generated key file).
pub fn random_passphrase() -> Result<String, CipherError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| CipherError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let a = SecretCipher::from_passphrase("correct horse battery staple");
        let b = SecretCipher::from_passphrase("another passphrase entirely");
        let sealed = a.seal("calvin").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"calvin"));
        assert_eq!(a.open(&sealed).unwrap(), "calvin");
        assert_eq!(b.open(&sealed), Err(CipherError::WrongKey));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(a.open(&tampered), Err(CipherError::Corrupted));
        assert_eq!(a.open(&sealed[..10]), Err(CipherError::Malformed));
        assert_ne!(a.seal("calvin").unwrap(), sealed, "nonces differ");
    }
}

/// The secret check value (`settings`) this daemon's key was last seen to
/// open, as stored (hex). A start group that knows it writes only while
/// the row still holds it (`starts.rs`), under the same shared row lock
/// an explicit check takes, and so needs no statement of its own for the
/// check; a group that finds it changed starts again with the check.
#[derive(Default)]
pub(crate) struct VerifiedCheck(std::sync::Mutex<Option<String>>);

impl VerifiedCheck {
    pub(crate) fn get(&self) -> Option<String> {
        self.lock().clone()
    }

    pub(crate) fn set(&self, value: Option<String>) {
        *self.lock() = value;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

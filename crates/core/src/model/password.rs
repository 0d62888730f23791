//! Users' passwords: what a new one must be, and its argon2id hash (a PHC
//! string with its own salt and cost), the form this daemon stores. Hashes
//! brought over from the older system are Django's
//! (`pbkdf2_sha256$<iterations>$<salt>$<base64>`): they are checked as
//! Django checked them and replaced by argon2id at the first sign-in.

use std::fmt;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, PasswordHash as Phc};

/// The fewest characters a new password may have.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// The most bytes a password may have (argon2 takes more, but nobody types
/// more and a huge one costs hashing time).
pub const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("must have at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("must have at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("must not begin or end with white space (a pasted line break?)")]
    Padded,
    #[error("cannot hash it: {0}")]
    Hash(String),
    #[error("the stored password hash does not parse: {0}")]
    Stored(String),
}

/// A password as a user gave it, checked for what a new one must be.
pub struct NewPassword(String);

impl NewPassword {
    pub fn new(text: &str) -> Result<Self, PasswordError> {
        if text.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::TooLong);
        }
        if text.chars().count() < MIN_PASSWORD_CHARS {
            return Err(PasswordError::TooShort);
        }
        if text.trim() != text {
            return Err(PasswordError::Padded);
        }
        Ok(Self(text.to_string()))
    }

    /// Its argon2id hash under a fresh random salt (argon2's default cost:
    /// 19 MiB, two passes, one lane).
    pub fn hash(&self) -> Result<PasswordHash, PasswordError> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
        let phc = Argon2::default()
            .hash_password(self.0.as_bytes(), &salt)
            .map_err(|e| PasswordError::Hash(e.to_string()))?;
        Ok(PasswordHash(phc.to_string()))
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

/// A stored password: an argon2id PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), or a Django hash
/// brought over from the older system.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

/// The most PBKDF2 iterations an older hash may ask for: Django used
/// 36,000 (1.11) to 1,000,000 (5.x); more is a hostile row, not a user.
const MAX_DJANGO_ITERATIONS: u32 = 2_000_000;

/// A Django `pbkdf2_sha256` hash, read.
struct Django<'a> {
    iterations: u32,
    salt: &'a str,
    hash: Vec<u8>,
}

impl<'a> Django<'a> {
    fn parse(text: &'a str) -> Result<Self, String> {
        let mut parts = text.split('$');
        let (Some("pbkdf2_sha256"), Some(iterations), Some(salt), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err("not a Django pbkdf2_sha256 hash".into());
        };
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| format!("iterations {iterations:?} is not a number"))?;
        if iterations == 0 || iterations > MAX_DJANGO_ITERATIONS {
            return Err(format!(
                "{iterations} iterations (expected 1 to {MAX_DJANGO_ITERATIONS})"
            ));
        }
        use base64::Engine as _;
        let hash = base64::engine::general_purpose::STANDARD
            .decode(hash)
            .map_err(|_| "the hash is not base64".to_string())?;
        if hash.len() != 32 || salt.is_empty() {
            return Err("a 32-byte hash and a salt are expected".into());
        }
        Ok(Self {
            iterations,
            salt,
            hash,
        })
    }

    fn verify(&self, presented: &str) -> bool {
        let derived = pbkdf2_sha256(presented.as_bytes(), self.salt.as_bytes(), self.iterations);
        // Constant time: every byte is compared whatever the first differing one.
        derived
            .iter()
            .zip(&self.hash)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// PBKDF2 (RFC 8018) with HMAC-SHA256, one 32-byte block: what Django's
/// `pbkdf2_sha256` hasher stores.
fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    type HmacSha256 = Hmac<sha2::Sha256>;
    let Ok(key) = HmacSha256::new_from_slice(password) else {
        // HMAC takes a key of any length; unreachable.
        return [0; 32];
    };
    let mut first = key.clone();
    first.update(salt);
    first.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = first.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        let mut next = key.clone();
        next.update(&u);
        u = next.finalize().into_bytes().into();
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

impl PasswordHash {
    /// A hash read back from the store (argon2id, or a Django hash
    /// brought over from the older system).
    pub fn from_stored(text: &str) -> Result<Self, PasswordError> {
        if text.starts_with("pbkdf2_") {
            Django::parse(text).map_err(PasswordError::Stored)?;
        } else {
            Phc::new(text).map_err(|e| PasswordError::Stored(e.to_string()))?;
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the older system's hash, to be replaced by
    /// argon2id once the password is known.
    pub fn is_older(&self) -> bool {
        self.0.starts_with("pbkdf2_")
    }

    /// The argon2id hash of a password that was just verified against an
    /// older hash: the new password rules do not apply to it (the user
    /// chose it under the older system's).
    pub fn rehash(presented: &str) -> Result<Self, PasswordError> {
        NewPassword(presented.to_string()).hash()
    }

    /// Whether `presented` is the password (in constant time).
    pub fn verify(&self, presented: &str) -> bool {
        if presented.len() > MAX_PASSWORD_BYTES {
            return false;
        }
        if self.is_older() {
            return Django::parse(&self.0).is_ok_and(|d| d.verify(presented));
        }
        let Ok(phc) = Phc::new(&self.0) else {
            return false;
        };
        Argon2::default()
            .verify_password(presented.as_bytes(), &phc)
            .is_ok()
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_password_is_checked() {
        let table: [(&str, Option<PasswordError>); 5] = [
            ("correct horse", None),
            ("short", Some(PasswordError::TooShort)),
            // Characters, not bytes: ten letters of any script.
            ("пароль-паро", None),
            (" leading-space", Some(PasswordError::Padded)),
            ("trailing-newline\n", Some(PasswordError::Padded)),
        ];
        for (text, expected) in table {
            assert_eq!(NewPassword::new(text).err(), expected, "{text:?}");
        }
        assert_eq!(
            NewPassword::new(&"x".repeat(MAX_PASSWORD_BYTES + 1)).err(),
            Some(PasswordError::TooLong)
        );
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = NewPassword::new("correct horse battery")
            .unwrap()
            .hash()
            .unwrap();
        assert!(
            hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            hash.as_str()
        );
        assert!(hash.verify("correct horse battery"));
        assert!(!hash.verify("correct horse batter"));
        assert!(!hash.verify(""));
        // A new salt each time.
        let again = NewPassword::new("correct horse battery")
            .unwrap()
            .hash()
            .unwrap();
        assert_ne!(hash, again);
        assert!(again.verify("correct horse battery"));
        // Read back from the store.
        let stored = PasswordHash::from_stored(hash.as_str()).unwrap();
        assert!(stored.verify("correct horse battery"));
        assert!(PasswordHash::from_stored("plaintext").is_err());
        assert_eq!(format!("{hash:?}"), "PasswordHash(<redacted>)");
        assert!(!hash.is_older());
    }

    /// Django's hashes, as Python's hashlib.pbkdf2_hmac (which Django
    /// calls) computes them.
    #[test]
    fn the_older_systems_hashes_verify() {
        let table = [
            (
                "pbkdf2_sha256$36000$Ki8y3sOqLQzV$51JrSW1suMqiuhfuJbaoIqk1sykZ1WxPCSzG1RyESLs=",
                "old-password",
            ),
            (
                "pbkdf2_sha256$1000$abc$zj+XeKwrfBF81lpExtmxN3WeVuK9IKqGlJUpGKz7iNA=",
                "short",
            ),
        ];
        for (stored, password) in table {
            let hash = PasswordHash::from_stored(stored).unwrap();
            assert!(hash.is_older());
            assert!(hash.verify(password), "{stored}");
            assert!(!hash.verify("wrong"), "{stored}");
            // Replaced by argon2id, even when shorter than the rules ask.
            let new = PasswordHash::rehash(password).unwrap();
            assert!(!new.is_older() && new.verify(password));
        }
        for hostile in [
            "pbkdf2_sha256$999999999$salt$51JrSW1suMqiuhfuJbaoIqk1sykZ1WxPCSzG1RyESLs=",
            "pbkdf2_sha256$0$salt$51JrSW1suMqiuhfuJbaoIqk1sykZ1WxPCSzG1RyESLs=",
            "pbkdf2_sha256$36000$salt$not-base64!",
            "pbkdf2_sha256$36000$salt$c2hvcnQ=",
            "pbkdf2_sha256$36000$$51JrSW1suMqiuhfuJbaoIqk1sykZ1WxPCSzG1RyESLs=",
            "pbkdf2_sha1$36000$salt$51JrSW1suMqiuhfuJbaoIqk1sykZ1WxPCSzG1RyESLs=",
            "pbkdf2_sha256$36000$salt",
        ] {
            assert!(PasswordHash::from_stored(hostile).is_err(), "{hostile}");
        }
    }
}

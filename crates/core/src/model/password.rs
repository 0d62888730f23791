//! Users' passwords: what a new one must be, and its argon2id hash (a PHC
//! string with its own salt and cost), the only form that is stored.

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
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// A hash read back from the store.
    pub fn from_stored(text: &str) -> Result<Self, PasswordError> {
        Phc::new(text).map_err(|e| PasswordError::Stored(e.to_string()))?;
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is the password (in constant time, as argon2
    /// compares).
    pub fn verify(&self, presented: &str) -> bool {
        let Ok(phc) = Phc::new(&self.0) else {
            return false;
        };
        presented.len() <= MAX_PASSWORD_BYTES
            && Argon2::default()
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
    }
}

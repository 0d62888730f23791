//! API tokens: a random secret shown once, stored only as its SHA-256.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The clear-text token handed to a user once. 32 random bytes, hex-encoded
/// behind a `bl_` prefix so that a leaked token is easy to grep for.
pub struct ApiTokenSecret(String);

impl ApiTokenSecret {
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Self(format!("bl_{}", hex::encode(bytes))))
    }

    /// Wraps a token as presented by a client.
    pub fn from_presented(s: &str) -> Self {
        Self(s.trim().to_string())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }

    /// The first characters, kept in clear to tell tokens apart in listings.
    pub fn prefix(&self) -> String {
        self.0.chars().take(10).collect()
    }
}

impl fmt::Debug for ApiTokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiTokenSecret(<redacted>)")
    }
}

/// The secret in a deployment's callback URLs: 32 random bytes, hex. Its
/// hash is stored for lookups, and the token itself only sealed (like BMC
/// passwords), so that templates can render it again after a restart.
pub struct CallbackToken(String);

impl CallbackToken {
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Self(hex::encode(bytes)))
    }

    /// Wraps a token as presented in a URL.
    pub fn from_presented(s: &str) -> Self {
        Self(s.to_string())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

impl fmt::Debug for CallbackToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallbackToken(<redacted>)")
    }
}

/// A web console session's secret, held only by the browser in its
/// cookie: 32 random bytes, hex. The daemon stores its hash; the form
/// token that guards the session's changes (CSRF) is derived from it, so
/// only the browser holding the cookie can know it.
pub struct SessionSecret(String);

impl SessionSecret {
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Self(hex::encode(bytes)))
    }

    /// Wraps a secret as presented in a cookie.
    pub fn from_presented(s: &str) -> Self {
        Self(s.trim().to_string())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }

    /// The form token of this session: what every state-changing form and
    /// request of the console must carry back.
    pub fn form_token(&self) -> String {
        let mut digest = Sha256::new();
        digest.update(b"bootloader console form token\0");
        digest.update(self.0.as_bytes());
        hex::encode(digest.finalize())
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(<redacted>)")
    }
}

/// The stored form of a token: hex SHA-256. Tokens carry 256 bits of
/// entropy, so a fast hash is enough; lookups go by this value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(pub String);

/// What a token may do. `write` also needs a staff user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    Read,
    Write,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

impl FromStr for TokenScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            other => Err(format!("unknown scope {other:?} (expected read or write)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let a = ApiTokenSecret::generate().unwrap();
        let b = ApiTokenSecret::generate().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 3 + 64);
        assert_eq!(a.hash(), ApiTokenSecret::from_presented(a.expose()).hash());
        assert_ne!(a.hash(), b.hash());
        assert!(!format!("{a:?}").contains(&a.expose()[3..]));
    }
}

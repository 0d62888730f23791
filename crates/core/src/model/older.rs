//! Secrets as the older system (bootloader-web) stored them, opened for
//! the import: its credentials were AES-256-CBC under a key derived with
//! PBKDF2-HMAC-SHA1 from its `SECRET_KEY` (the row's salt, in practice
//! empty, and the row's iteration count, 10,000 to 19,999), the IV first,
//! PKCS#7 padding, base64.

use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
use base64::Engine as _;
use hmac::{Hmac, Mac};

use super::Secret;

/// The iteration counts an older row may hold (it chose 10,000 to 19,999);
/// anything far outside is a hostile row, not a credential.
const ITERATIONS: std::ops::RangeInclusive<u32> = 1..=1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OlderSecretError {
    #[error("{0} iterations is not what the older system wrote (1 to 1,000,000)")]
    Iterations(u32),
    #[error("the stored value is not base64")]
    NotBase64,
    #[error("the stored value is too short to hold an IV and a block")]
    TooShort,
    /// The usual cause: another `SECRET_KEY` than the one it was sealed
    /// under.
    #[error("it does not open under this SECRET_KEY (wrong key, or a damaged value)")]
    WrongKey,
}

/// PBKDF2 (RFC 8018) with HMAC-SHA1, the 32-byte key the older system
/// derived (two SHA-1 blocks).
fn derive_key(secret_key: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    type HmacSha1 = Hmac<sha1::Sha1>;
    let Ok(prf) = HmacSha1::new_from_slice(secret_key.as_bytes()) else {
        // HMAC takes a key of any length; unreachable.
        return [0; 32];
    };
    let mut key = [0u8; 32];
    for (index, chunk) in key.chunks_mut(20).enumerate() {
        let mut first = prf.clone();
        first.update(salt);
        first.update(&(index as u32 + 1).to_be_bytes());
        let mut u: [u8; 20] = first.finalize().into_bytes().into();
        let mut block = u;
        for _ in 1..iterations {
            let mut next = prf.clone();
            next.update(&u);
            u = next.finalize().into_bytes().into();
            for (b, x) in block.iter_mut().zip(u) {
                *b ^= x;
            }
        }
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
    key
}

/// The clear text of a credential the older system stored as `data`,
/// with its row's `salt` (base64, usually empty) and `iterations`.
pub fn open_credential(
    secret_key: &str,
    salt: &str,
    iterations: u32,
    data: &str,
) -> Result<Secret, OlderSecretError> {
    if !ITERATIONS.contains(&iterations) {
        return Err(OlderSecretError::Iterations(iterations));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = b64
        .decode(salt.trim())
        .map_err(|_| OlderSecretError::NotBase64)?;
    let blob = b64
        .decode(data.trim())
        .map_err(|_| OlderSecretError::NotBase64)?;
    if blob.len() < 32 || blob.len() % 16 != 0 {
        return Err(OlderSecretError::TooShort);
    }
    let (iv, sealed) = blob.split_at(16);
    let key = derive_key(secret_key, &salt, iterations);
    let clear = cbc::Decryptor::<aes::Aes256>::new(&key.into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(sealed)
        .map_err(|_| OlderSecretError::WrongKey)?;
    String::from_utf8(clear)
        .map(Secret::new)
        .map_err(|_| OlderSecretError::WrongKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sealed with OpenSSL (`openssl enc -aes-256-cbc -K <key> -iv <iv>`)
    /// under keys from Python's `hashlib.pbkdf2_hmac('sha1', ...)`: the
    /// older scheme, by two implementations that are not ours.
    #[test]
    fn older_credentials_open() {
        let table = [
            (
                "secret",
                13579,
                "AAECAwQFBgcICQoLDA0ODz6KMLTHrm5xIVFTptSwnWQ=",
                "ADMIN",
            ),
            (
                "secret",
                10000,
                "paWlpaWlpaWlpaWlpaWlpc/yhF+Ep2WZTB32cTvVsgPSu3ctgLPd9Kk5xiCB++FenLvFoxoYaKNt1cwdRHbdyg==",
                "s3cr\u{e9}t-password-longer-than-a-block",
            ),
            (
                "another-key",
                19999,
                "EBESExQVFhcYGRobHB0eH7o4sFbaEGxqg3tQFZYLR7w=",
                "x",
            ),
        ];
        for (key, iterations, data, clear) in table {
            let opened = open_credential(key, "", iterations, data).unwrap();
            assert_eq!(opened.expose(), clear);
        }
    }

    #[test]
    fn hostile_and_foreign_rows_are_refused() {
        let data = "AAECAwQFBgcICQoLDA0ODz6KMLTHrm5xIVFTptSwnWQ=";
        assert_eq!(
            open_credential("not-the-key", "", 13579, data),
            Err(OlderSecretError::WrongKey)
        );
        assert_eq!(
            open_credential("secret", "", 4_000_000_000, data),
            Err(OlderSecretError::Iterations(4_000_000_000))
        );
        assert_eq!(
            open_credential("secret", "", 13579, "!!"),
            Err(OlderSecretError::NotBase64)
        );
        assert_eq!(
            open_credential("secret", "", 13579, "AAECAwQFBgcICQoLDA0ODw=="),
            Err(OlderSecretError::TooShort)
        );
    }
}

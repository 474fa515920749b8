//! Randomness, hashing and the encryption keyring.

pub mod envelope;
pub mod keyring;
pub mod strength;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use envelope::{Binding, EnvelopeError};
pub use keyring::{EncryptionKey, Keyring, KeyringError, KeyringHandle};

/// Bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS generator failing is not recoverable: serving without randomness is worse.
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    bytes
}

/// A bearer secret: `prefix` followed by 256 random bits, base64url-encoded.
pub fn random_token(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// SHA-256 as lowercase hex. Tokens hashed with it carry 256 random bits, so a fast hash
/// is the right tool (no password-style stretching is needed).
pub fn sha256_hex(input: &[u8]) -> String {
    hex(&Sha256::digest(input))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// Equality in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A value that must not be printed or serialized by accident: `Debug` is redacted and
/// there is no `Serialize`; [`Sensitive::expose`] is the one way in.
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_the_prefix_and_256_bits() {
        let token = random_token("lk_master_");
        let body = token.strip_prefix("lk_master_").unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert_ne!(token, random_token("lk_master_"));
    }

    #[test]
    fn sha256_hex_matches_a_known_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}

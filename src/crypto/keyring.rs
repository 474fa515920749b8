//! Encryption keys. A keyring holds one active key (sealing) and any number of retired
//! keys (opening only). Keys are 32 random bytes, written as base64; a key's id and its
//! fingerprint are derived from it with HMAC, so the database can recognise a key
//! without ever holding it.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

pub const KEY_LEN: usize = 32;

pub struct EncryptionKey {
    id: String,
    fingerprint: String,
    bytes: SecretBox<[u8; KEY_LEN]>,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey").field("id", &self.id).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("no encryption key was given")]
    Empty,
    #[error("key {position} is not valid base64")]
    NotBase64 { position: usize },
    #[error(
        "key {position} is {len} bytes long; a key is exactly {KEY_LEN} random bytes (e.g. `openssl rand -base64 32`)"
    )]
    WrongLength { position: usize, len: usize },
    #[error(
        "key {position} is not random bytes (printable text, a repeated pattern, a sequence or few distinct bytes); \
         generate a random one (e.g. `openssl rand -base64 32`)"
    )]
    Weak { position: usize },
    #[error("key {position} is listed twice")]
    Duplicate { position: usize },
}

fn hmac(key: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

impl EncryptionKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let fingerprint = super::hex(&hmac(&bytes, b"latchkey/key-fingerprint/v1"));
        let id = fingerprint[..16].to_owned();
        Self { id, fingerprint, bytes: SecretBox::new(Box::new(bytes)) }
    }

    pub fn generate() -> Self {
        Self::from_bytes(super::random_bytes())
    }

    /// A short, stable id, stored beside each ciphertext.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A one-way fingerprint the database stores to recognise this key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn expose(&self) -> &[u8; KEY_LEN] {
        self.bytes.expose_secret()
    }

    /// The base64 text form, for writing a generated key to its file.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.expose())
    }

    /// Hand-made keys: all printable ASCII (a passphrase or hex text pasted where base64
    /// of random bytes belongs), a repeated pattern, a counting sequence, or few distinct
    /// bytes. 32 random bytes are all printable with odds of 1 in 10^13, and essentially
    /// never have fewer than 20 distinct values.
    fn looks_weak(bytes: &[u8; KEY_LEN]) -> bool {
        use super::strength::{distinct_bytes, longest_counting_run, repeats_a_pattern};
        bytes.iter().all(|byte| (0x20..=0x7e).contains(byte))
            || repeats_a_pattern(bytes)
            || longest_counting_run(bytes) >= 8
            || distinct_bytes(bytes) < 20
    }
}

pub struct Keyring {
    keys: Vec<EncryptionKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|key| key.id())).finish()
    }
}

impl Keyring {
    /// Parses keys separated by commas or newlines; the first is the active key.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let mut keys: Vec<EncryptionKey> = Vec::new();
        for (index, entry) in text.split([',', '\n']).map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let position = index + 1;
            let decoded = STANDARD.decode(entry).map_err(|_| KeyringError::NotBase64 { position })?;
            let bytes: [u8; KEY_LEN] = decoded
                .as_slice()
                .try_into()
                .map_err(|_| KeyringError::WrongLength { position, len: decoded.len() })?;
            if EncryptionKey::looks_weak(&bytes) {
                return Err(KeyringError::Weak { position });
            }
            let key = EncryptionKey::from_bytes(bytes);
            if keys.iter().any(|k| k.id() == key.id()) {
                return Err(KeyringError::Duplicate { position });
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Self { keys })
    }

    pub fn from_keys(keys: Vec<EncryptionKey>) -> Result<Self, KeyringError> {
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Self { keys })
    }

    pub fn active(&self) -> &EncryptionKey {
        &self.keys[0]
    }

    pub fn get(&self, id: &str) -> Option<&EncryptionKey> {
        self.keys.iter().find(|key| key.id() == id)
    }

    pub fn keys(&self) -> &[EncryptionKey] {
        &self.keys
    }

    /// The text form (one base64 key a line, active first), for the generated key file.
    pub fn to_text(&self) -> String {
        self.keys.iter().map(|key| key.to_base64() + "\n").collect()
    }
}

/// The keyring a running server uses. When keys live in the data dir's key file, a
/// rotation by the command line rewrites that file; the handle notices (at most every few
/// seconds, and at once when it meets an unknown key id), so rows re-sealed under a new
/// key stay readable without a restart.
pub struct KeyringHandle {
    file: Option<std::path::PathBuf>,
    state: std::sync::RwLock<(std::sync::Arc<Keyring>, std::time::Instant)>,
}

const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

impl KeyringHandle {
    /// `file` is the key file to follow, or `None` when keys come from the environment.
    pub fn new(keyring: Keyring, file: Option<std::path::PathBuf>) -> Self {
        Self { file, state: std::sync::RwLock::new((std::sync::Arc::new(keyring), std::time::Instant::now())) }
    }

    /// The current keyring, re-read from its file when the last look is old.
    pub fn current(&self) -> std::sync::Arc<Keyring> {
        let stale = self.state.read().map(|state| state.1.elapsed() >= RECHECK).unwrap_or(true);
        if stale {
            self.reload();
        }
        self.state.read().map(|state| state.0.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().0.clone())
    }

    /// Re-reads the key file now. A file that fails to parse keeps the keyring in use.
    pub fn reload(&self) {
        let Some(path) = &self.file else { return };
        let parsed = std::fs::read_to_string(path).ok().and_then(|text| Keyring::parse(&text).ok());
        if let Ok(mut state) = self.state.write() {
            if let Some(keyring) = parsed {
                state.0 = std::sync::Arc::new(keyring);
            }
            state.1 = std::time::Instant::now();
        }
    }

    /// Opens an envelope; an unknown key id makes it re-read the key file once and retry.
    pub fn open(
        &self,
        binding: &super::envelope::Binding<'_>,
        sealed: &[u8],
    ) -> Result<SecretBox<Vec<u8>>, super::envelope::EnvelopeError> {
        match super::envelope::open(&self.current(), binding, sealed) {
            Err(super::envelope::EnvelopeError::UnknownKey(_)) if self.file.is_some() => {
                self.reload();
                super::envelope::open(&self.current(), binding, sealed)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_round_trips_through_its_text_form() {
        let ring = Keyring::from_keys(vec![EncryptionKey::generate(), EncryptionKey::generate()]).unwrap();
        let parsed = Keyring::parse(&ring.to_text()).unwrap();
        assert_eq!(parsed.active().id(), ring.active().id());
        assert_eq!(parsed.keys().len(), 2);
        assert_eq!(parsed.active().expose(), ring.active().expose());
    }

    #[test]
    fn keys_of_the_wrong_length_or_encoding_are_refused() {
        assert_eq!(Keyring::parse("").unwrap_err(), KeyringError::Empty);
        assert_eq!(Keyring::parse("not base64!").unwrap_err(), KeyringError::NotBase64 { position: 1 });
        let short = STANDARD.encode([7u8; 16]);
        assert_eq!(Keyring::parse(&short).unwrap_err(), KeyringError::WrongLength { position: 1, len: 16 });
    }

    #[test]
    fn well_known_sample_keys_are_refused() {
        let counting: Vec<u8> = (0u8..32).collect();
        let mut patterned = [0u8; 32];
        patterned.iter_mut().enumerate().for_each(|(i, byte)| *byte = [0x9c, 0x03, 0xf1, 0x77, 0x20][i % 5]);
        let mut few = crate::crypto::random_bytes::<32>();
        few.iter_mut().for_each(|byte| *byte %= 12);
        let samples = [
            vec![0u8; 32],
            vec![0x41; 32],
            counting,
            b"01234567890123456789012345678901".to_vec(),
            b"0123456789abcdef0123456789abcdef".to_vec(),
            b"Tr0ub4dor&3-correct-horse-batter".to_vec(),
            patterned.to_vec(),
            few.to_vec(),
        ];
        for sample in samples {
            let text = STANDARD.encode(&sample);
            assert_eq!(Keyring::parse(&text).unwrap_err(), KeyringError::Weak { position: 1 }, "{text}");
        }
    }

    #[test]
    fn debug_shows_ids_never_key_bytes() {
        let key = EncryptionKey::generate();
        let printed = format!("{key:?} {:?}", Keyring::from_keys(vec![EncryptionKey::generate()]).unwrap());
        assert!(!printed.contains(&key.to_base64()));
        assert!(printed.contains(key.id()));
    }
}

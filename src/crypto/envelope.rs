//! Sealed secrets. Every credential column holds an envelope: XChaCha20-Poly1305
//! ciphertext under a keyring key, with associated data that binds it to the row and
//! field it belongs to, so a ciphertext copied to another row, owner or organization
//! fails to open instead of leaking into the wrong tenant.
//!
//! Envelope layout (all lengths in bytes):
//!
//! ```text
//! | version (1) | key-id length (1) | key id (ASCII) | nonce (24) | ciphertext + tag (16) |
//! ```
//!
//! The key id travels in clear so rotation can find rows sealed under a retired key
//! without decrypting them. The nonce is random per seal: XChaCha's 192-bit nonce makes
//! collisions negligible without any counter state to keep.

use chacha20poly1305::{
    Key, XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit, Payload},
};
use secrecy::SecretBox;
use uuid::Uuid;

use super::{Keyring, random_bytes};

/// The envelope format written by [`seal`]; the only one [`open`] accepts.
pub const FORMAT_VERSION: u8 = 1;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Separates this AAD from any other use of the same keys.
const AAD_LABEL: &[u8] = b"latchkey/envelope/v1";

/// Where a ciphertext lives. It is authenticated (not encrypted) with the ciphertext,
/// so an envelope opens only for the exact row and field it was sealed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    pub org_id: Uuid,
    /// `None`: owned by the organization itself.
    pub owner: Option<Uuid>,
    pub record_id: Uuid,
    pub field: &'a str,
}

/// Why an envelope could not be read. Messages carry only non-secret header facts,
/// never plaintext, ciphertext or key bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the sealed value is empty")]
    Empty,
    #[error("the sealed value is truncated")]
    Truncated,
    #[error("unknown envelope format version {0}")]
    UnknownVersion(u8),
    #[error("the envelope's key id is not a printable ASCII string")]
    MalformedKeyId,
    #[error("the envelope was sealed with key {0}, which is not in the keyring")]
    UnknownKey(String),
    #[error("the envelope failed authentication (tampered, wrong binding or wrong key)")]
    Authentication,
}

/// An envelope split into its parts, borrowing from the input.
struct Parsed<'e> {
    key_id: &'e str,
    nonce: [u8; NONCE_LEN],
    ciphertext: &'e [u8],
}

/// Checked parsing: every slice is taken with `split_at_checked`, so no input panics.
fn parse(envelope: &[u8]) -> Result<Parsed<'_>, EnvelopeError> {
    let (&version, rest) = envelope.split_first().ok_or(EnvelopeError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(EnvelopeError::UnknownVersion(version));
    }
    let (&id_len, rest) = rest.split_first().ok_or(EnvelopeError::Truncated)?;
    let (id, rest) = rest.split_at_checked(usize::from(id_len)).ok_or(EnvelopeError::Truncated)?;
    // Printable ASCII only, so an id echoed in an error or log is harmless text.
    if id.is_empty() || !id.iter().all(u8::is_ascii_graphic) {
        return Err(EnvelopeError::MalformedKeyId);
    }
    let key_id = std::str::from_utf8(id).map_err(|_| EnvelopeError::MalformedKeyId)?;
    let (nonce, ciphertext) = rest.split_at_checked(NONCE_LEN).ok_or(EnvelopeError::Truncated)?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| EnvelopeError::Truncated)?;
    if ciphertext.len() < TAG_LEN {
        return Err(EnvelopeError::Truncated);
    }
    Ok(Parsed { key_id, nonce, ciphertext })
}

/// Appends `bytes` with a 4-byte big-endian length, so adjacent fields cannot run
/// into each other.
fn push_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    // A field name or key id longer than 4 GiB is not a real input; saturating keeps
    // this total, and the bytes themselves still follow in full.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The associated data: a domain label, the format version, the key id and the
/// binding. Fixed-width UUIDs, a tag byte for the optional owner and length-prefixed
/// strings make the encoding injective, so two different bindings never collide.
///
/// ```text
/// len‖"latchkey/envelope/v1" ‖ version ‖ len‖key id ‖ org (16)
///   ‖ 0x00 (org-owned) | 0x01 ‖ owner (16) ‖ record (16) ‖ len‖field
/// ```
fn aad(key_id: &str, binding: &Binding<'_>) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(4 + AAD_LABEL.len() + 1 + 4 + key_id.len() + 16 + 17 + 16 + 4 + binding.field.len());
    push_prefixed(&mut out, AAD_LABEL);
    out.push(FORMAT_VERSION);
    push_prefixed(&mut out, key_id.as_bytes());
    out.extend_from_slice(binding.org_id.as_bytes());
    match binding.owner {
        None => out.push(0x00),
        Some(owner) => {
            out.push(0x01);
            out.extend_from_slice(owner.as_bytes());
        }
    }
    out.extend_from_slice(binding.record_id.as_bytes());
    push_prefixed(&mut out, binding.field.as_bytes());
    out
}

fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(Key::from_slice(key))
}

/// Seals `plaintext` for `binding` under the keyring's active key, with a fresh nonce.
pub fn seal(keyring: &Keyring, binding: &Binding<'_>, plaintext: &[u8]) -> Vec<u8> {
    let key = keyring.active();
    let key_id = key.id();
    // Key ids are derived by the keyring (16 hex characters), never taken from input.
    let id_len = u8::try_from(key_id.len()).expect("keyring key ids are 16 characters");
    let nonce = random_bytes::<NONCE_LEN>();
    let aad = aad(key_id, binding);
    let ciphertext = cipher(key.expose())
        .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &aad })
        // Only fails for messages near 256 GiB, far beyond any credential.
        .expect("XChaCha20-Poly1305 encryption of an in-memory value");

    let mut envelope = Vec::with_capacity(2 + key_id.len() + NONCE_LEN + ciphertext.len());
    envelope.push(FORMAT_VERSION);
    envelope.push(id_len);
    envelope.extend_from_slice(key_id.as_bytes());
    envelope.extend_from_slice(&nonce);
    envelope.extend_from_slice(&ciphertext);
    envelope
}

/// Opens an envelope with the key it names (active or retired). The plaintext comes
/// back as a secret so it is zeroized on drop and kept out of `Debug` output.
pub fn open(keyring: &Keyring, binding: &Binding<'_>, envelope: &[u8]) -> Result<SecretBox<Vec<u8>>, EnvelopeError> {
    let parsed = parse(envelope)?;
    let key = keyring.get(parsed.key_id).ok_or_else(|| EnvelopeError::UnknownKey(parsed.key_id.to_owned()))?;
    let aad = aad(parsed.key_id, binding);
    let plaintext = cipher(key.expose())
        .decrypt(&XNonce::from(parsed.nonce), Payload { msg: parsed.ciphertext, aad: &aad })
        .map_err(|_| EnvelopeError::Authentication)?;
    Ok(SecretBox::new(Box::new(plaintext)))
}

/// The id of the key an envelope was sealed with, read from the clear header without
/// decrypting; rotation uses it to find rows still sealed under a retired key.
pub fn key_id(envelope: &[u8]) -> Result<&str, EnvelopeError> {
    parse(envelope).map(|parsed| parsed.key_id)
}

/// Re-encrypts an envelope under the active key (for key rotation). The envelope must
/// open for `binding` first, so rotation never launders a tampered or misplaced value.
pub fn reseal(keyring: &Keyring, binding: &Binding<'_>, envelope: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    use secrecy::ExposeSecret;
    let plaintext = open(keyring, binding, envelope)?;
    Ok(seal(keyring, binding, plaintext.expose_secret()))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::crypto::EncryptionKey;

    const SECRET: &[u8] = br#"{"api_key":"sk_live_0123456789abcdefghijklmnopqrstuvwxyz","refresh":"rt_ABCDEFGHIJ"}"#;

    fn ring() -> Keyring {
        Keyring::from_keys(vec![EncryptionKey::generate()]).unwrap()
    }

    fn binding() -> Binding<'static> {
        Binding {
            org_id: Uuid::from_u128(0x1111),
            owner: Some(Uuid::from_u128(0x2222)),
            record_id: Uuid::from_u128(0x3333),
            field: "credentials",
        }
    }

    fn opened(keyring: &Keyring, binding: &Binding<'_>, envelope: &[u8]) -> Vec<u8> {
        open(keyring, binding, envelope).unwrap().expose_secret().clone()
    }

    #[test]
    fn a_sealed_value_opens_to_the_same_plaintext() {
        let keyring = ring();
        let envelope = seal(&keyring, &binding(), SECRET);
        assert_eq!(opened(&keyring, &binding(), &envelope), SECRET);
        assert_eq!(envelope[0], FORMAT_VERSION);
        assert_eq!(key_id(&envelope).unwrap(), keyring.active().id());
        assert_eq!(envelope.len(), 2 + keyring.active().id().len() + NONCE_LEN + SECRET.len() + TAG_LEN);
    }

    #[test]
    fn an_empty_plaintext_round_trips() {
        let keyring = ring();
        let envelope = seal(&keyring, &binding(), b"");
        assert!(opened(&keyring, &binding(), &envelope).is_empty());
    }

    #[test]
    fn sealing_the_same_plaintext_twice_gives_different_envelopes() {
        let keyring = ring();
        let first = seal(&keyring, &binding(), SECRET);
        let second = seal(&keyring, &binding(), SECRET);
        assert_ne!(first, second);
    }

    #[test]
    fn the_envelope_contains_no_eight_byte_run_of_the_plaintext() {
        assert!(SECRET.len() >= 64);
        let envelope = seal(&ring(), &binding(), SECRET);
        for window in SECRET.windows(8) {
            assert!(
                !envelope.windows(8).any(|candidate| candidate == window),
                "plaintext run {:?} found in the envelope",
                String::from_utf8_lossy(window)
            );
        }
    }

    #[test]
    fn flipping_any_single_byte_of_the_envelope_makes_open_fail() {
        let keyring = ring();
        let envelope = seal(&keyring, &binding(), SECRET);
        for index in 0..envelope.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut tampered = envelope.clone();
                tampered[index] ^= mask;
                assert!(
                    open(&keyring, &binding(), &tampered).is_err(),
                    "byte {index} flipped with {mask:#04x} still opened"
                );
            }
        }
    }

    #[test]
    fn changing_any_part_of_the_binding_makes_open_fail() {
        let keyring = ring();
        let original = binding();
        let org_owned = Binding { owner: None, ..original };
        let variants = [
            Binding { org_id: Uuid::from_u128(0x9999), ..original },
            org_owned,
            Binding { owner: Some(Uuid::from_u128(0x9999)), ..original },
            Binding { record_id: Uuid::from_u128(0x9999), ..original },
            Binding { field: "credential", ..original },
            Binding { field: "", ..original },
        ];
        let envelope = seal(&keyring, &original, SECRET);
        for other in &variants {
            assert_eq!(open(&keyring, other, &envelope).unwrap_err(), EnvelopeError::Authentication, "{other:?}");
        }

        // And the other way: a value owned by the organization is not a user's value.
        let envelope = seal(&keyring, &org_owned, SECRET);
        assert_eq!(opened(&keyring, &org_owned, &envelope), SECRET);
        assert_eq!(open(&keyring, &original, &envelope).unwrap_err(), EnvelopeError::Authentication);
    }

    #[test]
    fn an_envelope_moved_to_another_organization_does_not_open() {
        let keyring = ring();
        let ours = binding();
        let envelope = seal(&keyring, &ours, SECRET);
        let theirs = Binding { org_id: Uuid::from_u128(0xaaaa), ..ours };
        assert_eq!(open(&keyring, &theirs, &envelope).unwrap_err(), EnvelopeError::Authentication);
    }

    #[test]
    fn field_names_are_length_prefixed_so_bindings_cannot_collide() {
        let a = Binding { field: "ab", ..binding() };
        let b = Binding { field: "a", ..binding() };
        assert_ne!(aad("k", &a), aad("k", &b));
        assert_ne!(aad("k1", &b), aad("k", &b));
        let none = Binding { owner: None, ..binding() };
        let nil = Binding { owner: Some(Uuid::nil()), ..binding() };
        assert_ne!(aad("k", &none), aad("k", &nil));
    }

    #[test]
    fn unknown_versions_empty_truncated_and_plaintext_json_values_are_refused() {
        let keyring = ring();
        let envelope = seal(&keyring, &binding(), SECRET);

        assert_eq!(open(&keyring, &binding(), b"").unwrap_err(), EnvelopeError::Empty);
        assert_eq!(key_id(b""), Err(EnvelopeError::Empty));

        let mut future = envelope.clone();
        future[0] = 2;
        assert_eq!(open(&keyring, &binding(), &future).unwrap_err(), EnvelopeError::UnknownVersion(2));
        assert_eq!(key_id(&[0]), Err(EnvelopeError::UnknownVersion(0)));

        let json = br#"{"api_key":"x"}"#;
        assert_eq!(open(&keyring, &binding(), json).unwrap_err(), EnvelopeError::UnknownVersion(b'{'));
        assert_eq!(key_id(json), Err(EnvelopeError::UnknownVersion(b'{')));

        // Every proper prefix is refused, and none panics.
        for len in 1..envelope.len() {
            let error = open(&keyring, &binding(), &envelope[..len]).unwrap_err();
            assert!(
                matches!(error, EnvelopeError::Truncated | EnvelopeError::Authentication),
                "prefix of {len} bytes gave {error:?}"
            );
        }
        // Shorter than the header plus a tag is a format error, not a crypto one.
        let header = 2 + keyring.active().id().len() + NONCE_LEN;
        assert_eq!(
            open(&keyring, &binding(), &envelope[..header + TAG_LEN - 1]).unwrap_err(),
            EnvelopeError::Truncated
        );
        assert_eq!(key_id(&[FORMAT_VERSION]), Err(EnvelopeError::Truncated));
        assert_eq!(key_id(&[FORMAT_VERSION, 0]), Err(EnvelopeError::MalformedKeyId));
        assert_eq!(key_id(&[FORMAT_VERSION, 3, b'a', b'\n', b'b']), Err(EnvelopeError::MalformedKeyId));
    }

    #[test]
    fn arbitrary_short_inputs_never_panic() {
        let keyring = ring();
        for first in [0u8, 1, 2, b'{', 0xff] {
            for second in [0u8, 1, 16, 0xff] {
                for tail in 0..80usize {
                    let mut input = vec![first, second];
                    input.extend((0..tail).map(|i| b'a' + (i % 6) as u8));
                    assert!(open(&keyring, &binding(), &input).is_err());
                    let _ = key_id(&input);
                }
            }
        }
    }

    #[test]
    fn a_retired_key_still_opens_and_reseal_moves_the_value_to_the_active_key() {
        let old = EncryptionKey::generate();
        let old_id = old.id().to_owned();
        let before = Keyring::from_keys(vec![EncryptionKey::from_bytes(*old.expose())]).unwrap();
        let envelope = seal(&before, &binding(), SECRET);
        assert_eq!(key_id(&envelope).unwrap(), old_id);

        let rotated = Keyring::from_keys(vec![EncryptionKey::generate(), old]).unwrap();
        assert_eq!(opened(&rotated, &binding(), &envelope), SECRET);

        let resealed = reseal(&rotated, &binding(), &envelope).unwrap();
        assert_eq!(key_id(&resealed).unwrap(), rotated.active().id());
        assert_ne!(key_id(&resealed).unwrap(), old_id);
        assert_eq!(opened(&rotated, &binding(), &resealed), SECRET);

        // Once the old key is dropped, only the resealed value still opens.
        let after = Keyring::from_keys(vec![EncryptionKey::from_bytes(*rotated.active().expose())]).unwrap();
        assert_eq!(opened(&after, &binding(), &resealed), SECRET);
        assert_eq!(open(&after, &binding(), &envelope).unwrap_err(), EnvelopeError::UnknownKey(old_id));
    }

    #[test]
    fn reseal_refuses_an_envelope_that_does_not_open_for_its_binding() {
        let keyring = ring();
        let envelope = seal(&keyring, &binding(), SECRET);
        let elsewhere = Binding { record_id: Uuid::from_u128(0x4444), ..binding() };
        assert_eq!(reseal(&keyring, &elsewhere, &envelope).unwrap_err(), EnvelopeError::Authentication);
    }

    #[test]
    fn an_unknown_key_id_is_refused_and_named() {
        let envelope = seal(&ring(), &binding(), SECRET);
        let sealed_with = key_id(&envelope).unwrap().to_owned();
        assert_eq!(open(&ring(), &binding(), &envelope).unwrap_err(), EnvelopeError::UnknownKey(sealed_with));
    }

    #[test]
    fn a_key_with_the_same_id_but_other_bytes_fails_authentication() {
        let keyring = ring();
        let mut envelope = seal(&keyring, &binding(), SECRET);
        let other = ring();
        let id_range = 2..2 + keyring.active().id().len();
        envelope[id_range].copy_from_slice(other.active().id().as_bytes());
        assert_eq!(open(&other, &binding(), &envelope).unwrap_err(), EnvelopeError::Authentication);
    }

    #[test]
    fn errors_never_show_plaintext_or_key_bytes() {
        let keyring = ring();
        let envelope = seal(&keyring, &binding(), SECRET);
        let mut tampered = envelope.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        let other_org = Binding { org_id: Uuid::nil(), ..binding() };
        let errors = [
            open(&keyring, &binding(), b"").unwrap_err(),
            open(&keyring, &binding(), &envelope[..10]).unwrap_err(),
            open(&keyring, &binding(), SECRET).unwrap_err(),
            open(&keyring, &binding(), &tampered).unwrap_err(),
            open(&keyring, &other_org, &envelope).unwrap_err(),
            open(&ring(), &binding(), &envelope).unwrap_err(),
        ];
        let secret_text = String::from_utf8_lossy(SECRET);
        let key_text = keyring.active().to_base64();
        for error in &errors {
            for printed in [format!("{error:?}"), error.to_string()] {
                assert!(!printed.contains("sk_live"), "{printed}");
                assert!(!printed.contains("api_key"), "{printed}");
                assert!(!printed.contains(&*secret_text), "{printed}");
                assert!(!printed.contains(&key_text), "{printed}");
            }
        }
        // The opened secret itself is redacted in Debug output.
        let secret = open(&keyring, &binding(), &envelope).unwrap();
        assert!(!format!("{secret:?}").contains("sk_live"));
    }
}

//! Sealed secrets: what is sealed opens unchanged, and nothing else opens at all.

use latchkey::crypto::{
    Binding, EncryptionKey, Keyring,
    envelope::{self, FORMAT_VERSION},
};
use proptest::prelude::*;
use secrecy::ExposeSecret;
use uuid::Uuid;

/// Version, key-id length, a 16-character key id and the nonce.
const HEADER_LEN: usize = 2 + 16 + 24;

fn keyring() -> Keyring {
    Keyring::from_keys(vec![EncryptionKey::generate()]).expect("one key")
}

#[derive(Clone, Debug)]
struct Place {
    org: u128,
    owner: Option<u128>,
    record: u128,
    field: String,
}

impl Place {
    fn binding(&self) -> Binding<'_> {
        Binding {
            org_id: Uuid::from_u128(self.org),
            owner: self.owner.map(Uuid::from_u128),
            record_id: Uuid::from_u128(self.record),
            field: &self.field,
        }
    }
}

fn place() -> impl Strategy<Value = Place> {
    (any::<u128>(), any::<Option<u128>>(), any::<u128>(), ".{0,24}").prop_map(|(org, owner, record, field)| Place {
        org,
        owner,
        record,
        field,
    })
}

fn plaintext() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..1024)
}

proptest! {
    #[test]
    fn a_sealed_value_opens_to_exactly_its_plaintext(plaintext in plaintext(), place in place()) {
        let keyring = keyring();
        let sealed = envelope::seal(&keyring, &place.binding(), &plaintext);
        let opened = envelope::open(&keyring, &place.binding(), &sealed);
        prop_assert_eq!(opened.ok().map(|secret| secret.expose_secret().clone()), Some(plaintext));
    }

    #[test]
    fn changing_any_byte_of_a_sealed_value_makes_it_fail_to_open(
        plaintext in plaintext(),
        place in place(),
        (header, at) in (any::<bool>(), any::<prop::sample::Index>()),
        mask in 1..=255u8,
    ) {
        let keyring = keyring();
        let mut sealed = envelope::seal(&keyring, &place.binding(), &plaintext);
        // Half the time in the header (version, key id, nonce), which is easy to miss.
        let at = at.index(if header { sealed.len().min(HEADER_LEN) } else { sealed.len() });
        sealed[at] ^= mask;
        prop_assert!(envelope::open(&keyring, &place.binding(), &sealed).is_err(), "byte {at} ^ {mask:#04x} opened");
    }

    #[test]
    fn a_truncated_or_extended_sealed_value_fails_to_open(
        plaintext in plaintext(),
        place in place(),
        (header, keep) in (any::<bool>(), any::<prop::sample::Index>()),
        extra in prop::collection::vec(any::<u8>(), 1..32),
    ) {
        let keyring = keyring();
        let sealed = envelope::seal(&keyring, &place.binding(), &plaintext);
        let keep = keep.index(if header { HEADER_LEN + 16 } else { sealed.len() });
        prop_assert!(envelope::open(&keyring, &place.binding(), &sealed[..keep]).is_err(), "a prefix of {keep} bytes opened");
        let mut extended = sealed.clone();
        extended.extend_from_slice(&extra);
        prop_assert!(envelope::open(&keyring, &place.binding(), &extended).is_err());
    }

    #[test]
    fn a_sealed_value_opens_only_where_it_was_sealed(
        plaintext in plaintext(),
        here in place(),
        (part, other) in (0..4usize, place()),
    ) {
        // Elsewhere by one part only, so each part is shown to be bound on its own.
        let there = match part {
            0 => Place { org: other.org, ..here.clone() },
            1 => Place { owner: other.owner, ..here.clone() },
            2 => Place { record: other.record, ..here.clone() },
            _ => Place { field: other.field, ..here.clone() },
        };
        prop_assume!(here.binding() != there.binding());
        let keyring = keyring();
        let sealed = envelope::seal(&keyring, &here.binding(), &plaintext);
        prop_assert!(envelope::open(&keyring, &there.binding(), &sealed).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_open_and_never_crash(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            // a well-formed header naming the ring's key, then anything
            prop::collection::vec(any::<u8>(), 0..120).prop_map(|rest| {
                let mut bytes = vec![FORMAT_VERSION, 16];
                bytes.extend_from_slice(b"0000000000000000");
                bytes.extend(rest);
                bytes
            }),
        ],
        place in place(),
    ) {
        let keyring = keyring();
        // Name the ring's key where the generated header names a placeholder.
        let mut bytes = bytes;
        let id = keyring.active().id().as_bytes();
        if bytes.len() >= 2 + id.len() && &bytes[2..2 + id.len()] == b"0000000000000000" {
            bytes[2..2 + id.len()].copy_from_slice(id);
        }
        prop_assert!(envelope::open(&keyring, &place.binding(), &bytes).is_err());
        let _ = envelope::key_id(&bytes);
    }
}

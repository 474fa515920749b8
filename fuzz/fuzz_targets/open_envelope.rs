//! Sealed-secret envelopes: no bytes open unless sealed for that place, a sealed value
//! with any byte changed does not open, and nothing crashes the parser.

#![no_main]

use std::sync::OnceLock;

use latchkey_fuzz::crypto::{
    Binding, EncryptionKey, Keyring,
    envelope::{self, FORMAT_VERSION},
};
use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret;
use uuid::Uuid;

fn keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING.get_or_init(|| Keyring::from_keys(vec![EncryptionKey::generate()]).expect("one key"))
}

const BINDING: Binding<'static> = Binding {
    org_id: Uuid::from_u128(1),
    owner: Some(Uuid::from_u128(2)),
    record_id: Uuid::from_u128(3),
    field: "credentials",
};

fuzz_target!(|data: &[u8]| {
    let keyring = keyring();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        // Any bytes at all.
        0 => {
            assert!(envelope::open(keyring, &BINDING, rest).is_err());
            let _ = envelope::key_id(rest);
        }
        // A header naming the ring's key, then any bytes: parsing reaches decryption.
        1 => {
            let id = keyring.active().id().as_bytes();
            let mut sealed = vec![FORMAT_VERSION, id.len() as u8];
            sealed.extend_from_slice(id);
            sealed.extend_from_slice(rest);
            assert!(envelope::open(keyring, &BINDING, &sealed).is_err());
        }
        // A real envelope of `rest`, then with one byte changed or cut short.
        _ => {
            let sealed = envelope::seal(keyring, &BINDING, rest);
            let opened = envelope::open(keyring, &BINDING, &sealed).expect("a sealed value opens");
            assert_eq!(opened.expose_secret().as_slice(), rest);
            let at = rest.iter().fold(rest.len(), |at, byte| at.wrapping_mul(31).wrapping_add(usize::from(*byte)));
            let mut changed = sealed.clone();
            changed[at % sealed.len()] ^= rest.first().copied().unwrap_or(1).max(1);
            assert!(envelope::open(keyring, &BINDING, &changed).is_err());
            assert!(envelope::open(keyring, &BINDING, &sealed[..at % sealed.len()]).is_err());
        }
    }
});

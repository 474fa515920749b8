//! The encryption keys' whole lifecycle: where they live ([`files`]), which ones the
//! database expects ([`fingerprint`]), every column sealed under them ([`sealed`]),
//! re-sealing and retiring ([`rotation`]), and the `latchkey keys` commands
//! ([`commands`]). Sealing itself is [`crate::crypto::envelope`]'s.

pub mod commands;
pub mod files;
pub mod fingerprint;
pub mod rotation;
pub mod sealed;

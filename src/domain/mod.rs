//! The use cases, over SeaORM. Nothing here knows GraphQL or HTTP: callers pass scopes
//! from [`crate::auth`] and get plain Rust values or [`crate::Error`]s back. Ownership is
//! part of every query (`WHERE org_id = ? [AND owner = ?]`), so a foreign id is simply
//! not found.

/// Declares a closed set of names once: an enum whose variants each carry a stable name
/// (what is stored and sent) and a documented meaning, with `ALL`, `as_str`, `parse` and
/// `description`.
macro_rules! named_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $($(#[doc = $doc:literal])+ $variant:ident = $text:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl $name {
            /// Every value, in the order of the declaration.
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// What the value means, as documented.
            pub fn description(self) -> &'static str {
                match self {
                    $($name::$variant => concat!($($doc),+).trim_ascii(),)+
                }
            }
        }
    };
}

pub mod audit;
pub mod authentications;
pub mod catalog;
pub mod catalog_cache;
pub mod expiry;
pub mod idempotency;
pub mod installation;
pub mod instances;
pub mod json_schema;
pub mod json_text;
pub mod oauth_connect;
pub mod org_settings;
pub mod orgs;
pub mod page_sessions;
pub mod pagination;
pub mod refresh;
pub mod solutions;
pub mod users;
pub mod webhooks;

use crate::error::{Error, Result};

/// Checks a required, human-entered text: trimmed, not empty, at most `max` characters.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::bad_input(format!("{field} must not be empty")));
    }
    if value.chars().count() > max {
        return Err(Error::bad_input(format!("{field} must be at most {max} characters")));
    }
    Ok(value.to_owned())
}

/// Maps a unique-constraint violation to `CONFLICT` with `message`; other errors stay internal.
pub fn conflict_on_unique(err: sea_orm::DbErr, message: impl FnOnce() -> String) -> Error {
    match err.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::Conflict(message()),
        _ => err.into(),
    }
}

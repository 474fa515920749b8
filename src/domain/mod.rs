//! The use cases, over SeaORM. Nothing here knows GraphQL or HTTP: callers pass scopes
//! from [`crate::auth`] and get plain Rust values or [`crate::Error`]s back. Ownership is
//! part of every query (`WHERE org_id = ? [AND owner = ?]`), so a foreign id is simply
//! not found.

pub mod audit;
pub mod authentications;
pub mod catalog;
pub mod events;
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

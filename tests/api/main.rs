//! Integration tests: a real server per test, spoken to over HTTP.

// Tests fail loudly on purpose.
#![allow(clippy::unwrap_used)]

mod access;
mod http;
mod schema;
mod startup;
mod support;
mod users;

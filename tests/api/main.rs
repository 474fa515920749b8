//! Integration tests: a real server per test, spoken to over HTTP.

// Tests fail loudly on purpose.
#![allow(clippy::unwrap_used)]

mod access;
mod at_rest;
mod authentications;
mod browser;
mod catalog;
mod concurrency;
mod graphiql;
mod graphql_over_http;
mod hostile;
mod http;
mod idempotency;
mod keys;
mod limits;
mod oauth;
mod operator;
mod org_settings;
mod pages;
mod process;
mod refresh;
mod rest;
mod schema;
mod solutions;
mod startup;
mod support;
mod tls;
mod users;
mod webhooks;
mod wizard;

//! latchkey: a self-hosted GraphQL service that holds end users' third-party
//! authentications for SaaS partners and binds them to solution instances.
//!
//! Layers, outermost first: [`http`] (router, limits, GraphiQL, health) hosts
//! [`graphql`] and the hosted [`pages`]; all resolve the caller with [`auth`] and call the use cases in
//! [`domain`], which speak SeaORM to the tables in the `entity` crate. Beside serving,
//! [`workers`] run background work (webhook deliveries) on every replica.

pub mod app;
pub mod auth;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod error;
pub mod graphiql;
pub mod graphql;
pub mod http;
pub mod ids;
pub mod keys;
pub mod oauth;
pub mod outbound;
pub mod pages;
pub mod rate_limit;
pub mod rest;
pub mod server;
pub mod tls;
pub mod workers;

pub use app::App;
pub use config::Config;
pub use error::{Error, Result};

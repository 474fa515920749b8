//! `async_graphql::parser` and `async_graphql::Positioned` as the document gate imports
//! them, without building the rest of async-graphql.

pub use async_graphql_parser as parser;
pub use async_graphql_parser::Positioned;

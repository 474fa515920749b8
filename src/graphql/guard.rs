//! Field guards. Every field of `Query`, `Mutation` and `Viewer` carries
//! `guard = "Access::..."` (enforcement) and `directive = access::apply(...)` (so
//! `schema.graphql` shows the token each field needs); a test checks both against the
//! access table.

use async_graphql::{Context, Enum, Guard, TypeDirective};

use crate::auth::Access;

impl Guard for Access {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        Ok(super::principal(ctx).check(*self)?)
    }
}

/// The token a field takes, as shown in `schema.graphql`.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The organization's master token.
    Master,
    /// An end user's user token.
    User,
    /// Either; results are scoped to the caller.
    MasterOrUser,
}

/// Documents which token a field needs (enforced by the field's guard).
#[TypeDirective(location = "FieldDefinition")]
pub fn access(token: Token) {}

//! (ext) The organization's audit trail.

use async_graphql::{Context, ID, Object, Result, SimpleObject};

use super::{
    connection::{AuditEventConnectionName, AuditEventEdgeName, NamedConnection, from_page},
    guard::{Token, access},
    page_request, principal,
    scalars::DateTime,
    unscoped_db,
};
use crate::{auth::Access, domain::audit};

/// Who did what to which object, and when. Never holds a secret.
#[derive(SimpleObject)]
pub struct AuditEvent {
    pub id: ID,
    /// `master`, `user` or `system` (the command line).
    pub actor_kind: String,
    /// The master token's id or the end user's id.
    pub actor_id: Option<ID>,
    /// Such as `authentication.created` or `user_token.minted`.
    pub action: String,
    pub target_id: Option<ID>,
    pub occurred_at: DateTime,
}

impl From<audit::AuditEvent> for AuditEvent {
    fn from(event: audit::AuditEvent) -> Self {
        Self {
            id: ID(event.id.to_string()),
            actor_kind: event.actor_kind,
            actor_id: event.actor_id.map(|id| ID(id.to_string())),
            action: event.action,
            target_id: event.target_id.map(|id| ID(id.to_string())),
            occurred_at: DateTime(event.occurred_at),
        }
    }
}

pub type AuditEventConnection = NamedConnection<AuditEvent, AuditEventConnectionName, AuditEventEdgeName>;

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// (ext) The organization's audit events, oldest first.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master), complexity = "crate::graphql::connection::page_complexity(first, last, child_complexity)")]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<AuditEventConnection> {
        let scope = principal(ctx).master()?;
        let page = audit::list(unscoped_db(ctx), scope, &page_request(first, after, last, before)?).await?;
        Ok(from_page(page, |event| event.id, AuditEvent::from))
    }
}

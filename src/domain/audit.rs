//! The audit trail: who did what to which object, and when. Events hold ids and action
//! names only, never a secret.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::pagination::{Page, PageRequest};
use uuid::Uuid;

use crate::{
    auth::{Caller, MasterScope, UserScope},
    error::Result,
    ids::OrgId,
};

/// Who acted.
#[derive(Clone, Copy, Debug)]
pub enum Actor {
    Master(Uuid),
    User(Uuid),
    /// The operator, through the command line.
    System,
}

impl Actor {
    fn parts(self) -> (&'static str, Option<Uuid>) {
        match self {
            Actor::Master(id) => ("master", Some(id)),
            Actor::User(id) => ("user", Some(id)),
            Actor::System => ("system", None),
        }
    }
}

impl From<&MasterScope> for Actor {
    fn from(scope: &MasterScope) -> Self {
        Actor::Master(scope.token_id().0)
    }
}

impl From<Caller<'_>> for Actor {
    fn from(caller: Caller<'_>) -> Self {
        match caller {
            Caller::Master(scope) => scope.into(),
            Caller::User(scope) => scope.into(),
        }
    }
}

impl From<&UserScope> for Actor {
    fn from(scope: &UserScope) -> Self {
        Actor::User(scope.user_id().0)
    }
}

pub async fn record(
    conn: &impl ConnectionTrait,
    org_id: OrgId,
    actor: Actor,
    action: &str,
    target: Option<Uuid>,
) -> Result<()> {
    let (actor_kind, actor_id) = actor.parts();
    entity::audit_event::Entity::insert(entity::audit_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(org_id.0),
        actor_kind: Set(actor_kind.to_owned()),
        actor_id: Set(actor_id),
        action: Set(action.to_owned()),
        target_id: Set(target),
        occurred_at: Set(Utc::now()),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// One audit event as the organization reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: Uuid,
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target_id: Option<Uuid>,
    pub occurred_at: chrono::DateTime<Utc>,
}

impl From<entity::audit_event::Model> for AuditEvent {
    fn from(row: entity::audit_event::Model) -> Self {
        Self {
            id: row.id,
            actor_kind: row.actor_kind,
            actor_id: row.actor_id,
            action: row.action,
            target_id: row.target_id,
            occurred_at: row.occurred_at,
        }
    }
}

/// The organization's audit trail, oldest first.
pub async fn list(conn: &impl ConnectionTrait, scope: &MasterScope, page: &PageRequest) -> Result<Page<AuditEvent>> {
    let select = entity::audit_event::Entity::find().filter(entity::audit_event::Column::OrgId.eq(scope.org_id().0));
    let page = page.fetch(conn, select, entity::audit_event::Column::Id, |row| row.id).await?;
    Ok(page.map(Into::into))
}

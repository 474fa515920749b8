//! Organizations (tenants). Created by the operator through the command line.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, QueryOrder, TransactionSession, TransactionTrait};
use secrecy::SecretString;

use super::{audit, conflict_on_unique, required_text};
use crate::{
    auth::{Caller, master_tokens},
    error::{Error, Result},
    ids::OrgId,
};
use entity::organization;

#[derive(Clone, Debug)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub full_reads_enabled: bool,
    pub created_at: chrono::DateTime<Utc>,
}

impl From<organization::Model> for Organization {
    fn from(row: organization::Model) -> Self {
        Self {
            id: OrgId(row.id),
            name: row.name,
            full_reads_enabled: row.full_reads_enabled,
            created_at: row.created_at,
        }
    }
}

pub async fn create(conn: &impl ConnectionTrait, name: &str) -> Result<Organization> {
    let name = required_text("name", name, 200)?;
    let row = organization::ActiveModel {
        id: Set(OrgId::generate().0),
        name: Set(name.clone()),
        full_reads_enabled: Set(false),
        created_at: Set(Utc::now()),
    };
    let row = organization::Entity::insert(row)
        .exec_with_returning(conn)
        .await
        .map_err(|err| conflict_on_unique(err, || format!("an organization named {name:?} already exists")))?;
    Ok(row.into())
}

/// An organization with its first master token and the token's audit event: all or
/// nothing, in one transaction (or in the caller's, when `conn` already is one).
pub async fn create_with_master_token(
    conn: &impl TransactionTrait,
    name: &str,
    label: &str,
) -> Result<(Organization, SecretString)> {
    let txn = crate::db::write(conn).await?;
    let org = create(&txn, name).await?;
    let (token, secret) = master_tokens::create(&txn, org.id, label).await?;
    audit::record(&txn, org.id, audit::Actor::System, "master_token.created", Some(token.id.0)).await?;
    txn.commit().await?;
    Ok((org, secret))
}

/// The caller's own organization.
pub async fn own(conn: &impl ConnectionTrait, caller: Caller<'_>) -> Result<Organization> {
    organization::Entity::find_by_id(caller.org_id().0)
        .one(conn)
        .await?
        .map(Into::into)
        .ok_or(Error::NotFound("organization"))
}

pub async fn list(conn: &impl ConnectionTrait) -> Result<Vec<Organization>> {
    let rows = organization::Entity::find().order_by_asc(organization::Column::Id).all(conn).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Turns full reads of authentications on or off for an organization (operator only).
pub async fn set_full_reads(conn: &impl ConnectionTrait, id: OrgId, enabled: bool) -> Result<Organization> {
    let row = organization::Entity::find_by_id(id.0).one(conn).await?.ok_or(Error::NotFound("organization"))?;
    let mut active: organization::ActiveModel = row.into();
    active.full_reads_enabled = Set(enabled);
    let row = organization::Entity::update(active).exec(conn).await?;
    let action = if enabled { "organization.full_reads_enabled" } else { "organization.full_reads_disabled" };
    super::audit::record(conn, id, super::audit::Actor::System, action, Some(id.0)).await?;
    Ok(row.into())
}

/// The organization a hosted page's URL names, by id or by name; a name longer than any
/// organization's is not looked up.
pub async fn by_name_or_id(conn: &impl ConnectionTrait, partner: &str) -> Result<Organization> {
    use sea_orm::{ColumnTrait, QueryFilter};
    let query = match uuid::Uuid::try_parse(partner) {
        Ok(id) => organization::Entity::find_by_id(id),
        Err(_) if partner.chars().count() <= 200 => {
            organization::Entity::find().filter(organization::Column::Name.eq(partner))
        }
        Err(_) => return Err(Error::NotFound("organization")),
    };
    query.one(conn).await?.map(Into::into).ok_or(Error::NotFound("organization"))
}

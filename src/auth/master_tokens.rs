//! Master tokens: `lk_master_` and 256 random bits. Only the SHA-256 hash is stored; an
//! organization may hold several, so rotation is "create the new one, revoke the old".

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use secrecy::SecretString;

use super::MasterScope;
use crate::{
    crypto,
    error::{Error, Result},
    ids::{MasterTokenId, OrgId},
};
use entity::master_token;

pub const PREFIX: &str = "lk_master_";

/// A master token's metadata; the secret itself is never kept.
#[derive(Clone, Debug)]
pub struct MasterTokenInfo {
    pub id: MasterTokenId,
    pub org_id: OrgId,
    pub label: String,
    pub created_at: chrono::DateTime<Utc>,
    pub revoked_at: Option<chrono::DateTime<Utc>>,
}

impl From<master_token::Model> for MasterTokenInfo {
    fn from(row: master_token::Model) -> Self {
        Self {
            id: MasterTokenId(row.id),
            org_id: OrgId(row.org_id),
            label: row.label,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// Mints a token for `org_id`. The returned secret is shown once and never stored.
pub async fn create(
    conn: &impl ConnectionTrait,
    org_id: OrgId,
    label: &str,
) -> Result<(MasterTokenInfo, SecretString)> {
    let token = crypto::random_token(PREFIX);
    let row = master_token::ActiveModel {
        id: Set(MasterTokenId::generate().0),
        org_id: Set(org_id.0),
        label: Set(label.to_owned()),
        token_hash: Set(token_hash(&token)),
        created_at: Set(Utc::now()),
        revoked_at: Set(None),
    };
    let row = master_token::Entity::insert(row).exec_with_returning(conn).await?;
    Ok((row.into(), token.into()))
}

pub async fn list(conn: &impl ConnectionTrait, org_id: OrgId) -> Result<Vec<MasterTokenInfo>> {
    let rows = master_token::Entity::find()
        .filter(master_token::Column::OrgId.eq(org_id.0))
        .order_by_asc(master_token::Column::Id)
        .all(conn)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Revokes one token. Takes effect on the next request of any replica: the revocation
/// epoch advances in the same transaction (see [`super::revocations`]).
pub async fn revoke(conn: &impl ConnectionTrait, id: MasterTokenId) -> Result<MasterTokenInfo> {
    let row = master_token::Entity::find_by_id(id.0).one(conn).await?.ok_or(Error::NotFound("master token"))?;
    if row.revoked_at.is_some() {
        return Ok(row.into());
    }
    let mut active: master_token::ActiveModel = row.into();
    active.revoked_at = Set(Some(Utc::now()));
    let row = master_token::Entity::update(active).exec(conn).await?;
    super::revocations::record(conn).await?;
    Ok(row.into())
}

/// Finds the live token with this secret, if any; `hash` is [`token_hash`] of it.
pub(super) async fn verify(conn: &impl ConnectionTrait, token: &str, hash: &str) -> Result<Option<MasterScope>> {
    debug_assert_eq!(hash, token_hash(token));
    let row = master_token::Entity::find()
        .filter(master_token::Column::TokenHash.eq(hash))
        .filter(master_token::Column::RevokedAt.is_null())
        .one(conn)
        .await?;
    Ok(row
        .filter(|row| crypto::constant_time_eq(row.token_hash.as_bytes(), hash.as_bytes()))
        .map(|row| MasterScope { org_id: OrgId(row.org_id), token_id: MasterTokenId(row.id) }))
}

/// What is stored of a master token, and what its cache entry is keyed by.
pub(super) fn token_hash(token: &str) -> String {
    crypto::sha256_hex(token.as_bytes())
}

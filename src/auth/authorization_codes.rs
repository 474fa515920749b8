//! Authorization codes: random, stored hashed, single use, valid for five minutes. Hosted
//! pages exchange one for the end user it was issued to.

use chrono::{Duration, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};
use secrecy::SecretString;

use crate::{
    crypto,
    error::Result,
    ids::{OrgId, UserId},
};
use entity::authorization_code;

pub const LIFETIME: Duration = Duration::minutes(5);
const PREFIX: &str = "lk_code_";

pub async fn issue(conn: &impl ConnectionTrait, org_id: OrgId, user_id: UserId) -> Result<SecretString> {
    let code = crypto::random_token(PREFIX);
    let now = Utc::now();
    authorization_code::Entity::insert(authorization_code::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        org_id: Set(org_id.0),
        user_id: Set(user_id.0),
        code_hash: Set(crypto::sha256_hex(code.as_bytes())),
        expires_at: Set(now + LIFETIME),
        consumed_at: Set(None),
        created_at: Set(now),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(code.into())
}

/// Redeems a code of `org_id`: the first caller within its lifetime gets the end user,
/// every later or late caller, and any caller naming another organization, gets `None`
/// (and a code of another organization stays unused). The conditional update makes this
/// atomic across replicas.
pub async fn consume(conn: &impl ConnectionTrait, org_id: OrgId, code: &str) -> Result<Option<UserId>> {
    let hash = crypto::sha256_hex(code.as_bytes());
    let now = Utc::now();
    let claimed = authorization_code::Entity::update_many()
        .col_expr(authorization_code::Column::ConsumedAt, Expr::value(now))
        .filter(authorization_code::Column::CodeHash.eq(hash.as_str()))
        .filter(authorization_code::Column::OrgId.eq(org_id.0))
        .filter(authorization_code::Column::ConsumedAt.is_null())
        .filter(authorization_code::Column::ExpiresAt.gt(now))
        .exec(conn)
        .await?;
    if claimed.rows_affected != 1 {
        return Ok(None);
    }
    let row = authorization_code::Entity::find()
        .filter(authorization_code::Column::CodeHash.eq(hash.as_str()))
        .one(conn)
        .await?;
    Ok(row.map(|row| UserId(row.user_id)))
}

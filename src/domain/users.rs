//! End users: provisioned with the master token, identified by the partner's
//! `externalUserId` (unique within an organization), and issued user tokens.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use secrecy::SecretString;
use serde_json::json;

use super::{
    audit::{self, Actor},
    conflict_on_unique,
    idempotency::{self, Begun, Idempotency},
    pagination::{Page, PageRequest},
    required_text,
};
use crate::{
    auth::{
        MasterScope, Revocations, UserScope, UserTokens, authorization_codes, revocations, user_tokens::MintedToken,
    },
    error::{Error, Result},
    ids::{OrgId, UserId},
};
use entity::external_user;

const MAX_NAME: usize = 256;
const MAX_EXTERNAL_ID: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalUser {
    pub id: UserId,
    pub name: String,
    pub external_user_id: String,
    pub is_test_user: bool,
    pub created_at: chrono::DateTime<Utc>,
}

impl From<external_user::Model> for ExternalUser {
    fn from(row: external_user::Model) -> Self {
        Self {
            id: UserId(row.id),
            name: row.name,
            external_user_id: row.external_user_id,
            is_test_user: row.is_test_user,
            created_at: row.created_at,
        }
    }
}

pub struct NewUser {
    pub name: String,
    pub external_user_id: String,
    pub is_test_user: bool,
}

#[derive(Default)]
pub struct UserPatch {
    pub name: Option<String>,
    pub is_test_user: Option<bool>,
}

/// Filters for listing; all given filters must match.
#[derive(Default)]
pub struct UserCriteria {
    pub user_id: Option<UserId>,
    pub external_user_id: Option<String>,
    pub name: Option<String>,
    pub is_test_user: Option<bool>,
}

fn of_org(org_id: OrgId, user_id: UserId) -> sea_orm::Select<external_user::Entity> {
    external_user::Entity::find_by_id(user_id.0).filter(external_user::Column::OrgId.eq(org_id.0))
}

/// The row of `user_id` in `org_id`, or `NOT_FOUND` (for a foreign id too).
async fn find_row(conn: &impl ConnectionTrait, org_id: OrgId, user_id: UserId) -> Result<external_user::Model> {
    of_org(org_id, user_id).one(conn).await?.ok_or(Error::NotFound("user"))
}

/// Share-locks a live user's row until the transaction ends (PostgreSQL), for writes that
/// add rows of that user or read its token version: a concurrent removal or revocation
/// then waits for them and takes their rows and tokens along, or has already happened and
/// they answer `NOT_FOUND`, never a foreign-key failure.
async fn shared_row(conn: &impl ConnectionTrait, org_id: OrgId, user_id: UserId) -> Result<external_user::Model> {
    of_org(org_id, user_id).lock_shared().one(conn).await?.ok_or(Error::NotFound("user"))
}

/// [`shared_row`] for writes that only need the user to stay.
pub(crate) async fn hold(conn: &impl ConnectionTrait, org_id: OrgId, user_id: UserId) -> Result<()> {
    shared_row(conn, org_id, user_id).await.map(drop)
}

/// The user's row, locked until the transaction ends (PostgreSQL).
async fn row_for_update(conn: &impl ConnectionTrait, org_id: OrgId, user_id: UserId) -> Result<external_user::Model> {
    of_org(org_id, user_id).lock_exclusive().one(conn).await?.ok_or(Error::NotFound("user"))
}

async fn get(conn: &impl ConnectionTrait, org_id: OrgId, user_id: UserId) -> Result<ExternalUser> {
    find_row(conn, org_id, user_id).await.map(Into::into)
}

/// The caller's own user record.
pub async fn me(conn: &impl ConnectionTrait, scope: &UserScope) -> Result<ExternalUser> {
    get(conn, scope.org_id(), scope.user_id()).await
}

pub async fn create(
    db: &DatabaseConnection,
    scope: &MasterScope,
    new: NewUser,
    idempotency: Option<&Idempotency>,
) -> Result<ExternalUser> {
    let claim = idempotency::claim(
        idempotency,
        scope,
        "external_user.create",
        || json!({"name": new.name, "externalUserId": new.external_user_id, "isTestUser": new.is_test_user}),
    );
    let name = required_text("name", &new.name, MAX_NAME)?;
    let external_user_id = required_text("externalUserId", &new.external_user_id, MAX_EXTERNAL_ID)?;
    let id = UserId::generate();
    let txn = match idempotency::begin(db, claim.as_ref(), id.0).await? {
        Begun::Fresh(txn) => txn,
        Begun::Replay(id) => return idempotency::replayed(get(db, scope.org_id(), UserId(id)).await, "user"),
    };
    let now = Utc::now();
    let row = external_user::ActiveModel {
        id: Set(id.0),
        org_id: Set(scope.org_id().0),
        external_user_id: Set(external_user_id.clone()),
        name: Set(name),
        is_test_user: Set(new.is_test_user),
        token_version: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let row = external_user::Entity::insert(row).exec_with_returning(&txn).await.map_err(|err| {
        conflict_on_unique(err, || format!("a user with externalUserId {external_user_id:?} already exists"))
    })?;
    audit::record(&txn, scope.org_id(), scope.into(), "external_user.created", Some(row.id)).await?;
    txn.commit().await?;
    Ok(row.into())
}

pub async fn update(
    db: &DatabaseConnection,
    scope: &MasterScope,
    user_id: UserId,
    patch: UserPatch,
) -> Result<ExternalUser> {
    let name = patch.name.as_deref().map(|name| required_text("name", name, MAX_NAME)).transpose()?;
    let txn = crate::db::write(db).await?;
    let mut row: external_user::ActiveModel = row_for_update(&txn, scope.org_id(), user_id).await?.into();
    if let Some(name) = name {
        row.name = Set(name);
    }
    if let Some(is_test_user) = patch.is_test_user {
        row.is_test_user = Set(is_test_user);
    }
    row.updated_at = Set(Utc::now());
    let row = row.update(&txn).await?;
    audit::record(&txn, scope.org_id(), scope.into(), "external_user.updated", Some(row.id)).await?;
    txn.commit().await?;
    Ok(row.into())
}

/// Removes the user and everything that is theirs: first their solution instances, then
/// (cascading from the user row) their authentications and codes. Their user tokens stop
/// working with the row.
pub async fn remove(
    db: &DatabaseConnection,
    revocations: &Revocations,
    scope: &MasterScope,
    user_id: UserId,
) -> Result<()> {
    let txn = crate::db::write(db).await?;
    // Locked first: rows being added for the user commit before this goes on, and the
    // deletes below then see them.
    row_for_update(&txn, scope.org_id(), user_id).await?;
    super::instances::remove_all_of(&txn, scope.org_id(), user_id).await?;
    super::authentications::removing_user(&txn, scope.org_id(), user_id).await?;
    let deleted = external_user::Entity::delete_many()
        .filter(external_user::Column::Id.eq(user_id.0))
        .filter(external_user::Column::OrgId.eq(scope.org_id().0))
        .exec(&txn)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(Error::NotFound("user"));
    }
    audit::record(&txn, scope.org_id(), scope.into(), "external_user.removed", Some(user_id.0)).await?;
    let epoch = revocations::record(&txn).await?;
    txn.commit().await?;
    revocations.advance(epoch);
    Ok(())
}

pub async fn list(
    conn: &impl ConnectionTrait,
    scope: &MasterScope,
    criteria: UserCriteria,
    page: &PageRequest,
) -> Result<Page<ExternalUser>> {
    let mut select = external_user::Entity::find().filter(external_user::Column::OrgId.eq(scope.org_id().0));
    if let Some(id) = criteria.user_id {
        select = select.filter(external_user::Column::Id.eq(id.0));
    }
    if let Some(external_user_id) = criteria.external_user_id {
        select = select.filter(external_user::Column::ExternalUserId.eq(external_user_id));
    }
    if let Some(name) = criteria.name {
        select = select.filter(external_user::Column::Name.eq(name));
    }
    if let Some(is_test_user) = criteria.is_test_user {
        select = select.filter(external_user::Column::IsTestUser.eq(is_test_user));
    }
    let page = page.fetch(conn, select, external_user::Column::Id, |row| row.id).await?;
    Ok(page.map(Into::into))
}

/// Mints a user token for `user_id` (two days) and audits it.
pub async fn authorize(
    db: &DatabaseConnection,
    tokens: &UserTokens,
    scope: &MasterScope,
    user_id: UserId,
) -> Result<MintedToken> {
    let txn = crate::db::write(db).await?;
    let row = shared_row(&txn, scope.org_id(), user_id).await?;
    let minted = tokens.mint(scope.org_id(), user_id, row.token_version).map_err(Error::internal)?;
    audit::record(&txn, scope.org_id(), scope.into(), "user_token.minted", Some(user_id.0)).await?;
    txn.commit().await?;
    Ok(minted)
}

/// Issues a single-use, five-minute authorization code for `user_id` and audits it.
pub async fn generate_authorization_code(
    db: &DatabaseConnection,
    scope: &MasterScope,
    user_id: UserId,
) -> Result<SecretString> {
    let txn = crate::db::write(db).await?;
    hold(&txn, scope.org_id(), user_id).await?;
    let code = authorization_codes::issue(&txn, scope.org_id(), user_id).await?;
    audit::record(&txn, scope.org_id(), scope.into(), "authorization_code.issued", Some(user_id.0)).await?;
    txn.commit().await?;
    Ok(code)
}

/// Exchanges an authorization code of `org_id` for the end user it was issued to.
pub async fn redeem_authorization_code(db: &DatabaseConnection, org_id: OrgId, code: &str) -> Result<ExternalUser> {
    let txn = crate::db::write(db).await?;
    let user_id =
        authorization_codes::consume(&txn, org_id, code).await?.ok_or(Error::NotFound("authorization code"))?;
    let user = get(&txn, org_id, user_id).await?;
    audit::record(&txn, org_id, Actor::User(user_id.0), "authorization_code.redeemed", Some(user_id.0)).await?;
    txn.commit().await?;
    Ok(user)
}

/// Invalidates every user token of `user_id` minted so far, keeping the user.
pub async fn revoke_tokens(
    db: &DatabaseConnection,
    revocations: &Revocations,
    scope: &MasterScope,
    user_id: UserId,
) -> Result<()> {
    let txn = crate::db::write(db).await?;
    let updated = external_user::Entity::update_many()
        .col_expr(external_user::Column::TokenVersion, Expr::col(external_user::Column::TokenVersion).add(1))
        .filter(external_user::Column::Id.eq(user_id.0))
        .filter(external_user::Column::OrgId.eq(scope.org_id().0))
        .exec(&txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(Error::NotFound("user"));
    }
    // An open hosted page acts for the user as a token does.
    crate::auth::page_sessions::end_all(&txn, scope.org_id(), user_id).await?;
    audit::record(&txn, scope.org_id(), scope.into(), "user_tokens.revoked", Some(user_id.0)).await?;
    let epoch = revocations::record(&txn).await?;
    txn.commit().await?;
    revocations.advance(epoch);
    Ok(())
}

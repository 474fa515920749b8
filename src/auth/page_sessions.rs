//! Hosted-page sessions. Opening a page redeems an authorization code for a session
//! bound to the code's end user and to the one page it was opened for; the browser keeps
//! the session's token in an HttpOnly cookie, and only its hash is stored. Form posts
//! carry a CSRF token derived from the session's token, so only a page that read it from
//! the session's own page can post.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{Duration, Utc};
use hmac::{Hmac, Mac};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{UserScope, authorization_codes};
use crate::{
    crypto,
    error::Result,
    ids::{OrgId, UserId},
};
use entity::page_session;

/// Long enough to fill a form or finish an OAuth consent, short enough that a forgotten
/// popup does not stay open for the day.
pub const LIFETIME: Duration = Duration::minutes(30);
const PREFIX: &str = "lk_page_";
/// Longest token accepted from a cookie; real ones are 51 characters.
const MAX_TOKEN: usize = 128;

/// Redeems an authorization code of `org_id` for the scope of its end user, or `None`
/// when the code is unknown, used, expired or another organization's.
pub async fn redeem(conn: &impl ConnectionTrait, org_id: OrgId, code: &str) -> Result<Option<UserScope>> {
    Ok(authorization_codes::consume(conn, org_id, code).await?.map(|user_id| UserScope { org_id, user_id }))
}

/// Expired sessions removed per session started, so the table stays the size of the
/// sessions in use without a background task.
const PURGE_BATCH: u64 = 100;

/// Starts a session of `scope` for the page `target`, returning the cookie's token.
pub async fn create(conn: &impl ConnectionTrait, scope: &UserScope, target: &str) -> Result<SecretString> {
    let token = crypto::random_token(PREFIX);
    let now = Utc::now();
    let expired: Vec<uuid::Uuid> = page_session::Entity::find()
        .select_only()
        .column(page_session::Column::Id)
        .filter(page_session::Column::ExpiresAt.lte(now))
        .order_by_asc(page_session::Column::ExpiresAt)
        .limit(PURGE_BATCH)
        .into_tuple()
        .all(conn)
        .await?;
    if !expired.is_empty() {
        page_session::Entity::delete_many().filter(page_session::Column::Id.is_in(expired)).exec(conn).await?;
    }
    page_session::Entity::insert(page_session::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        token_hash: Set(crypto::sha256_hex(token.as_bytes())),
        org_id: Set(scope.org_id.0),
        user_id: Set(scope.user_id.0),
        target: Set(target.to_owned()),
        draft: Set(None),
        expires_at: Set(now + LIFETIME),
        created_at: Set(now),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(token.into())
}

/// Ends every page session of an end user (their tokens were revoked).
pub async fn end_all(conn: &impl ConnectionTrait, org_id: OrgId, user_id: UserId) -> Result<()> {
    page_session::Entity::delete_many()
        .filter(page_session::Column::OrgId.eq(org_id.0))
        .filter(page_session::Column::UserId.eq(user_id.0))
        .exec(conn)
        .await?;
    Ok(())
}

/// A live page session: its row and its end user.
#[derive(Clone, Debug)]
pub struct PageSession {
    pub id: uuid::Uuid,
    pub scope: UserScope,
}

/// The live session of `org_id` opened for exactly `target` whose cookie holds `token`.
pub async fn resolve(
    conn: &impl ConnectionTrait,
    org_id: OrgId,
    token: &str,
    target: &str,
) -> Result<Option<PageSession>> {
    if token.len() > MAX_TOKEN || !token.starts_with(PREFIX) {
        return Ok(None);
    }
    let row = page_session::Entity::find()
        .filter(page_session::Column::TokenHash.eq(crypto::sha256_hex(token.as_bytes())))
        .filter(page_session::Column::OrgId.eq(org_id.0))
        .filter(page_session::Column::Target.eq(target))
        .filter(page_session::Column::ExpiresAt.gt(Utc::now()))
        .one(conn)
        .await?;
    Ok(row.map(|row| PageSession {
        id: row.id,
        scope: UserScope { org_id: OrgId(row.org_id), user_id: UserId(row.user_id) },
    }))
}

/// A session's draft as stored (JSON text), if any. With `lock`, the row stays locked
/// until the transaction ends (PostgreSQL), so the session's saves take turns.
pub async fn draft(conn: &impl ConnectionTrait, session: &PageSession, lock: bool) -> Result<Option<String>> {
    let mut select = page_session::Entity::find_by_id(session.id)
        .filter(page_session::Column::OrgId.eq(session.scope.org_id.0))
        .filter(page_session::Column::UserId.eq(session.scope.user_id.0));
    if lock {
        select = select.lock_exclusive();
    }
    let row = select.one(conn).await?.ok_or(crate::error::Error::NotFound("page session"))?;
    Ok(row.draft)
}

/// Replaces a session's draft.
pub async fn store_draft(conn: &impl ConnectionTrait, session: &PageSession, draft: String) -> Result<()> {
    page_session::Entity::update_many()
        .col_expr(page_session::Column::Draft, sea_orm::sea_query::Expr::value(draft))
        .filter(page_session::Column::Id.eq(session.id))
        .exec(conn)
        .await?;
    Ok(())
}

/// The organization of a live session among `tokens`, whatever page it was opened for:
/// for a page that must say who it speaks for before it knows which session is its own.
pub async fn org_of_any(conn: &impl ConnectionTrait, tokens: &[SecretString]) -> Result<Option<OrgId>> {
    let hashes: Vec<String> = tokens
        .iter()
        .map(ExposeSecret::expose_secret)
        .filter(|token| token.len() <= MAX_TOKEN && token.starts_with(PREFIX))
        .map(|token| crypto::sha256_hex(token.as_bytes()))
        .collect();
    if hashes.is_empty() {
        return Ok(None);
    }
    let org: Option<uuid::Uuid> = page_session::Entity::find()
        .select_only()
        .column(page_session::Column::OrgId)
        .filter(page_session::Column::TokenHash.is_in(hashes))
        .filter(page_session::Column::ExpiresAt.gt(Utc::now()))
        .into_tuple()
        .one(conn)
        .await?;
    Ok(org.map(OrgId))
}

/// The CSRF token of the session whose cookie holds `token`.
pub fn csrf_token(token: &SecretString) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(token.expose_secret().as_bytes()).expect("HMAC takes keys of any length");
    mac.update(b"latchkey/page-csrf/v1");
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Whether `submitted` is the CSRF token of the session whose cookie holds `token`.
pub fn csrf_matches(token: &SecretString, submitted: &str) -> bool {
    csrf_token(token).as_bytes().ct_eq(submitted.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csrf_token_matches_only_its_own_session() {
        let one: SecretString = crypto::random_token(PREFIX).into();
        let other: SecretString = crypto::random_token(PREFIX).into();
        assert!(csrf_matches(&one, &csrf_token(&one)));
        assert!(!csrf_matches(&one, &csrf_token(&other)));
        assert!(!csrf_matches(&one, ""));
    }
}

//! Opening a hosted page: the authorization code is redeemed, the page's target checked
//! against its end user, and the session started, all in one transaction, so a code that
//! opens nothing (a missing or foreign target) stays unused.

use sea_orm::DatabaseConnection;
use secrecy::SecretString;

use super::{audit, catalog, orgs};
use crate::{
    auth::{Caller, UserScope, page_sessions},
    error::{Error, Result},
    ids::{EnvironmentId, OrgId, ServiceId},
};

/// What a page session may show and change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageTarget {
    /// The auth dialog for one service environment.
    CreateAuthentication { service_id: ServiceId, environment_id: EnvironmentId },
}

impl PageTarget {
    /// The canonical form a session is bound to.
    pub fn key(&self) -> String {
        match self {
            PageTarget::CreateAuthentication { service_id, environment_id } => {
                format!("auth.create/{service_id}/{environment_id}")
            }
        }
    }

    /// The target whose [`key`](Self::key) is `key`, for what carries a target by its key
    /// (the OAuth flow's start link and its stored row).
    pub fn from_key(key: &str) -> Option<Self> {
        let parts: Vec<&str> = key.split('/').collect();
        match parts.as_slice() {
            ["auth.create", service_id, environment_id] => Some(PageTarget::CreateAuthentication {
                service_id: ServiceId::parse(service_id).ok()?,
                environment_id: EnvironmentId::parse(environment_id).ok()?,
            }),
            _ => None,
        }
    }
}

/// A page opened: its organization and the token for the session cookie.
pub struct Opened {
    pub org_id: OrgId,
    pub token: SecretString,
}

/// Why a page does not open. `CodeRefused` covers unknown, used, expired and foreign
/// codes alike, so the page tells nothing about codes it did not issue.
#[derive(Debug)]
pub enum OpenError {
    CodeRefused,
    Other(Error),
}

impl From<Error> for OpenError {
    fn from(err: Error) -> Self {
        OpenError::Other(err)
    }
}

impl From<sea_orm::DbErr> for OpenError {
    fn from(err: sea_orm::DbErr) -> Self {
        OpenError::Other(err.into())
    }
}

/// Redeems `code` for a session of the page `target` of the organization `partner`.
pub async fn open(
    db: &DatabaseConnection,
    partner: &str,
    code: &str,
    target: &PageTarget,
) -> std::result::Result<Opened, OpenError> {
    let org = orgs::by_name_or_id(db, partner).await?;
    let txn = crate::db::write(db).await?;
    let scope = page_sessions::redeem(&txn, org.id, code).await?.ok_or(OpenError::CodeRefused)?;
    check_target(&txn, &scope, target).await?;
    let token = page_sessions::create(&txn, &scope, &target.key()).await?;
    audit::record(&txn, org.id, (&scope).into(), "page_session.opened", Some(scope.user_id().0)).await?;
    txn.commit().await?;
    Ok(Opened { org_id: org.id, token })
}

/// As [`resume`], with the session's id, for what is bound to one session (an OAuth flow).
pub async fn resume_session(
    db: &DatabaseConnection,
    partner: &str,
    token: &str,
    target: &PageTarget,
) -> Result<Option<(uuid::Uuid, UserScope)>> {
    let org = orgs::by_name_or_id(db, partner).await?;
    page_sessions::resolve_session(db, org.id, token, &target.key()).await
}

/// The end user of the live session `token` for `target` in the organization `partner`.
pub async fn resume(
    db: &DatabaseConnection,
    partner: &str,
    token: &str,
    target: &PageTarget,
) -> Result<Option<UserScope>> {
    let org = orgs::by_name_or_id(db, partner).await?;
    page_sessions::resolve(db, org.id, token, &target.key()).await
}

/// A target the end user cannot see is `NOT_FOUND`, as a missing one.
async fn check_target(conn: &impl sea_orm::ConnectionTrait, scope: &UserScope, target: &PageTarget) -> Result<()> {
    match target {
        PageTarget::CreateAuthentication { service_id, environment_id } => {
            let environment = catalog::environment(conn, Caller::User(scope), *environment_id).await?;
            if environment.service_id != *service_id {
                return Err(Error::NotFound("service environment"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_found_again_from_its_key_and_nothing_else_is() {
        let target = PageTarget::CreateAuthentication {
            service_id: ServiceId::generate(),
            environment_id: EnvironmentId::generate(),
        };
        assert_eq!(PageTarget::from_key(&target.key()), Some(target.clone()));
        for other in ["", "auth.create", "auth.create/x/y", &format!("{}/extra", target.key()), "other/a/b"] {
            assert_eq!(PageTarget::from_key(other), None, "{other}");
        }
    }
}

//! Who is calling. A request carries at most one bearer token; it resolves to exactly
//! one [`Principal`]. Scopes ([`MasterScope`], [`UserScope`]) can only be made here, and
//! the use cases take them as arguments, so an operation cannot run without the right
//! kind of caller.

pub mod authorization_codes;
pub mod master_tokens;
pub mod page_sessions;
pub mod revocations;
pub mod user_tokens;

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};

use crate::{
    error::{Error, Result},
    ids::{MasterTokenId, OrgId, UserId},
};
pub use revocations::Revocations;
pub use user_tokens::UserTokens;

/// The caller of one request.
#[derive(Clone, Debug)]
pub enum Principal {
    /// No token at all: introspection only; every other field answers `UNAUTHENTICATED`.
    Anonymous,
    Master(MasterScope),
    User(UserScope),
}

/// Proof that the caller presented a valid master token of `org_id`.
#[derive(Clone, Debug)]
pub struct MasterScope {
    org_id: OrgId,
    token_id: MasterTokenId,
}

/// Proof that the caller presented a valid user token of `user_id` in `org_id`.
#[derive(Clone, Debug)]
pub struct UserScope {
    org_id: OrgId,
    user_id: UserId,
}

impl MasterScope {
    pub fn org_id(&self) -> OrgId {
        self.org_id
    }
    pub fn token_id(&self) -> MasterTokenId {
        self.token_id
    }
}

impl UserScope {
    pub fn org_id(&self) -> OrgId {
        self.org_id
    }
    pub fn user_id(&self) -> UserId {
        self.user_id
    }
}

/// An authenticated caller of either kind, for operations both may run (results are
/// scoped to the caller).
#[derive(Clone, Copy, Debug)]
pub enum Caller<'a> {
    Master(&'a MasterScope),
    User(&'a UserScope),
}

impl<'a> From<&'a MasterScope> for Caller<'a> {
    fn from(scope: &'a MasterScope) -> Self {
        Caller::Master(scope)
    }
}

impl<'a> From<&'a UserScope> for Caller<'a> {
    fn from(scope: &'a UserScope) -> Self {
        Caller::User(scope)
    }
}

impl Caller<'_> {
    pub fn org_id(&self) -> OrgId {
        match self {
            Caller::Master(scope) => scope.org_id,
            Caller::User(scope) => scope.org_id,
        }
    }
}

/// Which kind of token a field or endpoint takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Master,
    User,
    MasterOrUser,
}

impl Access {
    /// The name `schema.graphql` shows in `@access(token: ...)`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Master => "MASTER",
            Access::User => "USER",
            Access::MasterOrUser => "MASTER_OR_USER",
        }
    }
}

impl Principal {
    /// How the caller is described in logs, without any identifier.
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::Master(_) => "master",
            Principal::User(_) => "user",
        }
    }

    /// Refuses a caller the access rule does not admit.
    pub fn check(&self, access: Access) -> Result<()> {
        match (access, self) {
            (_, Principal::Anonymous) => Err(Error::Unauthenticated),
            (Access::Master, Principal::User(_)) => Err(Error::Forbidden("this operation needs the master token")),
            (Access::User, Principal::Master(_)) => Err(Error::Forbidden("this operation needs a user token")),
            _ => Ok(()),
        }
    }

    pub fn master(&self) -> Result<&MasterScope> {
        self.check(Access::Master)?;
        match self {
            Principal::Master(scope) => Ok(scope),
            _ => Err(Error::Forbidden("this operation needs the master token")),
        }
    }

    pub fn user(&self) -> Result<&UserScope> {
        self.check(Access::User)?;
        match self {
            Principal::User(scope) => Ok(scope),
            _ => Err(Error::Forbidden("this operation needs a user token")),
        }
    }

    /// The caller, of either kind; refuses the anonymous.
    pub fn caller(&self) -> Result<Caller<'_>> {
        match self {
            Principal::Anonymous => Err(Error::Unauthenticated),
            Principal::Master(scope) => Ok(Caller::Master(scope)),
            Principal::User(scope) => Ok(Caller::User(scope)),
        }
    }

    pub fn org_id(&self) -> Result<OrgId> {
        match self {
            Principal::Anonymous => Err(Error::Unauthenticated),
            Principal::Master(scope) => Ok(scope.org_id),
            Principal::User(scope) => Ok(scope.org_id),
        }
    }
}

/// Resolves bearer tokens to principals. What it reads from the database about a token
/// is kept under the revocation epoch ([`revocations`]), so a token seen before costs no
/// database round trip until something is revoked.
#[derive(Clone)]
pub struct Authenticator {
    db: DatabaseConnection,
    user_tokens: UserTokens,
    revocations: Revocations,
}

impl Authenticator {
    pub fn new(db: DatabaseConnection, user_tokens: UserTokens, revocations: Revocations) -> Self {
        Self { db, user_tokens, revocations }
    }

    /// Resolves the value of an `Authorization` header: no header is the anonymous
    /// caller; a header that does not hold a valid token is refused with
    /// [`Error::Unauthenticated`] (the reason goes to the debug log, never the token).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal> {
        let Some(header) = authorization else {
            return Ok(Principal::Anonymous);
        };
        let Some(token) = bearer_token(header) else {
            tracing::debug!("authorization header is not a bearer token");
            return Err(Error::Unauthenticated);
        };
        if token.starts_with(master_tokens::PREFIX) {
            return match self.master(token).await? {
                Some(scope) => Ok(Principal::Master(scope)),
                None => {
                    tracing::debug!("master token refused");
                    Err(Error::Unauthenticated)
                }
            };
        }
        let claims = self.user_tokens.verify(token).map_err(|reason| {
            tracing::debug!(%reason, "user token refused");
            Error::Unauthenticated
        })?;
        // A user token is only as good as its user: removal or revocation bumps or
        // deletes the row, which invalidates every token minted before at once.
        if self.user_version(claims.org_id, claims.user_id).await? != Some(claims.version) {
            tracing::debug!("user token refused: user removed or tokens revoked");
            return Err(Error::Unauthenticated);
        }
        Ok(Principal::User(UserScope { org_id: claims.org_id, user_id: claims.user_id }))
    }

    async fn master(&self, token: &str) -> Result<Option<MasterScope>> {
        let hash = master_tokens::token_hash(token);
        if let Some(scope) = self.revocations.master(&hash) {
            return Ok(Some(scope));
        }
        let ticket = self.revocations.ticket();
        let scope = master_tokens::verify(&self.db, token, &hash).await?;
        if let Some(scope) = &scope {
            self.revocations.remember_master(ticket, hash, scope.clone());
        }
        Ok(scope)
    }

    /// The user's current token version; `None` once the user is gone. A user id is
    /// unique across organizations, and the organization is checked on every read.
    async fn user_version(&self, org_id: OrgId, user_id: UserId) -> Result<Option<i64>> {
        if let Some(version) = self.revocations.user_version(org_id, user_id) {
            return Ok(Some(version));
        }
        let ticket = self.revocations.ticket();
        let version: Option<i64> = entity::external_user::Entity::find()
            .select_only()
            .column(entity::external_user::Column::TokenVersion)
            .filter(entity::external_user::Column::Id.eq(user_id.0))
            .filter(entity::external_user::Column::OrgId.eq(org_id.0))
            .into_tuple()
            .one(&self.db)
            .await?;
        if let Some(version) = version {
            self.revocations.remember_user_version(ticket, org_id, user_id, version);
        }
        Ok(version)
    }
}

fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bearer_headers_carry_a_token() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        #[test]
        fn bearer_in_any_case_then_a_token_carries_exactly_that_token(
            scheme in "[bB][eE][aA][rR][eE][rR]",
            token in "[!-~]{1,64}",
            (before, between, after) in ("[ \t]{0,2}", " [ \t]{0,2}", "[ \t\r\n]{0,2}"),
        ) {
            let header = format!("{before}{scheme}{between}{token}{after}");
            proptest::prop_assert_eq!(bearer_token(&header), Some(token.as_str()));
        }

        #[test]
        fn any_header_gives_a_trimmed_token_from_a_bearer_header_or_none(
            header in proptest::prop_oneof![
                proptest::prelude::any::<String>(),
                proptest::prelude::any::<String>().prop_map(|rest| format!("Bearer{rest}")),
            ],
        ) {
            if let Some(token) = bearer_token(&header) {
                proptest::prop_assert!(!token.is_empty() && token == token.trim() && header.contains(token));
                let scheme = header.trim_start().get(..7).map(str::to_ascii_lowercase);
                proptest::prop_assert_eq!(scheme.as_deref(), Some("bearer "));
            }
        }
    }

    #[test]
    fn master_and_user_scopes_never_stand_in_for_each_other() {
        let master = Principal::Master(MasterScope { org_id: OrgId::generate(), token_id: MasterTokenId::generate() });
        let user = Principal::User(UserScope { org_id: OrgId::generate(), user_id: UserId::generate() });
        assert!(matches!(master.user(), Err(Error::Forbidden(_))));
        assert!(matches!(user.master(), Err(Error::Forbidden(_))));
        assert!(matches!(Principal::Anonymous.master(), Err(Error::Unauthenticated)));
        assert!(matches!(Principal::Anonymous.check(Access::MasterOrUser), Err(Error::Unauthenticated)));
        assert!(master.check(Access::MasterOrUser).is_ok() && user.check(Access::MasterOrUser).is_ok());
    }
}

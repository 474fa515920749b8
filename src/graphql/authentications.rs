//! Authentications: `viewer.authentications`, `createUserAuthentication`,
//! `removeAuthentication`, and (ext) `authentication`, `updateUserAuthentication`,
//! `refreshAuthentication` and `authenticationCredentials`, the one GraphQL path by which
//! secrets leave.

use std::sync::Arc;

use async_graphql::{ComplexObject, Context, Enum, ID, InputObject, Object, Result, SimpleObject};

use super::{
    catalog::{Service, ServiceEnvironment},
    connection::{AuthenticationConnectionName, AuthenticationEdgeName, NamedConnection, from_page},
    guard::{Token, access},
    idempotency, page_request, principal,
    scalars::{DateTime, Json},
    services, unscoped_db,
};
use crate::{
    auth::Access,
    domain::{
        authentications::{self, Criteria, NewAuthentication, Replacement},
        catalog,
        expiry::Status,
        refresh::Outcome,
    },
    ids::{AuthenticationId, EnvironmentId, ServiceId, UserId},
};

/// An imported authentication's metadata. Never holds a secret.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Authentication {
    pub id: ID,
    pub name: String,
    /// Non-secret metadata given at import (a JSON object); never `null` in latchkey.
    pub custom_fields: Option<Json>,
    /// Shared by the authentications of a page; converted only when asked for.
    #[graphql(skip)]
    pub service: Arc<catalog::Service>,
    #[graphql(skip)]
    pub environment: Arc<catalog::Environment>,
    pub scopes: Vec<String>,
    pub hidden: bool,
    /// (ext) The owning end user; `null` for the organization's own.
    pub owner_id: Option<ID>,
    pub created: DateTime,
    pub updated: DateTime,
    /// (ext) Whether the credential is usable, or why not.
    pub status: AuthenticationStatus,
    /// (ext) When the access token expires; `null` when latchkey does not know (or it
    /// does not expire).
    pub expires_at: Option<DateTime>,
}

/// (ext) An authentication's status.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum AuthenticationStatus {
    /// Usable: unexpired, or renewed the next time it is read.
    Active,
    /// The provider refused to renew it; nothing retries until it is replaced or reconnected.
    RefreshFailed,
    /// Its access token has expired and latchkey cannot renew it now.
    Expired,
    /// The provider no longer accepts the client id and secret it holds.
    Revoked,
}

impl From<Status> for AuthenticationStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Active => AuthenticationStatus::Active,
            Status::RefreshFailed => AuthenticationStatus::RefreshFailed,
            Status::Expired => AuthenticationStatus::Expired,
            Status::Revoked => AuthenticationStatus::Revoked,
        }
    }
}

impl From<authentications::Authentication> for Authentication {
    fn from(authentication: authentications::Authentication) -> Self {
        Self {
            id: ID(authentication.id.to_string()),
            name: authentication.name,
            custom_fields: Some(Json::from(authentication.custom_fields)),
            service: authentication.service,
            environment: authentication.environment,
            scopes: authentication.scopes,
            hidden: authentication.hidden,
            owner_id: authentication.owner.map(|owner| ID(owner.to_string())),
            created: DateTime(authentication.created_at),
            updated: DateTime(authentication.updated_at),
            status: authentication.status.into(),
            expires_at: authentication.expires_at.map(DateTime),
        }
    }
}

#[ComplexObject]
impl Authentication {
    async fn service(&self) -> Service {
        Service::from(catalog::Service::clone(&self.service))
    }

    async fn service_environment(&self) -> ServiceEnvironment {
        ServiceEnvironment::from(catalog::Environment::clone(&self.environment))
    }
}

pub type AuthenticationConnection =
    NamedConnection<Authentication, AuthenticationConnectionName, AuthenticationEdgeName>;

/// (ext) Filters for `viewer.authentications`.
#[derive(InputObject, Default)]
pub struct AuthenticationSearchCriteria {
    /// Master token only: list this end user's authentications instead of the organization's own.
    pub owner_id: Option<ID>,
    pub service_id: Option<ID>,
}

/// The secrets of an authentication, for its owning end user.
#[derive(SimpleObject)]
pub struct AuthenticationCredentials {
    pub authentication_id: ID,
    /// The credentials.
    pub data: Json,
    /// The user data.
    pub form_data: Json,
}

#[derive(InputObject)]
pub struct CreateUserAuthenticationInput {
    pub name: String,
    pub service_id: String,
    pub service_environment_id: String,
    /// The credentials (tokens, keys, secrets), checked against the environment's `credentialsSchema`.
    #[graphql(secret)]
    pub data: Json,
    /// Non-secret user data (subdomain, region), checked against the environment's `userDataSchema`.
    #[graphql(secret)]
    pub form_data: Option<Json>,
    pub scopes: Option<Vec<String>>,
    pub hidden: Option<bool>,
    /// (ext) Non-secret metadata, a JSON object, shown in metadata reads.
    pub custom_fields: Option<Json>,
    pub client_mutation_id: Option<String>,
}

#[derive(SimpleObject)]
pub struct CreateUserAuthenticationPayload {
    pub authentication_id: String,
    pub client_mutation_id: Option<String>,
}

/// (ext) A full replacement: the environment stays; what is not given is reset.
#[derive(InputObject)]
pub struct UpdateUserAuthenticationInput {
    pub authentication_id: ID,
    pub name: String,
    #[graphql(secret)]
    pub data: Json,
    #[graphql(secret)]
    pub form_data: Option<Json>,
    pub scopes: Option<Vec<String>>,
    pub custom_fields: Option<Json>,
    pub client_mutation_id: Option<String>,
}

#[derive(SimpleObject)]
pub struct UpdateUserAuthenticationPayload {
    pub authentication: Authentication,
    pub client_mutation_id: Option<String>,
}

/// (ext) Which authentication to refresh now.
#[derive(InputObject)]
pub struct RefreshAuthenticationInput {
    pub authentication_id: ID,
    pub client_mutation_id: Option<String>,
}

/// (ext) What a forced refresh came to.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// A new access token is stored (by this call, or by a refresh of the same credential
    /// that was already running).
    Refreshed,
    /// latchkey has nothing to renew this authentication with (no refresh token, no OAuth
    /// app, not OAuth at all); nothing changed.
    NotRefreshable,
    /// The provider could not be reached; the credential is kept and retried later.
    Unavailable,
    /// The provider refused (`error` says how); nothing retries until it is replaced.
    Refused,
    /// The call could not be made, or its answer could not be used; retried later.
    Failed,
    /// Another refresh of this credential was still running when the wait ended.
    Pending,
}

#[derive(SimpleObject)]
pub struct RefreshAuthenticationPayload {
    /// The authentication after the refresh: `status`, `expiresAt`, `updated`.
    pub authentication: Authentication,
    pub outcome: RefreshOutcome,
    /// The provider's OAuth error code when it refused (`invalid_grant`, ...).
    pub error: Option<String>,
    pub client_mutation_id: Option<String>,
}

#[derive(InputObject)]
pub struct RemoveUserAuthenticationInput {
    pub authentication_id: ID,
    pub client_mutation_id: Option<String>,
}

client_mutation_id_payload!(RemoveUserAuthenticationPayload);

#[derive(Default)]
pub struct ViewerAuthentications;

#[Object]
impl ViewerAuthentications {
    /// A user token lists the end user's own; the master token the organization's own
    /// (or, with `criteria.ownerId`, an end user's).
    #[graphql(guard = "Access::MasterOrUser", directive = access::apply(Token::MasterOrUser), complexity = "crate::graphql::connection::page_complexity(first, last, child_complexity)")]
    async fn authentications(
        &self,
        ctx: &Context<'_>,
        criteria: Option<AuthenticationSearchCriteria>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<AuthenticationConnection> {
        let caller = principal(ctx).caller()?;
        let page = page_request(first, after, last, before)?;
        let criteria = criteria.unwrap_or_default();
        let criteria = Criteria {
            owner: criteria.owner_id.as_deref().map(|id| UserId::parse(id)).transpose()?,
            service_id: criteria.service_id.as_deref().map(|id| ServiceId::parse(id)).transpose()?,
        };
        let page = authentications::list(unscoped_db(ctx), caller, criteria, &page).await?;
        Ok(from_page(page, |authentication| authentication.id.0, Authentication::from))
    }
}

#[derive(Default)]
pub struct AuthenticationsQuery;

#[Object]
impl AuthenticationsQuery {
    /// (ext) One authentication's metadata: the master token's organization, or the owning end user.
    #[graphql(guard = "Access::MasterOrUser", directive = access::apply(Token::MasterOrUser))]
    async fn authentication(&self, ctx: &Context<'_>, id: ID) -> Result<Authentication> {
        let caller = principal(ctx).caller()?;
        Ok(authentications::get(unscoped_db(ctx), caller, AuthenticationId::parse(&id)?).await?.into())
    }

    /// (ext) The credentials and user data, for the owning end user only, where the
    /// organization has enabled full reads. Audited.
    #[graphql(guard = "Access::User", directive = access::apply(Token::User))]
    async fn authentication_credentials(&self, ctx: &Context<'_>, id: ID) -> Result<AuthenticationCredentials> {
        let scope = principal(ctx).user()?;
        let full = authentications::read_full(
            unscoped_db(ctx),
            services(ctx).keyring_handle(),
            services(ctx).refresher(),
            scope,
            AuthenticationId::parse(&id)?,
        )
        .await?;
        Ok(AuthenticationCredentials {
            authentication_id: ID(full.authentication.id.to_string()),
            data: Json::from(full.credentials.expose().clone()),
            form_data: Json::from(full.user_data.expose().clone()),
        })
    }
}

#[derive(Default)]
pub struct AuthenticationsMutation;

#[Object]
impl AuthenticationsMutation {
    /// Imports a credential: the end user's own with a user token, the organization's own
    /// with the master token. Validated against the environment's schemas, then sealed.
    #[graphql(guard = "Access::MasterOrUser", directive = access::apply(Token::MasterOrUser))]
    async fn create_user_authentication(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] input: CreateUserAuthenticationInput,
    ) -> Result<CreateUserAuthenticationPayload> {
        let caller = principal(ctx).caller()?;
        let new = NewAuthentication {
            name: input.name,
            service_id: Some(ServiceId::parse(&input.service_id)?),
            environment_id: EnvironmentId::parse(&input.service_environment_id)?,
            credentials: input.data.into_value(),
            user_data: input.form_data.map(Json::into_value),
            scopes: input.scopes,
            hidden: input.hidden,
            custom_fields: input.custom_fields.map(Json::into_value),
        };
        let created = authentications::create(
            unscoped_db(ctx),
            &services(ctx).keyring(),
            timing(ctx),
            caller,
            new,
            idempotency(ctx),
        )
        .await?;
        Ok(CreateUserAuthenticationPayload {
            authentication_id: created.id.to_string(),
            client_mutation_id: input.client_mutation_id,
        })
    }

    /// (ext) Replaces an authentication's name, credentials, user data and scopes.
    #[graphql(guard = "Access::MasterOrUser", directive = access::apply(Token::MasterOrUser))]
    async fn update_user_authentication(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] input: UpdateUserAuthenticationInput,
    ) -> Result<UpdateUserAuthenticationPayload> {
        let caller = principal(ctx).caller()?;
        let replacement = Replacement {
            name: input.name,
            credentials: input.data.into_value(),
            user_data: input.form_data.map(Json::into_value),
            scopes: input.scopes,
            custom_fields: input.custom_fields.map(Json::into_value),
        };
        let id = AuthenticationId::parse(&input.authentication_id)?;
        let updated =
            authentications::replace(unscoped_db(ctx), &services(ctx).keyring(), timing(ctx), caller, id, replacement)
                .await?;
        Ok(UpdateUserAuthenticationPayload {
            authentication: updated.into(),
            client_mutation_id: input.client_mutation_id,
        })
    }

    /// (ext) Refreshes an OAuth 2.0 authentication now, whatever its expiry: with its
    /// refresh token, or for client credentials by minting a new token. Also tries again
    /// after a refusal (a fixed OAuth app, say). The master token's organization or the
    /// owning end user.
    #[graphql(guard = "Access::MasterOrUser", directive = access::apply(Token::MasterOrUser))]
    async fn refresh_authentication(
        &self,
        ctx: &Context<'_>,
        input: RefreshAuthenticationInput,
    ) -> Result<RefreshAuthenticationPayload> {
        let caller = principal(ctx).caller()?;
        let id = AuthenticationId::parse(&input.authentication_id)?;
        let (authentication, outcome) =
            authentications::refresh(unscoped_db(ctx), services(ctx).refresher(), caller, id).await?;
        let (outcome, error) = match outcome {
            Outcome::Refreshed => (RefreshOutcome::Refreshed, None),
            Outcome::NotRefreshable => (RefreshOutcome::NotRefreshable, None),
            Outcome::Unavailable => (RefreshOutcome::Unavailable, None),
            Outcome::Refused(error) => (RefreshOutcome::Refused, Some(error)),
            Outcome::Failed => (RefreshOutcome::Failed, None),
            Outcome::Pending => (RefreshOutcome::Pending, None),
        };
        Ok(RefreshAuthenticationPayload {
            authentication: authentication.into(),
            outcome,
            error,
            client_mutation_id: input.client_mutation_id,
        })
    }

    /// Removes an authentication: the end user's own, or any of the organization's with the master token.
    #[graphql(guard = "Access::MasterOrUser", directive = access::apply(Token::MasterOrUser))]
    async fn remove_authentication(
        &self,
        ctx: &Context<'_>,
        input: RemoveUserAuthenticationInput,
    ) -> Result<RemoveUserAuthenticationPayload> {
        let caller = principal(ctx).caller()?;
        authentications::remove(unscoped_db(ctx), caller, AuthenticationId::parse(&input.authentication_id)?).await?;
        Ok(RemoveUserAuthenticationPayload { client_mutation_id: input.client_mutation_id })
    }
}

fn timing(ctx: &Context<'_>) -> crate::domain::expiry::Timing {
    services(ctx).refresher().timing()
}

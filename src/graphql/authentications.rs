//! Authentications: `viewer.authentications`, `createUserAuthentication`,
//! `removeAuthentication`, and (ext) `authentication`, `updateUserAuthentication` and
//! `authenticationCredentials`, the one GraphQL path by which secrets leave.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};

use super::{
    catalog::{Service, ServiceEnvironment},
    connection::{AuthenticationConnectionName, AuthenticationEdgeName, NamedConnection, from_page},
    db,
    guard::{Token, access},
    idempotency, page_request, principal,
    scalars::{DateTime, Json},
    services,
};
use crate::{
    auth::Access,
    domain::authentications::{self, Criteria, NewAuthentication, Replacement},
    ids::{AuthenticationId, EnvironmentId, ServiceId, UserId},
};

/// An imported authentication's metadata. Never holds a secret.
#[derive(SimpleObject)]
pub struct Authentication {
    pub id: ID,
    pub name: String,
    /// Non-secret metadata given at import (a JSON object); never `null` in latchkey.
    pub custom_fields: Option<Json>,
    pub service: Service,
    pub service_environment: ServiceEnvironment,
    pub scopes: Vec<String>,
    pub hidden: bool,
    /// (ext) The owning end user; `null` for the organization's own.
    pub owner_id: Option<ID>,
    pub created: DateTime,
    pub updated: DateTime,
}

impl From<authentications::Authentication> for Authentication {
    fn from(authentication: authentications::Authentication) -> Self {
        Self {
            id: ID(authentication.id.to_string()),
            name: authentication.name,
            custom_fields: Some(Json::from(authentication.custom_fields)),
            service: authentication.service.into(),
            service_environment: authentication.environment.into(),
            scopes: authentication.scopes,
            hidden: authentication.hidden,
            owner_id: authentication.owner.map(|owner| ID(owner.to_string())),
            created: DateTime(authentication.created_at),
            updated: DateTime(authentication.updated_at),
        }
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
        let page = authentications::list(db(ctx), caller, criteria, &page).await?;
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
        Ok(authentications::get(db(ctx), caller, AuthenticationId::parse(&id)?).await?.into())
    }

    /// (ext) The credentials and user data, for the owning end user only, where the
    /// organization has enabled full reads. Audited.
    #[graphql(guard = "Access::User", directive = access::apply(Token::User))]
    async fn authentication_credentials(&self, ctx: &Context<'_>, id: ID) -> Result<AuthenticationCredentials> {
        let scope = principal(ctx).user()?;
        let full =
            authentications::read_full(db(ctx), services(ctx).keyring_handle(), scope, AuthenticationId::parse(&id)?)
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
        let created = authentications::create(db(ctx), &services(ctx).keyring(), caller, new, idempotency(ctx)).await?;
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
        let updated = authentications::replace(db(ctx), &services(ctx).keyring(), caller, id, replacement).await?;
        Ok(UpdateUserAuthenticationPayload {
            authentication: updated.into(),
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
        authentications::remove(db(ctx), caller, AuthenticationId::parse(&input.authentication_id)?).await?;
        Ok(RemoveUserAuthenticationPayload { client_mutation_id: input.client_mutation_id })
    }
}

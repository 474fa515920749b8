//! End users: `users`, `createExternalUser`, `updateExternalUser`, `removeExternalUser`,
//! `authorize`, `generateAuthorizationCode`, and `revokeUserTokens` (ext).

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use secrecy::ExposeSecret;

use super::{
    connection::{NamedConnection, UserConnectionName, UserEdgeName, from_page},
    guard::{Token, access},
    idempotency, page_request, principal,
    scalars::DateTime,
    services, unscoped_db,
};
use crate::{
    auth::Access,
    domain::users::{self, NewUser, UserCriteria, UserPatch},
    ids::UserId,
};

/// An end user of the organization.
#[derive(SimpleObject)]
#[graphql(name = "ExternalUser")]
pub struct ExternalUser {
    pub id: ID,
    pub name: String,
    /// Never `null` in latchkey; nullable as published.
    pub external_user_id: Option<String>,
    pub is_test_user: bool,
    /// When the user was created (ext).
    pub created: DateTime,
}

impl From<users::ExternalUser> for ExternalUser {
    fn from(user: users::ExternalUser) -> Self {
        Self {
            id: ID(user.id.to_string()),
            name: user.name,
            external_user_id: Some(user.external_user_id),
            is_test_user: user.is_test_user,
            created: DateTime(user.created_at),
        }
    }
}

pub type UserConnection = NamedConnection<ExternalUser, UserConnectionName, UserEdgeName>;

#[derive(InputObject, Default)]
pub struct UserSearchCriteria {
    pub user_id: Option<String>,
    pub external_user_id: Option<String>,
    pub name: Option<String>,
    pub is_test_user: Option<bool>,
}

#[derive(InputObject)]
pub struct CreateExternalUserInput {
    pub name: String,
    pub external_user_id: String,
    pub is_test_user: Option<bool>,
    pub client_mutation_id: Option<String>,
}

#[derive(SimpleObject)]
pub struct CreateExternalUserPayload {
    pub user_id: ID,
    pub client_mutation_id: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateExternalUserInput {
    pub user_id: ID,
    pub name: Option<String>,
    pub is_test_user: Option<bool>,
    pub client_mutation_id: Option<String>,
}

#[derive(SimpleObject)]
pub struct UpdateExternalUserPayload {
    pub user: ExternalUser,
    pub client_mutation_id: Option<String>,
}

/// Input of the mutations that act on one user: remove, authorize, authorization code,
/// token revocation. Each keeps the contract's own input type name.
macro_rules! user_id_input {
    ($name:ident) => {
        #[derive(InputObject)]
        pub struct $name {
            pub user_id: ID,
            pub client_mutation_id: Option<String>,
        }
    };
}
user_id_input!(RemoveExternalUserInput);
user_id_input!(AuthorizeInput);
user_id_input!(GenerateAuthorizationCodeInput);
user_id_input!(RevokeUserTokensInput);

client_mutation_id_payload!(RemoveExternalUserPayload);
client_mutation_id_payload!(RevokeUserTokensPayload);

#[derive(SimpleObject)]
pub struct AuthorizePayload {
    /// A user token, valid for two days.
    pub access_token: String,
    pub client_mutation_id: Option<String>,
}

#[derive(SimpleObject)]
pub struct GenerateAuthorizationCodePayload {
    /// Single use, valid for five minutes.
    pub authorization_code: String,
    pub client_mutation_id: Option<String>,
}

#[derive(Default)]
pub struct UsersQuery;

#[Object]
impl UsersQuery {
    /// The organization's end users.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master), complexity = "crate::graphql::connection::page_complexity(first, last, child_complexity)")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        criteria: Option<UserSearchCriteria>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<UserConnection> {
        let scope = principal(ctx).master()?;
        let page = page_request(first, after, last, before)?;
        let criteria = criteria.unwrap_or_default();
        let criteria = UserCriteria {
            user_id: criteria.user_id.as_deref().map(UserId::parse).transpose()?,
            external_user_id: criteria.external_user_id,
            name: criteria.name,
            is_test_user: criteria.is_test_user,
        };
        let page = users::list(unscoped_db(ctx), scope, criteria, &page).await?;
        Ok(from_page(page, |user| user.id.0, ExternalUser::from))
    }
}

#[derive(Default)]
pub struct UsersMutation;

#[Object]
impl UsersMutation {
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn create_external_user(
        &self,
        ctx: &Context<'_>,
        input: CreateExternalUserInput,
    ) -> Result<CreateExternalUserPayload> {
        let scope = principal(ctx).master()?;
        let new = NewUser {
            name: input.name,
            external_user_id: input.external_user_id,
            is_test_user: input.is_test_user.unwrap_or(false),
        };
        let user = users::create(unscoped_db(ctx), scope, new, idempotency(ctx)).await?;
        Ok(CreateExternalUserPayload { user_id: ID(user.id.to_string()), client_mutation_id: input.client_mutation_id })
    }

    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn update_external_user(
        &self,
        ctx: &Context<'_>,
        input: UpdateExternalUserInput,
    ) -> Result<UpdateExternalUserPayload> {
        let scope = principal(ctx).master()?;
        let user_id = UserId::parse(&input.user_id)?;
        let patch = UserPatch { name: input.name, is_test_user: input.is_test_user };
        let user = users::update(unscoped_db(ctx), scope, user_id, patch).await?;
        Ok(UpdateExternalUserPayload { user: user.into(), client_mutation_id: input.client_mutation_id })
    }

    /// Removes the user with everything that is theirs, and invalidates their user tokens.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn remove_external_user(
        &self,
        ctx: &Context<'_>,
        input: RemoveExternalUserInput,
    ) -> Result<RemoveExternalUserPayload> {
        let scope = principal(ctx).master()?;
        users::remove(unscoped_db(ctx), services(ctx).revocations(), scope, UserId::parse(&input.user_id)?).await?;
        Ok(RemoveExternalUserPayload { client_mutation_id: input.client_mutation_id })
    }

    /// Mints a user token for the end user.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn authorize(&self, ctx: &Context<'_>, input: AuthorizeInput) -> Result<AuthorizePayload> {
        let scope = principal(ctx).master()?;
        let minted =
            users::authorize(unscoped_db(ctx), services(ctx).user_tokens(), scope, UserId::parse(&input.user_id)?)
                .await?;
        Ok(AuthorizePayload {
            access_token: minted.token.expose_secret().to_owned(),
            client_mutation_id: input.client_mutation_id,
        })
    }

    /// Issues a single-use authorization code for hosted pages.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn generate_authorization_code(
        &self,
        ctx: &Context<'_>,
        input: GenerateAuthorizationCodeInput,
    ) -> Result<GenerateAuthorizationCodePayload> {
        let scope = principal(ctx).master()?;
        let code = users::generate_authorization_code(unscoped_db(ctx), scope, UserId::parse(&input.user_id)?).await?;
        Ok(GenerateAuthorizationCodePayload {
            authorization_code: code.expose_secret().to_owned(),
            client_mutation_id: input.client_mutation_id,
        })
    }

    /// (ext) Invalidates every user token of the end user minted so far, keeping the user.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn revoke_user_tokens(
        &self,
        ctx: &Context<'_>,
        input: RevokeUserTokensInput,
    ) -> Result<RevokeUserTokensPayload> {
        let scope = principal(ctx).master()?;
        users::revoke_tokens(unscoped_db(ctx), services(ctx).revocations(), scope, UserId::parse(&input.user_id)?)
            .await?;
        Ok(RevokeUserTokensPayload { client_mutation_id: input.client_mutation_id })
    }
}

//! The service catalog: `services`, `serviceEnvironments` (ext), and the master token's
//! mutations for custom services and environments (ext).

use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use secrecy::SecretString;

use super::{
    connection::{NamedConnection, ServiceConnectionName, ServiceEdgeName, from_page},
    db,
    guard::{Token, access},
    idempotency, page_request, principal,
    scalars::Json,
    services,
};
use crate::{
    auth::Access,
    domain::catalog::{self, AuthenticationType as DomainType},
    error::Error,
    ids::{EnvironmentId, ServiceId},
};

/// How an environment authenticates.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "DomainType")]
pub enum AuthenticationType {
    #[graphql(name = "token")]
    Token,
    #[graphql(name = "oauth1")]
    Oauth1,
    #[graphql(name = "oauth2")]
    Oauth2,
    #[graphql(name = "oauth2password")]
    Oauth2password,
    #[graphql(name = "oauth2client_credentials")]
    Oauth2clientCredentials,
    #[graphql(name = "builtin")]
    Builtin,
}

#[derive(SimpleObject)]
pub struct Service {
    pub id: ID,
    pub name: String,
    /// The service version, as a string.
    pub version: String,
    pub title: String,
    /// An image URL (a `data:` URL for built-in services); custom services without one get a default.
    pub icon: String,
    pub description: Option<String>,
    /// Whether the service ships with latchkey (read-only) rather than being the organization's own.
    pub builtin: bool,
}

impl From<catalog::Service> for Service {
    fn from(service: catalog::Service) -> Self {
        Self {
            id: ID(service.id.to_string()),
            name: service.name,
            version: service.version.to_string(),
            title: service.title,
            icon: service.icon,
            description: service.description,
            builtin: service.builtin,
        }
    }
}

#[derive(SimpleObject, InputObject)]
#[graphql(input_name = "ServiceEnvironmentScopeInput")]
pub struct ServiceEnvironmentScope {
    pub scope: String,
    #[graphql(default)]
    pub description: String,
}

/// An organization's OAuth app; its client secret is never returned.
#[derive(SimpleObject)]
pub struct OAuthApp {
    pub client_id: String,
    pub authorize_url: String,
    pub token_url: String,
}

#[derive(SimpleObject)]
pub struct ServiceEnvironment {
    pub id: ID,
    /// The same as `title`.
    #[graphql(deprecation = "Use `title`.")]
    pub name: String,
    pub title: String,
    pub service_id: ID,
    pub authentication_type: AuthenticationType,
    /// JSON Schema of an authentication's `data` (credentials).
    pub credentials_schema: Json,
    /// JSON Schema of an authentication's `formData` (user data).
    pub user_data_schema: Json,
    pub scopes: Vec<ServiceEnvironmentScope>,
    pub oauth_app: Option<OAuthApp>,
    pub builtin: bool,
}

impl From<catalog::Environment> for ServiceEnvironment {
    fn from(environment: catalog::Environment) -> Self {
        Self {
            id: ID(environment.id.to_string()),
            name: environment.title.clone(),
            title: environment.title,
            service_id: ID(environment.service_id.to_string()),
            authentication_type: environment.authentication_type.into(),
            credentials_schema: Json::from(environment.credentials_schema),
            user_data_schema: Json::from(environment.user_data_schema),
            scopes: environment
                .scopes
                .into_iter()
                .map(|s| ServiceEnvironmentScope { scope: s.scope, description: s.description })
                .collect(),
            oauth_app: environment.oauth_app.map(|app| OAuthApp {
                client_id: app.client_id,
                authorize_url: app.authorize_url,
                token_url: app.token_url,
            }),
            builtin: environment.builtin,
        }
    }
}

fn domain_scopes(scopes: Option<Vec<ServiceEnvironmentScope>>) -> Option<Vec<catalog::Scope>> {
    scopes.map(|scopes| {
        scopes.into_iter().map(|s| catalog::Scope { scope: s.scope, description: s.description }).collect()
    })
}

fn parse_version(version: &str) -> Result<i32, Error> {
    version.trim().parse().map_err(|_| Error::bad_input("serviceVersion must be a whole number"))
}

pub type ServiceConnection = NamedConnection<Service, ServiceConnectionName, ServiceEdgeName>;

#[derive(InputObject)]
pub struct CreateServiceInput {
    /// Lowercase identifier, unique with its version among built-in and own services.
    pub name: String,
    pub version: Option<i32>,
    pub title: String,
    pub description: Option<String>,
    pub icon: Option<String>,
    pub client_mutation_id: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateServiceInput {
    pub service_id: ID,
    pub title: Option<String>,
    pub description: Option<String>,
    pub icon: Option<String>,
    pub client_mutation_id: Option<String>,
}

#[derive(InputObject)]
pub struct RemoveServiceInput {
    pub service_id: ID,
    pub client_mutation_id: Option<String>,
}

/// The payload of a mutation that answers with the service.
macro_rules! service_payload {
    ($name:ident) => {
        #[derive(SimpleObject)]
        pub struct $name {
            pub service: Service,
            pub client_mutation_id: Option<String>,
        }
    };
}
service_payload!(CreateServicePayload);
service_payload!(UpdateServicePayload);

/// An OAuth app's settings; the client secret is sealed at rest and never returned.
#[derive(InputObject)]
pub struct OAuthAppInput {
    pub client_id: String,
    #[graphql(secret)]
    pub client_secret: String,
    pub authorize_url: String,
    pub token_url: String,
}

impl From<OAuthAppInput> for catalog::OAuthAppInput {
    fn from(app: OAuthAppInput) -> Self {
        Self {
            client_id: app.client_id,
            client_secret: SecretString::from(app.client_secret),
            authorize_url: app.authorize_url,
            token_url: app.token_url,
        }
    }
}

#[derive(InputObject)]
pub struct CreateServiceEnvironmentInput {
    pub service_id: ID,
    pub title: String,
    pub authentication_type: AuthenticationType,
    /// Defaults to the service's `Production` environment's schema.
    pub credentials_schema: Option<Json>,
    pub user_data_schema: Option<Json>,
    pub scopes: Option<Vec<ServiceEnvironmentScope>>,
    pub oauth_app: Option<OAuthAppInput>,
    pub client_mutation_id: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateServiceEnvironmentInput {
    pub service_environment_id: ID,
    pub title: Option<String>,
    pub credentials_schema: Option<Json>,
    pub user_data_schema: Option<Json>,
    pub scopes: Option<Vec<ServiceEnvironmentScope>>,
    pub oauth_app: Option<OAuthAppInput>,
    pub client_mutation_id: Option<String>,
}

#[derive(InputObject)]
pub struct RemoveServiceEnvironmentInput {
    pub service_environment_id: ID,
    pub client_mutation_id: Option<String>,
}

/// The payload of a mutation that answers with the environment.
macro_rules! environment_payload {
    ($name:ident) => {
        #[derive(SimpleObject)]
        pub struct $name {
            pub service_environment: ServiceEnvironment,
            pub client_mutation_id: Option<String>,
        }
    };
}
environment_payload!(CreateServiceEnvironmentPayload);
environment_payload!(UpdateServiceEnvironmentPayload);

/// A call of a connector operation, as published. latchkey holds credentials and runs no
/// connectors, so `callConnector` refuses every call with `NOT_SUPPORTED`.
#[derive(InputObject)]
pub struct ConnectorCallInput {
    pub connector: String,
    pub version: String,
    pub operation: String,
    pub auth_id: Option<String>,
    pub input: Json,
    pub client_mutation_id: Option<String>,
}

#[derive(SimpleObject)]
pub struct ConnectorCallPayload {
    pub output: Json,
    pub client_mutation_id: Option<String>,
}

client_mutation_id_payload!(RemoveServicePayload);
client_mutation_id_payload!(RemoveServiceEnvironmentPayload);

#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    /// (ext) Services the caller's organization can use: built-in and its own.
    #[graphql(guard = "Access::MasterOrUser", directive = access::apply(Token::MasterOrUser), complexity = "crate::graphql::connection::page_complexity(first, last, child_complexity)")]
    async fn services(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<ServiceConnection> {
        let org_id = principal(ctx).org_id()?;
        let page = catalog::list_services(db(ctx), org_id, &page_request(first, after, last, before)?).await?;
        Ok(from_page(page, |service| service.id.0, Service::from))
    }

    /// (ext) The environments of a service, `Production` first.
    #[graphql(guard = "Access::MasterOrUser", directive = access::apply(Token::MasterOrUser))]
    async fn service_environments(
        &self,
        ctx: &Context<'_>,
        service_name: String,
        service_version: String,
    ) -> Result<Vec<ServiceEnvironment>> {
        let org_id = principal(ctx).org_id()?;
        let service =
            catalog::service_by_name(db(ctx), org_id, &service_name, parse_version(&service_version)?).await?;
        let environments = catalog::environments(db(ctx), org_id, service.id).await?;
        Ok(environments.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
pub struct CatalogMutation;

#[Object]
impl CatalogMutation {
    /// Not supported: latchkey runs no connectors. Always answers `NOT_SUPPORTED`.
    #[graphql(guard = "Access::MasterOrUser", directive = access::apply(Token::MasterOrUser))]
    async fn call_connector(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "input", secret)] _input: ConnectorCallInput,
    ) -> Result<ConnectorCallPayload> {
        principal(ctx).caller()?;
        Err(Error::NotSupported("callConnector is not supported: latchkey stores credentials and runs no connectors")
            .into())
    }

    /// (ext) Adds a custom service for a system no built-in service covers.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn create_service(&self, ctx: &Context<'_>, input: CreateServiceInput) -> Result<CreateServicePayload> {
        let scope = principal(ctx).master()?;
        let new = catalog::NewService {
            name: input.name,
            version: input.version,
            title: input.title,
            description: input.description,
            icon: input.icon,
        };
        let service = catalog::create_service(db(ctx), scope, new, idempotency(ctx)).await?;
        Ok(CreateServicePayload { service: service.into(), client_mutation_id: input.client_mutation_id })
    }

    /// (ext) Changes a custom service's title, description or icon.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn update_service(&self, ctx: &Context<'_>, input: UpdateServiceInput) -> Result<UpdateServicePayload> {
        let scope = principal(ctx).master()?;
        let patch = catalog::ServicePatch { title: input.title, description: input.description, icon: input.icon };
        let service = catalog::update_service(db(ctx), scope, ServiceId::parse(&input.service_id)?, patch).await?;
        Ok(UpdateServicePayload { service: service.into(), client_mutation_id: input.client_mutation_id })
    }

    /// (ext) Removes a custom service and its environments; CONFLICT while authentications use it.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn remove_service(&self, ctx: &Context<'_>, input: RemoveServiceInput) -> Result<RemoveServicePayload> {
        let scope = principal(ctx).master()?;
        catalog::remove_service(db(ctx), scope, ServiceId::parse(&input.service_id)?).await?;
        Ok(RemoveServicePayload { client_mutation_id: input.client_mutation_id })
    }

    /// (ext) Adds an environment, such as the organization's own OAuth app, to a built-in or own service.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn create_service_environment(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] input: CreateServiceEnvironmentInput,
    ) -> Result<CreateServiceEnvironmentPayload> {
        let scope = principal(ctx).master()?;
        let new = catalog::NewEnvironment {
            title: input.title,
            authentication_type: input.authentication_type.into(),
            credentials_schema: input.credentials_schema.map(Json::into_value),
            user_data_schema: input.user_data_schema.map(Json::into_value),
            scopes: domain_scopes(input.scopes),
            oauth_app: input.oauth_app.map(Into::into),
        };
        let service_id = ServiceId::parse(&input.service_id)?;
        let environment =
            catalog::create_environment(db(ctx), &services(ctx).keyring(), scope, service_id, new, idempotency(ctx))
                .await?;
        Ok(CreateServiceEnvironmentPayload {
            service_environment: environment.into(),
            client_mutation_id: input.client_mutation_id,
        })
    }

    /// (ext) Changes an own environment; a new OAuth client secret is sealed again.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn update_service_environment(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] input: UpdateServiceEnvironmentInput,
    ) -> Result<UpdateServiceEnvironmentPayload> {
        let scope = principal(ctx).master()?;
        let patch = catalog::EnvironmentPatch {
            title: input.title,
            credentials_schema: input.credentials_schema.map(Json::into_value),
            user_data_schema: input.user_data_schema.map(Json::into_value),
            scopes: domain_scopes(input.scopes),
            oauth_app: input.oauth_app.map(Into::into),
        };
        let id = EnvironmentId::parse(&input.service_environment_id)?;
        let environment = catalog::update_environment(db(ctx), &services(ctx).keyring(), scope, id, patch).await?;
        Ok(UpdateServiceEnvironmentPayload {
            service_environment: environment.into(),
            client_mutation_id: input.client_mutation_id,
        })
    }

    /// (ext) Removes an own environment; CONFLICT while authentications use it.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn remove_service_environment(
        &self,
        ctx: &Context<'_>,
        input: RemoveServiceEnvironmentInput,
    ) -> Result<RemoveServiceEnvironmentPayload> {
        let scope = principal(ctx).master()?;
        catalog::remove_environment(db(ctx), scope, EnvironmentId::parse(&input.service_environment_id)?).await?;
        Ok(RemoveServiceEnvironmentPayload { client_mutation_id: input.client_mutation_id })
    }
}

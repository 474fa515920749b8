//! The GraphQL API: one module per area, each with its own query and mutation objects,
//! merged here. Resolvers are thin: parse input, call [`crate::domain`], map the result.

/// The payload of a mutation that answers nothing but the echoed `clientMutationId`.
macro_rules! client_mutation_id_payload {
    ($name:ident) => {
        #[derive(async_graphql::SimpleObject)]
        pub struct $name {
            pub client_mutation_id: Option<String>,
        }
    };
}

pub mod audit;
pub mod authentications;
pub mod catalog;
pub mod connection;
pub mod document;
pub mod guard;
pub mod node;
pub mod org_settings;
pub mod scalars;
pub mod solutions;
pub mod users;
pub mod viewer;
pub mod webhooks;

use async_graphql::{
    Context, EmptySubscription, ErrorExtensions, MergedObject, SDLExportOptions, Schema, SchemaBuilder,
};
use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::{
    auth::{Principal, Revocations, UserTokens},
    crypto::{Keyring, KeyringHandle},
    domain::{idempotency::Idempotency, pagination::PageRequest, refresh::Refresher},
    error::Error,
    outbound::Outbound,
};

#[derive(MergedObject, Default)]
pub struct Query(
    users::UsersQuery,
    viewer::ViewerQuery,
    catalog::CatalogQuery,
    authentications::AuthenticationsQuery,
    audit::AuditQuery,
    org_settings::OrgSettingsQuery,
    webhooks::WebhooksQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    users::UsersMutation,
    catalog::CatalogMutation,
    authentications::AuthenticationsMutation,
    solutions::SolutionsMutation,
    org_settings::OrgSettingsMutation,
    webhooks::WebhooksMutation,
);

pub type LatchkeySchema = Schema<Query, Mutation, EmptySubscription>;

/// What every resolver may use, shared by all requests.
#[derive(Clone)]
pub struct Services {
    db: DatabaseConnection,
    user_tokens: UserTokens,
    keyring: Arc<KeyringHandle>,
    refresher: Refresher,
    revocations: Revocations,
    outbound: Outbound,
}

impl Services {
    pub fn new(
        db: DatabaseConnection,
        user_tokens: UserTokens,
        keyring: Arc<KeyringHandle>,
        revocations: Revocations,
        outbound: Outbound,
        refresher: Refresher,
    ) -> Self {
        Self { db, user_tokens, keyring, refresher, revocations, outbound }
    }

    /// Keeps OAuth credentials alive: lazily, when forced, and in the background.
    pub fn refresher(&self) -> &Refresher {
        &self.refresher
    }

    /// What this process knows of revocations; a change that revokes tokens advances it.
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// The client for outbound calls, whose address policy also checks webhook URLs.
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// The keyring in force now (it follows a rotation of the key file).
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.current()
    }

    /// The raw connection, which filters nothing: hand it only to a use case in
    /// [`crate::domain`] together with the caller's scope, never query it directly.
    pub fn unscoped_db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn keyring_handle(&self) -> &KeyringHandle {
        &self.keyring
    }

    pub fn user_tokens(&self) -> &UserTokens {
        &self.user_tokens
    }
}

/// Bounds that refuse a hostile query before any resolver runs: the document gate's (before
/// parsing and authentication), then depth and complexity (before execution).
#[derive(Clone, Debug)]
pub struct Limits {
    pub document: document::DocumentLimits,
    pub depth: usize,
    pub complexity: usize,
    pub introspection: bool,
}

impl Default for Limits {
    fn default() -> Self {
        // The standard introspection query (GraphiQL's) is 13 levels deep. A connection
        // costs its page size times its selection (`connection::page_complexity`): a page
        // of 100 nodes with 30 fields each is 3,000.
        Self { document: document::DocumentLimits::default(), depth: 16, complexity: 10_000, introspection: true }
    }
}

fn builder() -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .register_output_type::<node::Node>()
        .register_output_type::<node::User>()
}

pub fn build_schema(services: Services, limits: &Limits) -> LatchkeySchema {
    let mut builder = builder()
        .data(services)
        .limit_depth(limits.depth)
        .limit_complexity(limits.complexity)
        .limit_recursive_depth(limits.document.max_depth);
    if !limits.introspection {
        builder = builder.disable_introspection().disable_suggestions();
    }
    builder.finish()
}

/// The schema as SDL, sorted, as committed in `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl_with_options(SDLExportOptions::new().sorted_fields().sorted_arguments().sorted_enum_items())
}

impl From<Error> for async_graphql::Error {
    fn from(err: Error) -> Self {
        let code = err.code().as_str();
        async_graphql::Error::new(err.public_message()).extend_with(|_, extensions| extensions.set("code", code))
    }
}

/// The caller of this request (set by the HTTP layer on every request).
pub fn principal<'a>(ctx: &Context<'a>) -> &'a Principal {
    ctx.data_unchecked::<Principal>()
}

pub fn services<'a>(ctx: &Context<'a>) -> &'a Services {
    ctx.data_unchecked::<Services>()
}

/// The request's idempotency key, for the create mutations (set by the HTTP layer from
/// the `Idempotency-Key` header).
pub fn idempotency<'a>(ctx: &Context<'a>) -> Option<&'a Idempotency> {
    ctx.data_opt::<Idempotency>()
}

/// The raw connection, for handing to a use case with the caller's scope (see
/// [`Services::unscoped_db`]).
pub fn unscoped_db<'a>(ctx: &Context<'a>) -> &'a DatabaseConnection {
    services(ctx).unscoped_db()
}

pub fn page_request(
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
) -> Result<PageRequest, Error> {
    PageRequest::new(first, after.as_deref(), last, before.as_deref())
}

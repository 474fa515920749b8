//! The access table: every field of `Query`, `Mutation` and `Viewer`, with the token it
//! takes and the object it acts on. The tests drive each field with every kind of caller
//! and compare with the table; a field missing from the table fails them, so no field
//! ships unguarded.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::{TestServer, error_code};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Master,
    User,
    MasterOrUser,
}

impl Access {
    fn sdl(self) -> &'static str {
        match self {
            Access::Master => "@access(token: MASTER)",
            Access::User => "@access(token: USER)",
            Access::MasterOrUser => "@access(token: MASTER_OR_USER)",
        }
    }
}

/// What `$id` names in the operation: made fresh in organization A for every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Nothing,
    /// An end user of organization A.
    User,
    /// An authentication owned by end user 1 of organization A.
    Authentication,
    /// A custom service of organization A.
    Service,
    /// A custom environment of organization A.
    Environment,
    /// A published solution of organization A.
    Solution,
    /// A solution instance owned by end user 1 of organization A.
    Instance,
    /// A webhook endpoint of organization A.
    WebhookEndpoint,
    /// A delivery to a webhook endpoint of organization A.
    WebhookDelivery,
    /// Nothing: the field is published but not offered, and answers `NOT_SUPPORTED` to
    /// every caller its token lets in.
    Unsupported,
}

struct Row {
    ty: &'static str,
    field: &'static str,
    access: Access,
    target: Target,
    operation: &'static str,
}

const fn row(ty: &'static str, field: &'static str, access: Access, target: Target, operation: &'static str) -> Row {
    Row { ty, field, access, target, operation }
}

use Access::{Master, MasterOrUser, User};
use Target::{Authentication, Environment, Instance, Nothing, Service, Solution, WebhookDelivery, WebhookEndpoint};

/// `$env` and `$svc` are the built-in Zendesk environment and service.
const TABLE: &[Row] = &[
    row("Query", "users", Master, Nothing, "{ users { edges { node { id } } } }"),
    row("Query", "viewer", MasterOrUser, Nothing, "{ viewer { __typename } }"),
    row("Query", "services", MasterOrUser, Nothing, "{ services(first: 1) { edges { node { id } } } }"),
    row(
        "Query",
        "serviceEnvironments",
        MasterOrUser,
        Nothing,
        "{ serviceEnvironments(serviceName: \"zendesk\", serviceVersion: \"1\") { id } }",
    ),
    row("Query", "authentication", MasterOrUser, Authentication, "query($id: ID!) { authentication(id: $id) { id } }"),
    row(
        "Query",
        "authenticationCredentials",
        User,
        Authentication,
        "query($id: ID!) { authenticationCredentials(id: $id) { data } }",
    ),
    row("Query", "auditEvents", Master, Nothing, "{ auditEvents(first: 1) { edges { node { action } } } }"),
    row("Query", "organizationSettings", Master, Nothing, "{ organizationSettings { allowedOrigins } }"),
    row(
        "Mutation",
        "updateOrganizationSettings",
        Master,
        Nothing,
        "mutation { updateOrganizationSettings(input: {displayName: \"Acme\"}) { organizationSettings { displayName } } }",
    ),
    row("Query", "webhookEndpoints", Master, Nothing, "{ webhookEndpoints(first: 1) { edges { node { id } } } }"),
    row(
        "Query",
        "webhookDeliveries",
        Master,
        WebhookEndpoint,
        "query($id: ID!) { webhookDeliveries(endpointId: $id, first: 1) { edges { node { id } } } }",
    ),
    row(
        "Mutation",
        "createWebhookEndpoint",
        Master,
        Nothing,
        "mutation { createWebhookEndpoint(input: {url: \"http://127.0.0.1:9/hooks\", eventTypes: [AUTHENTICATION_CREATED]}) { webhookEndpoint { id } } }",
    ),
    row(
        "Mutation",
        "updateWebhookEndpoint",
        Master,
        WebhookEndpoint,
        "mutation($id: ID!) { updateWebhookEndpoint(input: {webhookEndpointId: $id, enabled: false}) { webhookEndpoint { id } } }",
    ),
    row(
        "Mutation",
        "removeWebhookEndpoint",
        Master,
        WebhookEndpoint,
        "mutation($id: ID!) { removeWebhookEndpoint(input: {webhookEndpointId: $id}) { clientMutationId } }",
    ),
    row(
        "Mutation",
        "rotateWebhookEndpointSecret",
        Master,
        WebhookEndpoint,
        "mutation($id: ID!) { rotateWebhookEndpointSecret(input: {webhookEndpointId: $id}) { webhookEndpoint { id } } }",
    ),
    row(
        "Mutation",
        "redeliverWebhookEvent",
        Master,
        WebhookDelivery,
        "mutation($id: ID!) { redeliverWebhookEvent(input: {deliveryId: $id}) { delivery { id } } }",
    ),
    row("Viewer", "details", MasterOrUser, Nothing, "{ viewer { details { username } } }"),
    row("Viewer", "authentications", MasterOrUser, Nothing, "{ viewer { authentications { edges { node { id } } } } }"),
    row(
        "Mutation",
        "createExternalUser",
        Master,
        Nothing,
        "mutation { createExternalUser(input: {name: \"n\", externalUserId: \"NEW\"}) { userId } }",
    ),
    row(
        "Mutation",
        "updateExternalUser",
        Master,
        Target::User,
        "mutation($id: ID!) { updateExternalUser(input: {userId: $id, name: \"changed\"}) { user { id } } }",
    ),
    row(
        "Mutation",
        "removeExternalUser",
        Master,
        Target::User,
        "mutation($id: ID!) { removeExternalUser(input: {userId: $id}) { clientMutationId } }",
    ),
    row(
        "Mutation",
        "authorize",
        Master,
        Target::User,
        "mutation($id: ID!) { authorize(input: {userId: $id}) { accessToken } }",
    ),
    row(
        "Mutation",
        "generateAuthorizationCode",
        Master,
        Target::User,
        "mutation($id: ID!) { generateAuthorizationCode(input: {userId: $id}) { authorizationCode } }",
    ),
    row(
        "Mutation",
        "revokeUserTokens",
        Master,
        Target::User,
        "mutation($id: ID!) { revokeUserTokens(input: {userId: $id}) { clientMutationId } }",
    ),
    row(
        "Mutation",
        "createUserAuthentication",
        MasterOrUser,
        Nothing,
        "mutation($env: String!, $svc: String!) { createUserAuthentication(input: {name: \"n\", serviceId: $svc, serviceEnvironmentId: $env, data: {email: \"a@b.co\", api_token: \"t\"}, formData: {subdomain: \"acme\"}}) { authenticationId } }",
    ),
    row(
        "Mutation",
        "updateUserAuthentication",
        MasterOrUser,
        Authentication,
        "mutation($id: ID!) { updateUserAuthentication(input: {authenticationId: $id, name: \"changed\", data: {email: \"c@d.co\", api_token: \"u\"}, formData: {subdomain: \"acme\"}}) { authentication { id } } }",
    ),
    row(
        "Mutation",
        "refreshAuthentication",
        MasterOrUser,
        Authentication,
        "mutation($id: ID!) { refreshAuthentication(input: {authenticationId: $id}) { outcome authentication { status } } }",
    ),
    row(
        "Mutation",
        "callConnector",
        MasterOrUser,
        Target::Unsupported,
        "mutation { callConnector(input: {connector: \"slack\", version: \"1\", operation: \"list_users\", input: \"{}\"}) { output } }",
    ),
    row(
        "Mutation",
        "removeAuthentication",
        MasterOrUser,
        Authentication,
        "mutation($id: ID!) { removeAuthentication(input: {authenticationId: $id}) { clientMutationId } }",
    ),
    row(
        "Mutation",
        "createService",
        Master,
        Nothing,
        "mutation { createService(input: {name: \"NEW\", title: \"New\"}) { service { id } } }",
    ),
    row(
        "Mutation",
        "updateService",
        Master,
        Service,
        "mutation($id: ID!) { updateService(input: {serviceId: $id, title: \"changed\"}) { service { id } } }",
    ),
    row(
        "Mutation",
        "removeService",
        Master,
        Service,
        "mutation($id: ID!) { removeService(input: {serviceId: $id}) { clientMutationId } }",
    ),
    row(
        "Mutation",
        "createServiceEnvironment",
        Master,
        Service,
        "mutation($id: ID!) { createServiceEnvironment(input: {serviceId: $id, title: \"Staging\", authenticationType: token}) { serviceEnvironment { id } } }",
    ),
    row(
        "Mutation",
        "updateServiceEnvironment",
        Master,
        Environment,
        "mutation($id: ID!) { updateServiceEnvironment(input: {serviceEnvironmentId: $id, title: \"changed\"}) { serviceEnvironment { id } } }",
    ),
    row(
        "Mutation",
        "removeServiceEnvironment",
        Master,
        Environment,
        "mutation($id: ID!) { removeServiceEnvironment(input: {serviceEnvironmentId: $id}) { clientMutationId } }",
    ),
    row("Viewer", "solutions", MasterOrUser, Nothing, "{ viewer { solutions { edges { node { id } } } } }"),
    row(
        "Viewer",
        "solutionInstances",
        MasterOrUser,
        Nothing,
        "{ viewer { solutionInstances { totalCount edges { node { id } } } } }",
    ),
    row(
        "Mutation",
        "createSolution",
        Master,
        Nothing,
        "mutation { createSolution(input: {title: \"New\"}) { solution { id } } }",
    ),
    row(
        "Mutation",
        "updateSolution",
        Master,
        Solution,
        "mutation($id: ID!) { updateSolution(input: {solutionId: $id, title: \"changed\"}) { solution { id } } }",
    ),
    row(
        "Mutation",
        "publishSolution",
        Master,
        Solution,
        "mutation($id: ID!) { publishSolution(input: {solutionId: $id}) { solution { id } } }",
    ),
    row(
        "Mutation",
        "removeSolution",
        Master,
        Solution,
        "mutation($id: ID!) { removeSolution(input: {solutionId: $id}) { clientMutationId } }",
    ),
    row(
        "Mutation",
        "createSolutionInstance",
        User,
        Solution,
        "mutation($id: ID!) { createSolutionInstance(input: {solutionId: $id, instanceName: \"mine\"}) { solutionInstance { id } } }",
    ),
    row(
        "Mutation",
        "updateSolutionInstance",
        User,
        Instance,
        "mutation($id: ID!) { updateSolutionInstance(input: {solutionInstanceId: $id, instanceName: \"changed\"}) { solutionInstance { id } } }",
    ),
    row(
        "Mutation",
        "upgradeSolutionInstance",
        User,
        Instance,
        "mutation($id: ID!) { upgradeSolutionInstance(input: {solutionInstanceId: $id}) { solutionInstance { id } } }",
    ),
    row(
        "Mutation",
        "removeSolutionInstance",
        User,
        Instance,
        "mutation($id: ID!) { removeSolutionInstance(input: {solutionInstanceId: $id}) { clientMutationId } }",
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    NoToken,
    BadToken,
    ForgedMasterToken,
    MasterA,
    MasterB,
    User1A,
    User2A,
    UserB,
}

const CALLERS: [Caller; 8] = [
    Caller::NoToken,
    Caller::BadToken,
    Caller::ForgedMasterToken,
    Caller::MasterA,
    Caller::MasterB,
    Caller::User1A,
    Caller::User2A,
    Caller::UserB,
];

/// The error code the table promises, or `None` for success.
fn expected(row: &Row, caller: Caller) -> Option<&'static str> {
    use Caller::*;
    match caller {
        NoToken | BadToken | ForgedMasterToken => return Some("UNAUTHENTICATED"),
        MasterA | MasterB if row.access == Access::User => return Some("FORBIDDEN"),
        User1A | User2A | UserB if row.access == Access::Master => return Some("FORBIDDEN"),
        _ => {}
    }
    // The right kind of token: only the owner (and its organization's master token, for
    // fields it may use) finds the target; everyone else is told it does not exist.
    let finds = match row.target {
        Target::Unsupported => return Some("NOT_SUPPORTED"),
        Target::Nothing => true,
        Target::User | Target::Service | Target::Environment | WebhookEndpoint | WebhookDelivery => caller == MasterA,
        Target::Authentication => matches!(caller, MasterA | User1A),
        // Any end user of organization A may instantiate its published solutions.
        Target::Solution => matches!(caller, MasterA | User1A | User2A),
        Target::Instance => caller == User1A,
    };
    if finds { None } else { Some("NOT_FOUND") }
}

struct Fixture {
    server: TestServer,
    master_b: String,
    user1_token: String,
    user2_token: String,
    user_b_token: String,
    zendesk_env: String,
    zendesk_service: String,
}

impl Fixture {
    async fn new() -> Self {
        let server = TestServer::start().await;
        let master_b = server.other_org().await;
        let user1 = server.create_user(&server.master, "matrix-1").await;
        let user2 = server.create_user(&server.master, "matrix-2").await;
        let user_b = server.create_user(&master_b, "matrix-b").await;
        // Full reads on in both organizations, so only ownership decides.
        for token in [&server.master, &master_b] {
            server.enable_full_reads(token).await;
        }
        let (zendesk_service, zendesk_env) = server.builtin_environment("zendesk").await;
        Self {
            user1_token: server.user_token(&server.master, &user1).await,
            user2_token: server.user_token(&server.master, &user2).await,
            user_b_token: server.user_token(&master_b, &user_b).await,
            server,
            master_b,
            zendesk_env,
            zendesk_service,
        }
    }

    fn token(&self, caller: Caller) -> Option<String> {
        match caller {
            Caller::NoToken => None,
            Caller::BadToken => Some("not-a-token".to_owned()),
            Caller::ForgedMasterToken => Some(format!("lk_master_{}", "A".repeat(43))),
            Caller::MasterA => Some(self.server.master.clone()),
            Caller::MasterB => Some(self.master_b.clone()),
            Caller::User1A => Some(self.user1_token.clone()),
            Caller::User2A => Some(self.user2_token.clone()),
            Caller::UserB => Some(self.user_b_token.clone()),
        }
    }

    async fn make_target(&self, target: Target, tag: &str) -> Value {
        let server = &self.server;
        let master = &server.master;
        match target {
            Target::Nothing | Target::Unsupported => Value::Null,
            Target::User => json!(server.create_user(master, &format!("target-{tag}")).await),
            Target::Authentication => {
                json!(server.import_zendesk(&self.user1_token, &self.zendesk_env, "target").await)
            }
            Target::Service => json!(server.create_custom_service(master, &format!("svc-{tag}")).await),
            Target::Solution => json!(server.publish_solution(master, "Acme sync").await),
            Target::Instance => {
                let solution = server.publish_solution(master, "Acme sync").await;
                json!(server.create_instance(&self.user1_token, &solution, "target").await)
            }
            WebhookEndpoint => json!(self.make_webhook_endpoint().await),
            WebhookDelivery => {
                let endpoint = self.make_webhook_endpoint().await;
                server.import_zendesk(&self.user1_token, &self.zendesk_env, "delivered").await;
                let query = "query($id: ID!) { webhookDeliveries(endpointId: $id) { edges { node { id } } } }";
                let data = server.ok(master, query, json!({"id": endpoint})).await;
                data["webhookDeliveries"]["edges"][0]["node"]["id"].clone()
            }
            Target::Environment => {
                let service = server.create_custom_service(master, &format!("svc-{tag}")).await;
                let data = server
                    .ok(master, "mutation($s: ID!) { createServiceEnvironment(input: {serviceId: $s, title: \"Own\", authenticationType: token}) { serviceEnvironment { id } } }", json!({"s": service}))
                    .await;
                data["createServiceEnvironment"]["serviceEnvironment"]["id"].clone()
            }
        }
    }

    /// Whether a target is still there, unchanged, as its owner sees it.
    async fn untouched(&self, target: Target, id: &Value, tag: &str) -> bool {
        let server = &self.server;
        match target {
            Target::User => {
                let data = server
                    .ok(
                        &server.master,
                        "query($id: String) { users(criteria: {userId: $id}) { edges { node { name } } } }",
                        json!({"id": id}),
                    )
                    .await;
                data["users"]["edges"][0]["node"]["name"] == "Test User"
            }
            Target::Authentication => {
                let data = server
                    .ok(&self.user1_token, "query($id: ID!) { authentication(id: $id) { name } }", json!({"id": id}))
                    .await;
                data["authentication"]["name"] == "target"
            }
            Target::Service => {
                let data = server
                    .ok(&server.master, "{ services(first: 100) { edges { node { id title } } } }", json!({}))
                    .await;
                let edges = data["services"]["edges"].as_array().unwrap().clone();
                edges.iter().any(|edge| &edge["node"]["id"] == id && edge["node"]["title"] == "Acme CRM")
            }
            Target::Environment => {
                let query =
                    "query($s: String!) { serviceEnvironments(serviceName: $s, serviceVersion: \"1\") { id title } }";
                let data = server.ok(&server.master, query, json!({"s": format!("svc-{tag}")})).await;
                let environments = data["serviceEnvironments"].as_array().unwrap().clone();
                environments.iter().any(|environment| &environment["id"] == id && environment["title"] == "Own")
            }
            Target::Solution => {
                let data = server
                    .ok(
                        &server.master,
                        "{ viewer { solutions(first: 100) { edges { node { id title } } } } }",
                        json!({}),
                    )
                    .await;
                let edges = data["viewer"]["solutions"]["edges"].as_array().unwrap().clone();
                edges.iter().any(|edge| &edge["node"]["id"] == id && edge["node"]["title"] == "Acme sync")
            }
            Target::Instance => {
                let query = "query($id: String) { viewer { solutionInstances(criteria: {id: $id}) { edges { node { name } } } } }";
                let data = server.ok(&self.user1_token, query, json!({"id": id})).await;
                data["viewer"]["solutionInstances"]["edges"][0]["node"]["name"] == "target"
            }
            WebhookEndpoint => {
                use sea_orm::EntityTrait;
                let id = uuid::Uuid::parse_str(id.as_str().unwrap()).unwrap();
                let row = entity::webhook_endpoint::Entity::find_by_id(id).one(&server.db).await.unwrap();
                row.is_some_and(|row| row.enabled && row.updated_at == row.created_at)
            }
            WebhookDelivery => {
                use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
                let id = uuid::Uuid::parse_str(id.as_str().unwrap()).unwrap();
                let Some(row) = entity::webhook_delivery::Entity::find_by_id(id).one(&server.db).await.unwrap() else {
                    return false;
                };
                let copies = entity::webhook_delivery::Entity::find()
                    .filter(entity::webhook_delivery::Column::EventSeq.eq(row.event_seq))
                    .filter(entity::webhook_delivery::Column::EndpointId.eq(row.endpoint_id))
                    .count(&server.db)
                    .await
                    .unwrap();
                copies == 1
            }
            Target::Nothing | Target::Unsupported => true,
        }
    }

    /// A fresh webhook endpoint of organization A, subscribed to `authentication.created`.
    /// An organization holds at most 20, and every call makes one, so the earlier ones go
    /// first.
    async fn make_webhook_endpoint(&self) -> String {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let server = &self.server;
        let org = server.org_of(&server.master).await;
        entity::webhook_endpoint::Entity::delete_many()
            .filter(entity::webhook_endpoint::Column::OrgId.eq(org))
            .exec(&server.db)
            .await
            .unwrap();
        let create = "mutation { createWebhookEndpoint(input: {url: \"http://127.0.0.1:9/hooks\", eventTypes: [AUTHENTICATION_CREATED]}) { webhookEndpoint { id } } }";
        let data = server.ok(&server.master, create, json!({})).await;
        data["createWebhookEndpoint"]["webhookEndpoint"]["id"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn every_field_answers_every_kind_of_caller_as_the_access_table_says() {
    let fixture = Fixture::new().await;
    let mut failures = Vec::new();
    for (n, row) in TABLE.iter().enumerate() {
        for (m, caller) in CALLERS.iter().enumerate() {
            let tag = format!("{n}-{m}");
            let target = fixture.make_target(row.target, &tag).await;
            let variables = json!({"id": target, "env": fixture.zendesk_env, "svc": fixture.zendesk_service});
            let operation = row.operation.replace("NEW", &format!("new-{tag}"));
            let body = fixture.server.graphql(fixture.token(*caller).as_deref(), &operation, variables).await;
            let got = error_code(&body);
            if got.as_deref() != expected(row, *caller) {
                failures.push(format!(
                    "{}.{} as {caller:?}: expected {:?}, got {body}",
                    row.ty,
                    row.field,
                    expected(row, *caller)
                ));
            }
            if got.is_some() && row.target != Target::Nothing && !fixture.untouched(row.target, &target, &tag).await {
                failures.push(format!("{}.{} as {caller:?} was refused but changed its target", row.ty, row.field));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_missing_id_answers_like_a_foreign_one_on_every_field_that_takes_one() {
    let fixture = Fixture::new().await;
    let missing = uuid::Uuid::now_v7().to_string();
    for row in TABLE.iter().filter(|row| !matches!(row.target, Target::Nothing | Target::Unsupported)) {
        let caller = if row.access == Access::User { Caller::User1A } else { Caller::MasterA };
        let body =
            fixture.server.graphql(fixture.token(caller).as_deref(), row.operation, json!({"id": missing})).await;
        assert_eq!(error_code(&body).as_deref(), Some("NOT_FOUND"), "{}.{}: {body}", row.ty, row.field);
        let malformed =
            fixture.server.graphql(fixture.token(caller).as_deref(), row.operation, json!({"id": "nope"})).await;
        assert_eq!(error_code(&malformed).as_deref(), Some("BAD_USER_INPUT"), "{}.{}: {malformed}", row.ty, row.field);
    }
}

#[tokio::test]
async fn every_field_of_the_schema_has_a_row_in_the_access_table() {
    let server = TestServer::start().await;
    for ty in ["Query", "Mutation", "Viewer"] {
        let body =
            server.graphql(None, "query($t: String!) { __type(name: $t) { fields { name } } }", json!({"t": ty})).await;
        let in_schema: BTreeSet<String> = body["data"]["__type"]["fields"]
            .as_array()
            .expect("introspection works without a token")
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect();
        let in_table: BTreeSet<String> = TABLE.iter().filter(|r| r.ty == ty).map(|r| r.field.to_owned()).collect();
        assert_eq!(in_schema, in_table, "fields of {ty} vs the access table");
    }
}

#[test]
fn schema_graphql_shows_the_token_of_every_field() {
    let sdl = latchkey::graphql::sdl();
    for row in TABLE {
        let block_start = sdl.find(&format!("type {} {{", row.ty)).unwrap_or_else(|| panic!("type {}", row.ty));
        let block = &sdl[block_start..block_start + sdl[block_start..].find("\n}").unwrap()];
        let line = block
            .lines()
            .find(|line| {
                let line = line.trim_start();
                line.starts_with(&format!("{}(", row.field)) || line.starts_with(&format!("{}:", row.field))
            })
            .unwrap_or_else(|| panic!("{}.{} in the SDL", row.ty, row.field));
        assert!(line.contains(row.access.sdl()), "{}.{}: {line}", row.ty, row.field);
    }
}

// ---------------------------------------------------------------------------------------
// Whole answers: a foreign id reads exactly like a missing one

/// An answer as text with `ids` replaced, so two answers about different ids compare.
fn without_ids(body: &Value, ids: &[&str]) -> String {
    ids.iter().fold(body.to_string(), |text, id| text.replace(id, "<id>"))
}

#[tokio::test]
async fn a_foreign_id_gets_the_same_whole_answer_as_a_missing_one_and_changes_nothing() {
    let fixture = Fixture::new().await;
    let mut failures = Vec::new();
    for (n, row) in
        TABLE.iter().enumerate().filter(|(_, row)| !matches!(row.target, Target::Nothing | Target::Unsupported))
    {
        for (m, caller) in CALLERS.iter().enumerate().filter(|(_, caller)| expected(row, **caller) == Some("NOT_FOUND"))
        {
            let tag = format!("whole-{n}-{m}");
            let target = fixture.make_target(row.target, &tag).await;
            let foreign_id = target.as_str().unwrap().to_owned();
            let missing_id = uuid::Uuid::now_v7().to_string();
            let token = fixture.token(*caller);
            let ask = |id: &str| {
                let variables = json!({"id": id, "env": fixture.zendesk_env, "svc": fixture.zendesk_service});
                fixture.server.graphql(token.as_deref(), row.operation, variables)
            };
            let foreign = ask(&foreign_id).await;
            let missing = ask(&missing_id).await;
            if without_ids(&foreign, &[&foreign_id]) != without_ids(&missing, &[&missing_id]) {
                failures
                    .push(format!("{}.{} as {caller:?}: foreign {foreign} vs missing {missing}", row.ty, row.field));
            }
            if !fixture.untouched(row.target, &target, &tag).await {
                failures.push(format!("{}.{} as {caller:?} changed a foreign target", row.ty, row.field));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// REST: every route of `/core/v1`, from the list the router is built from

/// What a REST route's path names: made fresh in organization A for every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RestTarget {
    Nothing,
    /// `{id}`: an authentication owned by end user 1 of organization A.
    Authentication,
    /// `{name}`/`{version}`: a custom service of organization A.
    Service,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RestBody {
    None,
    /// A Zendesk import into the built-in environment.
    Create,
    /// A complete replacement of an authentication.
    Replace,
}

struct RestRow {
    method: &'static str,
    path: &'static str,
    access: Access,
    target: RestTarget,
    body: RestBody,
}

const fn rest(method: &'static str, path: &'static str, access: Access, target: RestTarget, body: RestBody) -> RestRow {
    RestRow { method, path, access, target, body }
}

const REST_TABLE: &[RestRow] = &[
    rest("POST", "/authentications", MasterOrUser, RestTarget::Nothing, RestBody::Create),
    rest("GET", "/authentications/{id}", MasterOrUser, RestTarget::Authentication, RestBody::None),
    rest("PUT", "/authentications/{id}", MasterOrUser, RestTarget::Authentication, RestBody::Replace),
    rest("DELETE", "/authentications/{id}", MasterOrUser, RestTarget::Authentication, RestBody::None),
    rest("GET", "/authentications/{id}/full", User, RestTarget::Authentication, RestBody::None),
    rest("POST", "/authentications/{id}/refresh", MasterOrUser, RestTarget::Authentication, RestBody::None),
    rest("GET", "/connectors", MasterOrUser, RestTarget::Nothing, RestBody::None),
    rest("GET", "/services/{name}/versions/{version}/environments", MasterOrUser, RestTarget::Service, RestBody::None),
];

/// The status and error code the REST table promises.
fn rest_expected(row: &RestRow, caller: Caller) -> (u16, Option<&'static str>) {
    use Caller::*;
    let refused = match caller {
        NoToken | BadToken | ForgedMasterToken => Some((401, "UNAUTHENTICATED")),
        MasterA | MasterB if row.access == Access::User => Some((403, "FORBIDDEN")),
        User1A | User2A | UserB if row.access == Access::Master => Some((403, "FORBIDDEN")),
        _ => None,
    };
    if let Some((status, code)) = refused {
        return (status, Some(code));
    }
    let finds = match row.target {
        RestTarget::Nothing => true,
        RestTarget::Authentication => matches!(caller, MasterA | User1A),
        // Every caller of organization A reads its catalog.
        RestTarget::Service => matches!(caller, MasterA | User1A | User2A),
    };
    match (finds, row.method) {
        (false, _) => (404, Some("NOT_FOUND")),
        (true, "POST") if row.path == "/authentications" => (201, None),
        (true, "DELETE") => (204, None),
        (true, _) => (200, None),
    }
}

impl Fixture {
    async fn make_rest_target(&self, target: RestTarget, tag: &str) -> Option<String> {
        match target {
            RestTarget::Nothing => None,
            RestTarget::Authentication => self.make_target(Target::Authentication, tag).await.as_str().map(Into::into),
            RestTarget::Service => {
                let name = format!("svc-{tag}");
                self.server.create_custom_service(&self.server.master, &name).await;
                Some(name)
            }
        }
    }

    /// The path of a row with `target` (an id or a service name) in its parameters.
    fn rest_path(row: &RestRow, target: Option<&str>) -> String {
        let target = target.unwrap_or_default();
        row.path.replace("{id}", target).replace("{name}", target).replace("{version}", "1")
    }

    fn rest_body(&self, body: RestBody) -> Option<Value> {
        let credentials = json!({"email": "c@d.co", "api_token": "u"});
        match body {
            RestBody::None => None,
            RestBody::Create => Some(
                json!({"name": "n", "serviceEnvironmentId": self.zendesk_env, "credentials": credentials, "userData": {"subdomain": "acme"}}),
            ),
            RestBody::Replace => {
                Some(json!({"name": "changed", "credentials": credentials, "userData": {"subdomain": "acme"}}))
            }
        }
    }

    async fn rest_untouched(&self, target: RestTarget, id: &str, tag: &str) -> bool {
        match target {
            RestTarget::Nothing => true,
            RestTarget::Authentication => self.untouched(Target::Authentication, &json!(id), tag).await,
            RestTarget::Service => {
                let data = self
                    .server
                    .ok(&self.server.master, "{ services(first: 100) { edges { node { name title } } } }", json!({}))
                    .await;
                let edges = data["services"]["edges"].as_array().unwrap().clone();
                edges.iter().any(|edge| edge["node"]["name"] == id && edge["node"]["title"] == "Acme CRM")
            }
        }
    }
}

fn route_key(method: &str, path: &str) -> String {
    format!("{method} {path}")
}

#[test]
fn every_rest_route_has_a_row_in_the_access_table_with_its_token() {
    let routes: BTreeSet<String> =
        latchkey::rest::routes().iter().map(|route| route_key(route.method.as_str(), route.path)).collect();
    let rows: BTreeSet<String> = REST_TABLE.iter().map(|row| route_key(row.method, row.path)).collect();
    assert_eq!(routes, rows, "routes of /core/v1 vs the REST access table");
    for route in latchkey::rest::routes() {
        let row = REST_TABLE.iter().find(|row| row.method == route.method.as_str() && row.path == route.path).unwrap();
        assert_eq!(
            row.access.sdl(),
            format!("@access(token: {})", route.access.as_str()),
            "{} {}",
            row.method,
            row.path
        );
    }
}

#[tokio::test]
async fn every_rest_route_answers_every_kind_of_caller_as_the_access_table_says() {
    let fixture = Fixture::new().await;
    let mut failures = Vec::new();
    for (n, row) in REST_TABLE.iter().enumerate() {
        for (m, caller) in CALLERS.iter().enumerate() {
            let tag = format!("rest-{n}-{m}");
            let target = fixture.make_rest_target(row.target, &tag).await;
            let path = Fixture::rest_path(row, target.as_deref());
            let method = reqwest::Method::from_bytes(row.method.as_bytes()).unwrap();
            let token = fixture.token(*caller);
            let (status, body) =
                fixture.server.rest(method, &path, token.as_deref(), fixture.rest_body(row.body)).await;
            let got = (status, body.get("code").and_then(Value::as_str));
            let want = rest_expected(row, *caller);
            if got != want {
                failures
                    .push(format!("{} {} as {caller:?}: expected {want:?}, got {status} {body}", row.method, row.path));
            }
            if let Some(target) = &target
                && status >= 400
                && !fixture.rest_untouched(row.target, target, &tag).await
            {
                failures.push(format!("{} {} as {caller:?} was refused but changed its target", row.method, row.path));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn on_rest_a_foreign_id_gets_the_same_whole_answer_as_a_missing_one_and_changes_nothing() {
    let fixture = Fixture::new().await;
    let mut failures = Vec::new();
    for (n, row) in REST_TABLE.iter().enumerate().filter(|(_, row)| row.target != RestTarget::Nothing) {
        for (m, caller) in CALLERS.iter().enumerate().filter(|(_, caller)| rest_expected(row, **caller).0 == 404) {
            let tag = format!("rest-whole-{n}-{m}");
            let foreign_id = fixture.make_rest_target(row.target, &tag).await.unwrap();
            let missing_id = match row.target {
                RestTarget::Service => format!("svc-missing-{tag}"),
                _ => uuid::Uuid::now_v7().to_string(),
            };
            let token = fixture.token(*caller);
            let method = reqwest::Method::from_bytes(row.method.as_bytes()).unwrap();
            let mut answers = Vec::new();
            for id in [&foreign_id, &missing_id] {
                let path = Fixture::rest_path(row, Some(id));
                let answer =
                    fixture.server.rest(method.clone(), &path, token.as_deref(), fixture.rest_body(row.body)).await;
                answers.push((answer.0, without_ids(&answer.1, &[id])));
            }
            if answers[0] != answers[1] {
                failures.push(format!(
                    "{} {} as {caller:?}: foreign {:?} vs missing {:?}",
                    row.method, row.path, answers[0], answers[1]
                ));
            }
            if !fixture.rest_untouched(row.target, &foreign_id, &tag).await {
                failures.push(format!("{} {} as {caller:?} changed a foreign target", row.method, row.path));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Lists: no answer holds another organization's or another end user's ids

/// An end user with one authentication and one solution instance.
struct Member {
    id: String,
    token: String,
    authentication: String,
    instance: String,
}

/// One organization, filled: end users, an organization-owned authentication, a custom
/// service with its own environment, a published and a draft solution.
struct Tenant {
    master: String,
    members: Vec<Member>,
    own_authentication: String,
    service_name: String,
    service: String,
    environment: String,
    solution: String,
    draft: String,
}

impl Tenant {
    async fn fill(server: &TestServer, master: String, name: &str, env: &str) -> Self {
        let service_name = format!("{name}-crm");
        let service = server.create_custom_service(&master, &service_name).await;
        let data = server
            .ok(&master, "mutation($s: ID!) { createServiceEnvironment(input: {serviceId: $s, title: \"Own\", authenticationType: token}) { serviceEnvironment { id } } }", json!({"s": service}))
            .await;
        let environment = data["createServiceEnvironment"]["serviceEnvironment"]["id"].as_str().unwrap().to_owned();
        let solution = server.publish_solution(&master, &format!("{name} sync")).await;
        let data = server
            .ok(
                &master,
                "mutation($t: String!) { createSolution(input: {title: $t}) { solution { id } } }",
                json!({"t": format!("{name} draft")}),
            )
            .await;
        let draft = data["createSolution"]["solution"]["id"].as_str().unwrap().to_owned();
        let own_authentication = server.import_zendesk(&master, env, &format!("{name} own")).await;
        let mut members = Vec::new();
        for n in 0..3 {
            let id = server.create_user(&master, &format!("{name}-member-{n}")).await;
            let token = server.user_token(&master, &id).await;
            let authentication = server.import_zendesk(&token, env, &format!("{name} {n}")).await;
            let instance = server.create_instance(&token, &solution, &format!("{name} {n}")).await;
            members.push(Member { id, token, authentication, instance });
        }
        Self { master, members, own_authentication, service_name, service, environment, solution, draft }
    }

    /// Every id the tenant holds.
    fn ids(&self) -> Vec<&str> {
        let mut ids =
            vec![self.own_authentication.as_str(), &self.service, &self.environment, &self.solution, &self.draft];
        for member in &self.members {
            ids.extend([member.id.as_str(), &member.authentication, &member.instance]);
        }
        ids
    }
}

/// Every list a caller can ask for, each answer whole.
async fn every_list(server: &TestServer, token: &str, master: bool, foreign: &Tenant) -> Vec<(String, Value)> {
    let mut lists = vec![
        "{ viewer { authentications(first: 100) { edges { node { id ownerId service { id } serviceEnvironment { id } } } } } }",
        "{ viewer { solutions(first: 100) { edges { node { id } } } } }",
        "{ viewer { solutionInstances(first: 100) { totalCount edges { node { id authValues { authId } } } } } }",
        "{ services(first: 100) { edges { node { id name } } } }",
        "{ serviceEnvironments(serviceName: \"zendesk\", serviceVersion: \"1\") { id serviceId } }",
    ];
    if master {
        lists.extend([
            "{ users(first: 100) { edges { node { id } } } }",
            "{ auditEvents(first: 100) { edges { node { id actorId targetId } } } }",
            "{ viewer { solutions(first: 100, criteria: {includeDrafts: true}) { edges { node { id } } } } }",
        ]);
    }
    let mut answers = Vec::new();
    for query in lists {
        answers.push((query.to_owned(), server.graphql(Some(token), query, json!({})).await));
    }
    if master {
        // Asking for another organization's end user by id finds nothing of theirs.
        for member in &foreign.members {
            let queries = [
                "query($u: ID) { viewer { authentications(first: 100, criteria: {ownerId: $u}) { edges { node { id } } } } }",
                "query($u: String) { viewer { solutionInstances(first: 100, criteria: {owner: $u}) { edges { node { id } } } } }",
                "query($u: String) { users(first: 100, criteria: {userId: $u}) { edges { node { id } } } }",
            ];
            for query in queries {
                answers.push((query.to_owned(), server.graphql(Some(token), query, json!({"u": member.id})).await));
            }
        }
    }
    let query = "query($s: String!) { serviceEnvironments(serviceName: $s, serviceVersion: \"1\") { id } }";
    answers.push((query.to_owned(), server.graphql(Some(token), query, json!({"s": foreign.service_name})).await));
    for path in [
        "/connectors".to_owned(),
        "/services/zendesk/versions/1/environments".to_owned(),
        format!("/services/{}/versions/1/environments", foreign.service_name),
    ] {
        let (_, body) = server.rest(reqwest::Method::GET, &path, Some(token), None).await;
        answers.push((format!("GET {path}"), body));
    }
    answers
}

#[tokio::test]
async fn no_list_answers_another_organizations_or_another_end_users_ids() {
    let server = TestServer::start().await;
    let (_, env) = server.builtin_environment("zendesk").await;
    let master_b = server.other_org().await;
    let a = Tenant::fill(&server, server.master.clone(), "alpha", &env).await;
    let b = Tenant::fill(&server, master_b, "beta", &env).await;

    for (tenant, other) in [(&a, &b), (&b, &a)] {
        // The master token sees its whole organization and nothing of the other.
        let text: String = every_list(&server, &tenant.master, true, other)
            .await
            .iter()
            .map(|(query, answer)| format!("{query} => {answer}\n"))
            .collect();
        for id in other.ids() {
            assert!(!text.contains(id), "{}'s master sees a foreign id {id}:\n{text}", tenant.service_name);
        }
        for id in tenant.ids() {
            assert!(text.contains(id), "{}'s master misses its own {id}:\n{text}", tenant.service_name);
        }
        // An end user sees their own and the organization's shared catalog and solutions.
        for (n, member) in tenant.members.iter().enumerate() {
            let text: String = every_list(&server, &member.token, false, other)
                .await
                .iter()
                .map(|(query, answer)| format!("{query} => {answer}\n"))
                .collect();
            let others = tenant.members.iter().enumerate().filter(|(m, _)| *m != n).map(|(_, member)| member);
            let mut hidden: Vec<&str> = other.ids();
            hidden.push(&tenant.own_authentication);
            hidden.push(&tenant.draft);
            for sibling in others {
                hidden.extend([sibling.id.as_str(), &sibling.authentication, &sibling.instance]);
            }
            for id in hidden {
                assert!(!text.contains(id), "member {n} of {} sees {id}:\n{text}", tenant.service_name);
            }
            for id in [&member.authentication, &member.instance, &tenant.service, &tenant.solution] {
                assert!(text.contains(id.as_str()), "member {n} of {} misses {id}:\n{text}", tenant.service_name);
            }
        }
    }
}

#[test]
fn the_api_layers_never_query_the_database_themselves() {
    // Resolvers and handlers hand the connection to a use case with the caller's scope;
    // a query written here would bypass the scoping every use case applies.
    let mut files = Vec::new();
    for dir in ["src/graphql", "src/rest", "src/http"] {
        for entry in std::fs::read_dir(crate::support::repo_path(dir)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files.push(crate::support::repo_path("src/http.rs"));
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines().filter(|line| line.contains("entity::") || line.contains("sea_orm")) {
            assert_eq!(line.trim(), "use sea_orm::DatabaseConnection;", "{}: {line}", file.display());
        }
    }
}

#[tokio::test]
async fn a_rest_route_refuses_a_caller_its_token_rule_does_not_admit_before_reading_the_body() {
    let server = TestServer::start().await;
    let response = server
        .client
        .post(format!("{}/core/v1/authentications", server.base))
        .header("content-type", "application/json")
        .body("{ not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "UNAUTHENTICATED");
}

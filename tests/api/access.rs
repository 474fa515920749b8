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
use Target::{Authentication, Environment, Instance, Nothing, Service, Solution};

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
        Target::User | Target::Service | Target::Environment => caller == MasterA,
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
            Target::Nothing | Target::Unsupported => true,
        }
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

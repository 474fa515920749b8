//! `Idempotency-Key` on every create: a retry makes one row and gets the same answer, a
//! different request under the same key is a `CONFLICT`, concurrent duplicates make one
//! row, keys belong to their caller, and a key stops replaying after a day.

use chrono::{Duration, Utc};
use reqwest::header::{HeaderMap, HeaderValue};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Statement, sea_query::Expr};
use serde_json::{Value, json};

use latchkey::App;

use crate::support::{TestServer, error_code};

const CREATE_AUTHENTICATION: &str =
    "mutation($in: CreateUserAuthenticationInput!) { createUserAuthentication(input: $in) { authenticationId } }";
const CREATE_USER: &str = "mutation($in: CreateExternalUserInput!) { createExternalUser(input: $in) { userId } }";

/// One create mutation, with a request, a different request, and where its new id is.
struct Case {
    operation: &'static str,
    token: String,
    query: &'static str,
    input: Value,
    other_input: Value,
    id: &'static str,
    table: &'static str,
}

struct Setup {
    server: TestServer,
    api: Api,
    user_token: String,
    zendesk: (String, String),
    cases: Vec<Case>,
}

async fn setup() -> Setup {
    let server = TestServer::start().await;
    let user = server.create_user(&server.master, "keyed-user").await;
    let user_token = server.user_token(&server.master, &user).await;
    let zendesk = server.builtin_environment("zendesk").await;
    let solution = server.publish_solution(&server.master, "Ticket sync").await;
    let custom_service = server.create_custom_service(&server.master, "acme-crm").await;
    let master = server.master.clone();
    let cases = vec![
        Case {
            operation: "createExternalUser",
            token: master.clone(),
            query: CREATE_USER,
            input: json!({"name": "Ann Lee", "externalUserId": "ann-1"}),
            other_input: json!({"name": "Bob Roe", "externalUserId": "bob-1"}),
            id: "/createExternalUser/userId",
            table: "external_users",
        },
        Case {
            operation: "createUserAuthentication",
            token: user_token.clone(),
            query: CREATE_AUTHENTICATION,
            input: zendesk_input(&zendesk, "zd-token-0001"),
            other_input: zendesk_input(&zendesk, "zd-token-0002"),
            id: "/createUserAuthentication/authenticationId",
            table: "authentications",
        },
        Case {
            operation: "createSolutionInstance",
            token: user_token.clone(),
            query: "mutation($in: CreateSolutionInstanceInput!) { createSolutionInstance(input: $in) { solutionInstance { id name enabled created solutionVersion } } }",
            input: json!({"solutionId": solution, "instanceName": "Sync"}),
            other_input: json!({"solutionId": solution, "instanceName": "Another sync"}),
            id: "/createSolutionInstance/solutionInstance/id",
            table: "solution_instances",
        },
        Case {
            operation: "createSolution",
            token: master.clone(),
            query: "mutation($in: CreateSolutionInput!) { createSolution(input: $in) { solution { id title version workflows { id name } } } }",
            input: json!({"title": "Lead sync", "workflows": [{"name": "Sync"}]}),
            other_input: json!({"title": "Lead sync", "workflows": [{"name": "Sync"}, {"name": "Notify"}]}),
            id: "/createSolution/solution/id",
            table: "solutions",
        },
        Case {
            operation: "createService",
            token: master.clone(),
            query: "mutation($in: CreateServiceInput!) { createService(input: $in) { service { id name version title } } }",
            input: json!({"name": "billing", "title": "Billing"}),
            other_input: json!({"name": "billing", "title": "Billing system"}),
            id: "/createService/service/id",
            table: "services",
        },
        Case {
            operation: "createServiceEnvironment",
            token: master.clone(),
            query: "mutation($in: CreateServiceEnvironmentInput!) { createServiceEnvironment(input: $in) { serviceEnvironment { id title authenticationType } } }",
            input: json!({"serviceId": custom_service, "title": "Sandbox", "authenticationType": "oauth2",
                "oauthApp": {"clientId": "c-1", "clientSecret": "oauth-secret-1", "authorizeUrl": "https://acme.test/a", "tokenUrl": "https://acme.test/t"}}),
            other_input: json!({"serviceId": custom_service, "title": "Sandbox", "authenticationType": "oauth2",
                "oauthApp": {"clientId": "c-1", "clientSecret": "oauth-secret-2", "authorizeUrl": "https://acme.test/a", "tokenUrl": "https://acme.test/t"}}),
            id: "/createServiceEnvironment/serviceEnvironment/id",
            table: "service_environments",
        },
    ];
    Setup { api: Api::of(&server), server, user_token, zendesk, cases }
}

fn zendesk_input(zendesk: &(String, String), api_token: &str) -> Value {
    json!({"name": "Zendesk", "serviceId": zendesk.0, "serviceEnvironmentId": zendesk.1,
        "data": {"email": "agent@acme.test", "api_token": api_token}, "formData": {"subdomain": "acme"}})
}

fn rest_body(zendesk: &(String, String), api_token: &str) -> Value {
    json!({"name": "Zendesk", "serviceEnvironmentId": zendesk.1,
        "credentials": {"email": "agent@acme.test", "api_token": api_token}, "userData": {"subdomain": "acme"}})
}

fn key_headers(keys: &[&str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for key in keys {
        headers.append("idempotency-key", HeaderValue::from_bytes(key.as_bytes()).unwrap());
    }
    headers
}

/// The server's address, cheap to clone into concurrent tasks.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn of(server: &TestServer) -> Self {
        Self { client: server.client.clone(), base: server.base.clone() }
    }

    /// POSTs a GraphQL request with the given `Idempotency-Key` headers; status and body.
    async fn graphql(&self, token: &str, keys: &[&str], query: &str, input: &Value) -> (u16, Value) {
        let request = self.client.post(format!("{}/graphql", self.base));
        let body = json!({"query": query, "variables": {"in": input}});
        let response = request.bearer_auth(token).headers(key_headers(keys)).json(&body).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// POSTs to `/core/v1/authentications` with the given `Idempotency-Key` headers.
    async fn rest_create(&self, token: &str, keys: &[&str], body: &Value) -> (u16, Value) {
        let request = self.client.post(format!("{}/core/v1/authentications", self.base));
        let response = request.bearer_auth(token).headers(key_headers(keys)).json(body).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

impl Case {
    async fn send(&self, server: &TestServer, key: &str, input: &Value) -> Value {
        let (status, body) = Api::of(server).graphql(&self.token, &[key], self.query, input).await;
        assert_eq!(status, 200, "{}: {body}", self.operation);
        body
    }

    fn created_id(&self, body: &Value) -> String {
        assert!(body.get("errors").is_none(), "{}: {body}", self.operation);
        body["data"]
            .pointer(self.id)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}: {body}", self.operation))
            .to_owned()
    }
}

async fn rows(db: &DatabaseConnection, table: &str) -> i64 {
    let statement = Statement::from_string(db.get_database_backend(), format!("SELECT COUNT(*) AS n FROM {table}"));
    db.query_one_raw(statement).await.unwrap().unwrap().try_get::<i64>("", "n").unwrap()
}

/// Makes the records of `key` look a day and an hour old.
async fn age_past_a_day(db: &DatabaseConnection, key: &str) {
    use entity::idempotency_key::{Column, Entity};
    let updated = Entity::update_many()
        .col_expr(Column::CreatedAt, Expr::value(Utc::now() - Duration::hours(25)))
        .filter(Column::ClientKey.eq(key))
        .exec(db)
        .await
        .unwrap();
    assert!(updated.rows_affected > 0, "a record of {key:?} exists");
}

#[tokio::test]
async fn a_retried_graphql_create_makes_one_row_and_gets_the_same_answer() {
    let s = setup().await;
    for case in &s.cases {
        let before = rows(&s.server.db, case.table).await;
        let key = format!("retry-{}", case.operation);
        let first = case.send(&s.server, &key, &case.input).await;
        let second = case.send(&s.server, &key, &case.input).await;
        case.created_id(&first);
        assert_eq!(first, second, "{}: the retry answers the same", case.operation);
        assert_eq!(rows(&s.server.db, case.table).await, before + 1, "{}: one row", case.operation);
    }
}

#[tokio::test]
async fn a_retried_rest_import_makes_one_row_and_gets_the_same_answer() {
    let s = setup().await;
    let body = rest_body(&s.zendesk, "zd-rest-token-1");
    let (first_status, first) = s.api.rest_create(&s.user_token, &["rest-1"], &body).await;
    let (second_status, second) = s.api.rest_create(&s.user_token, &["rest-1"], &body).await;
    assert_eq!((first_status, second_status), (201, 201), "{first} {second}");
    assert_eq!(first, second);
    assert_eq!(rows(&s.server.db, "authentications").await, 1);

    // The record keeps an HMAC of the request, never a part of it.
    let record = entity::idempotency_key::Entity::find().one(&s.server.db).await.unwrap().unwrap();
    assert_eq!(record.fingerprint.len(), 64);
    assert!(!format!("{record:?}").contains("zd-rest-token-1"));
    assert_eq!(record.resource_id.to_string(), first["id"].as_str().unwrap());
}

#[tokio::test]
async fn the_same_key_with_a_different_request_is_a_conflict_and_creates_nothing() {
    let s = setup().await;
    for case in &s.cases {
        let key = format!("conflict-{}", case.operation);
        case.created_id(&case.send(&s.server, &key, &case.input).await);
        let after_first = rows(&s.server.db, case.table).await;
        let body = case.send(&s.server, &key, &case.other_input).await;
        assert_eq!(error_code(&body).as_deref(), Some("CONFLICT"), "{}: {body}", case.operation);
        assert!(body["errors"][0]["message"].as_str().unwrap().contains("Idempotency-Key"), "{body}");
        assert_eq!(rows(&s.server.db, case.table).await, after_first, "{}: nothing created", case.operation);
    }
    // Another create under a key already used is a different request too.
    let users = &s.cases[0];
    let body = s
        .api
        .graphql(
            &s.server.master,
            &["conflict-createSolution"],
            users.query,
            &json!({"name": "Cy", "externalUserId": "cy-1"}),
        )
        .await
        .1;
    assert_eq!(error_code(&body).as_deref(), Some("CONFLICT"), "{body}");

    let (status, first) = s.api.rest_create(&s.user_token, &["rest-conflict"], &rest_body(&s.zendesk, "zd-1")).await;
    assert_eq!(status, 201, "{first}");
    let authentications = rows(&s.server.db, "authentications").await;
    let (status, body) = s.api.rest_create(&s.user_token, &["rest-conflict"], &rest_body(&s.zendesk, "zd-2")).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("CONFLICT")), "{body}");
    assert_eq!(rows(&s.server.db, "authentications").await, authentications);
}

/// Sends ten copies of each create at once, spread over `apis`, and checks that each
/// create made one row and every copy answered its id.
async fn send_duplicates_at_once(s: &Setup, apis: &[Api]) {
    for case in &s.cases {
        let before = rows(&s.server.db, case.table).await;
        let mut tasks = tokio::task::JoinSet::new();
        for copy in 0..10 {
            let (api, token, query, input) =
                (apis[copy % apis.len()].clone(), case.token.clone(), case.query, case.input.clone());
            let key = format!("concurrent-{}", case.operation);
            tasks.spawn(async move { api.graphql(&token, &[&key], query, &input).await });
        }
        let mut ids = Vec::new();
        while let Some(answer) = tasks.join_next().await {
            let (status, body) = answer.unwrap();
            assert_eq!(status, 200);
            ids.push(case.created_id(&body));
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 1, "{}: every duplicate answers the one id: {ids:?}", case.operation);
        assert_eq!(rows(&s.server.db, case.table).await, before + 1, "{}: one row", case.operation);
    }

    let before = rows(&s.server.db, "authentications").await;
    let mut tasks = tokio::task::JoinSet::new();
    for copy in 0..10 {
        let (api, token) = (apis[copy % apis.len()].clone(), s.user_token.clone());
        let body = rest_body(&s.zendesk, "zd-concurrent");
        tasks.spawn(async move { api.rest_create(&token, &["rest-concurrent"], &body).await });
    }
    let mut answers = Vec::new();
    while let Some(answer) = tasks.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, 201, "{body}");
        answers.push(body);
    }
    assert!(answers.iter().all(|answer| answer == &answers[0]), "every duplicate answers the one id: {answers:?}");
    assert_eq!(rows(&s.server.db, "authentications").await, before + 1);
}

#[tokio::test]
async fn concurrent_duplicates_make_exactly_one_row_and_all_get_its_id() {
    let s = setup().await;
    send_duplicates_at_once(&s, std::slice::from_ref(&s.api)).await;
}

#[tokio::test]
async fn duplicates_sent_to_two_servers_on_one_database_make_one_row() {
    let s = setup().await;
    // A second replica: same database, same secrets from the data dir.
    let replica = App::build(&s.server.storage.config(|_| {})).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let replica_api = Api { client: s.api.client.clone(), base: format!("http://{}", listener.local_addr().unwrap()) };
    tokio::spawn(replica.serve(listener, std::future::pending()));
    send_duplicates_at_once(&s, &[s.api.clone(), replica_api]).await;
}

#[tokio::test]
async fn keys_belong_to_their_caller() {
    let s = setup().await;
    let server = &s.server;
    let api = Api::of(server);
    let send = |token: &str, key: &'static str, query: &'static str, input: Value| {
        let (api, token) = (api.clone(), token.to_owned());
        async move { api.graphql(&token, &[key], query, &input).await.1 }
    };
    let id = |body: &Value, pointer: &str| {
        assert!(body.get("errors").is_none(), "{body}");
        body["data"].pointer(pointer).and_then(Value::as_str).unwrap().to_owned()
    };

    // Two organizations' master tokens.
    let other_master = server.other_org().await;
    let input = json!({"name": "Ann Lee", "externalUserId": "ann-shared"});
    let ours = id(&send(&server.master, "shared-key", CREATE_USER, input.clone()).await, "/createExternalUser/userId");
    let theirs = id(&send(&other_master, "shared-key", CREATE_USER, input).await, "/createExternalUser/userId");
    assert_ne!(ours, theirs);

    // Two end users of one organization, and the organization itself.
    let other_user = server.create_user(&server.master, "other-keyed-user").await;
    let other_token = server.user_token(&server.master, &other_user).await;
    let input = zendesk_input(&s.zendesk, "zd-shared");
    let pointer = "/createUserAuthentication/authenticationId";
    let first = id(&send(&s.user_token, "shared-import", CREATE_AUTHENTICATION, input.clone()).await, pointer);
    let second = id(&send(&other_token, "shared-import", CREATE_AUTHENTICATION, input.clone()).await, pointer);
    let organizations = id(&send(&server.master, "shared-import", CREATE_AUTHENTICATION, input).await, pointer);
    assert!(first != second && second != organizations && first != organizations);
    assert_eq!(rows(&server.db, "authentications").await, 3);
}

#[tokio::test]
async fn a_malformed_key_is_refused_and_creates_nothing() {
    let s = setup().await;
    let users = &s.cases[0];
    let long = "k".repeat(256);
    let before = rows(&s.server.db, "external_users").await;
    let malformed: [&[&str]; 5] = [&[""], &[&long], &["tab\tinside"], &["caf\u{e9}"], &["one", "two"]];
    for keys in malformed {
        let (status, body) = s.api.graphql(&s.server.master, keys, users.query, &users.input).await;
        assert_eq!((status, error_code(&body).as_deref()), (400, Some("BAD_USER_INPUT")), "{keys:?}: {body}");
        let (status, body) = s.api.rest_create(&s.user_token, keys, &rest_body(&s.zendesk, "zd-1")).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("BAD_USER_INPUT")), "{keys:?}: {body}");
        assert!(body["message"].as_str().unwrap().contains("Idempotency-Key"), "{body}");
    }
    assert_eq!(rows(&s.server.db, "external_users").await, before);
    assert_eq!(rows(&s.server.db, "authentications").await, 0);

    let longest = "k".repeat(255);
    users.created_id(&users.send(&s.server, &longest, &users.input).await);
}

#[tokio::test]
async fn a_key_older_than_a_day_no_longer_replays_and_is_purged() {
    let s = setup().await;
    let users = &s.cases[0];
    let first = users.created_id(&users.send(&s.server, "daily", &users.input).await);
    age_past_a_day(&s.server.db, "daily").await;
    // The expired key no longer knows its request: a different one is not a conflict.
    let second = users.created_id(&users.send(&s.server, "daily", &users.other_input).await);
    assert_ne!(first, second);
    assert_eq!(users.created_id(&users.send(&s.server, "daily", &users.other_input).await), second);

    age_past_a_day(&s.server.db, "daily").await;
    let third = users.send(&s.server, "another-key", &json!({"name": "Cy", "externalUserId": "cy-1"})).await;
    users.created_id(&third);
    let left: Vec<String> = entity::idempotency_key::Entity::find()
        .all(&s.server.db)
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.client_key)
        .collect();
    assert_eq!(left, ["another-key"], "a keyed create purges expired records");
}

#[tokio::test]
async fn a_create_that_fails_leaves_its_key_unused() {
    let s = setup().await;
    let instances = &s.cases[2];
    // Refused inside the create's transaction, after the key was recorded in it.
    let missing = json!({"solutionId": "0190b3c8-0000-7000-8000-000000000000", "instanceName": "Sync"});
    let body = instances.send(&s.server, "after-failure", &missing).await;
    assert_eq!(error_code(&body).as_deref(), Some("NOT_FOUND"), "{body}");
    instances.created_id(&instances.send(&s.server, "after-failure", &instances.input).await);

    let users = &s.cases[0];
    let body = users.send(&s.server, "after-bad-input", &json!({"name": " ", "externalUserId": "x"})).await;
    assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"), "{body}");
    users.created_id(&users.send(&s.server, "after-bad-input", &users.input).await);
}

#[tokio::test]
async fn a_replay_of_a_removed_row_says_it_was_removed() {
    let s = setup().await;
    let users = &s.cases[0];
    let id = users.created_id(&users.send(&s.server, "removed", &users.input).await);
    s.server
        .ok(
            &s.server.master,
            "mutation($u: ID!) { removeExternalUser(input: {userId: $u}) { clientMutationId } }",
            json!({"u": id}),
        )
        .await;
    let body = users.send(&s.server, "removed", &users.input).await;
    assert_eq!(error_code(&body).as_deref(), Some("CONFLICT"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("removed"), "{body}");
    assert_eq!(rows(&s.server.db, "external_users").await, 1, "only the setup's user");
}

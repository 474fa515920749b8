//! Importing, reading, replacing and removing authentications through GraphQL, and the
//! full read.

use serde_json::{Value, json};

use crate::support::{TestServer, error_code};

const SECRET: &str = "zd-secret-token-0001";
const CREATE: &str = "mutation($in: CreateUserAuthenticationInput!) { createUserAuthentication(input: $in) { authenticationId clientMutationId } }";
const LIST: &str = "query($c: AuthenticationSearchCriteria, $first: Int, $after: String) { viewer { authentications(criteria: $c, first: $first, after: $after) {
    edges { node { id name customFields scopes hidden ownerId service { id name version title icon } serviceEnvironment { id title } } cursor }
    pageInfo { hasNextPage hasPreviousPage } } } }";
const CREDENTIALS: &str = "query($id: ID!) { authenticationCredentials(id: $id) { authenticationId data formData } }";

struct Setup {
    server: TestServer,
    user: String,
    token: String,
    zendesk: (String, String),
}

async fn setup() -> Setup {
    let server = TestServer::start().await;
    let user = server.create_user(&server.master, "importer").await;
    let token = server.user_token(&server.master, &user).await;
    let zendesk = server.builtin_environment("zendesk").await;
    Setup { server, user, token, zendesk }
}

fn zendesk_input(setup: &Setup, data: Value, form_data: Value) -> Value {
    json!({"name": "Zendesk", "serviceId": setup.zendesk.0, "serviceEnvironmentId": setup.zendesk.1, "data": data, "formData": form_data})
}

fn ids(data: &Value) -> Vec<String> {
    data["viewer"]["authentications"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_user_imports_a_credential_and_sees_only_its_metadata() {
    let s = setup().await;
    // `Json` arrives as a string of JSON text or as a literal; both work.
    let mut input = zendesk_input(
        &s,
        json!(format!("{{\"email\":\"a@acme.test\",\"api_token\":\"{SECRET}\"}}")),
        json!({"subdomain": "acme"}),
    );
    input["clientMutationId"] = json!("import-1");
    input["customFields"] = json!({"crmAccount": 42});
    let data = s.server.ok(&s.token, CREATE, json!({"in": input})).await;
    assert_eq!(data["createUserAuthentication"]["clientMutationId"], "import-1");
    let id = data["createUserAuthentication"]["authenticationId"].as_str().unwrap().to_owned();

    let listed = s.server.ok(&s.token, LIST, json!({})).await;
    let node = &listed["viewer"]["authentications"]["edges"][0]["node"];
    assert_eq!(node["id"], id.as_str());
    assert_eq!(node["name"], "Zendesk");
    assert_eq!(node["customFields"], "{\"crmAccount\":42}");
    assert_eq!(node["service"]["name"], "zendesk");
    assert_eq!(node["service"]["version"], "1");
    assert_eq!(node["serviceEnvironment"], json!({"id": s.zendesk.1, "title": "Production"}));
    assert_eq!(node["ownerId"], s.user.as_str());
    assert!(!listed.to_string().contains(SECRET), "metadata never holds a secret");
    let one = s
        .server
        .ok(&s.token, "query($id: ID!) { authentication(id: $id) { id name scopes } }", json!({"id": id}))
        .await;
    assert_eq!(one["authentication"]["name"], "Zendesk");
}

#[tokio::test]
async fn schema_violations_name_their_pointers_and_store_nothing() {
    let s = setup().await;
    let bad = zendesk_input(&s, json!({"email": "not-an-email", "extra": SECRET}), json!({}));
    let body = s.server.graphql(Some(&s.token), CREATE, json!({"in": bad})).await;
    assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"));
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("credentials: required property \"api_token\" is missing"), "{message}");
    assert!(message.contains("credentials/email: is not a valid email"), "{message}");
    assert!(message.contains("userData: required property \"subdomain\" is missing"), "{message}");
    assert!(!message.contains(SECRET), "the error never echoes a value");
    for not_an_object in [json!("[1, 2]"), json!(7)] {
        let body =
            s.server.graphql(Some(&s.token), CREATE, json!({"in": zendesk_input(&s, not_an_object, json!({}))})).await;
        assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"));
    }
    let not_json =
        s.server.graphql(Some(&s.token), CREATE, json!({"in": zendesk_input(&s, json!("{broken"), json!({}))})).await;
    assert_eq!(error_code(&not_json).as_deref(), Some("BAD_USER_INPUT"), "{not_json}");
    assert!(ids(&s.server.ok(&s.token, LIST, json!({})).await).is_empty());
}

#[tokio::test]
async fn the_service_must_be_the_environments_and_the_environment_must_exist() {
    let s = setup().await;
    let (slack_service, _) = s.server.builtin_environment("slack").await;
    let mut input =
        zendesk_input(&s, json!({"email": "a@acme.test", "api_token": SECRET}), json!({"subdomain": "acme"}));
    input["serviceId"] = json!(slack_service);
    let body = s.server.graphql(Some(&s.token), CREATE, json!({"in": input})).await;
    assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"));
    let mut input =
        zendesk_input(&s, json!({"email": "a@acme.test", "api_token": SECRET}), json!({"subdomain": "acme"}));
    input["serviceEnvironmentId"] = json!(uuid::Uuid::now_v7());
    let body = s.server.graphql(Some(&s.token), CREATE, json!({"in": input})).await;
    assert_eq!(error_code(&body).as_deref(), Some("NOT_FOUND"));
}

#[tokio::test]
async fn scopes_must_be_ones_the_environment_declares() {
    let s = setup().await;
    let (service, environment) = s.server.builtin_environment("slack").await;
    let input = |scopes: Value| {
        json!({"in": {"name": "Slack", "serviceId": service, "serviceEnvironmentId": environment, "scopes": scopes,
            "data": {"access_token": "xoxb-1234567890-1234567890-abcdefghijABCDEFGHIJ1234"}, "formData": {"team_id": "T0123ABCD"}}})
    };
    let body = s.server.graphql(Some(&s.token), CREATE, input(json!(["chat:write", "launch:missiles"]))).await;
    assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("launch:missiles"));
    let ok = s.server.graphql(Some(&s.token), CREATE, input(json!(["chat:write", "channels:read"]))).await;
    assert!(ok.get("errors").is_none(), "{ok}");
    let listed = s.server.ok(&s.token, LIST, json!({})).await;
    assert_eq!(
        listed["viewer"]["authentications"]["edges"][0]["node"]["scopes"],
        json!(["channels:read", "chat:write"])
    );
}

#[tokio::test]
async fn the_master_token_owns_its_own_and_can_list_an_end_users() {
    let s = setup().await;
    let mine = s.server.import_zendesk(&s.token, &s.zendesk.1, "user's").await;
    let orgs = s.server.import_zendesk(&s.server.master, &s.zendesk.1, "org's").await;
    let as_master = s.server.ok(&s.server.master, LIST, json!({})).await;
    assert_eq!(ids(&as_master), vec![orgs.clone()]);
    assert_eq!(as_master["viewer"]["authentications"]["edges"][0]["node"]["ownerId"], Value::Null);
    let users = s.server.ok(&s.server.master, LIST, json!({"c": {"ownerId": s.user}})).await;
    assert_eq!(ids(&users), vec![mine.clone()]);
    let as_user = s.server.ok(&s.token, LIST, json!({})).await;
    assert_eq!(ids(&as_user), vec![mine]);
    let filter = s.server.graphql(Some(&s.token), LIST, json!({"c": {"ownerId": s.user}})).await;
    assert_eq!(error_code(&filter).as_deref(), Some("FORBIDDEN"));
    let (slack, _) = s.server.builtin_environment("slack").await;
    let by_service = s.server.ok(&s.server.master, LIST, json!({"c": {"serviceId": slack}})).await;
    assert!(ids(&by_service).is_empty());
}

#[tokio::test]
async fn authentications_page_forwards() {
    let s = setup().await;
    let mut all = Vec::new();
    for n in 0..5 {
        all.push(s.server.import_zendesk(&s.token, &s.zendesk.1, &format!("zd-{n}")).await);
    }
    let first = s.server.ok(&s.token, LIST, json!({"first": 3})).await;
    assert_eq!(ids(&first), all[..3].to_vec());
    assert_eq!(first["viewer"]["authentications"]["pageInfo"]["hasNextPage"], true);
    let cursor = first["viewer"]["authentications"]["edges"][2]["cursor"].clone();
    let rest = s.server.ok(&s.token, LIST, json!({"first": 3, "after": cursor})).await;
    assert_eq!(ids(&rest), all[3..].to_vec());
    assert_eq!(rest["viewer"]["authentications"]["pageInfo"], json!({"hasNextPage": false, "hasPreviousPage": true}));
}

#[tokio::test]
async fn full_reads_are_off_by_default_and_then_only_for_the_owner() {
    let s = setup().await;
    let id = s.server.import_zendesk(&s.token, &s.zendesk.1, "zd").await;
    let off = s.server.graphql(Some(&s.token), CREDENTIALS, json!({"id": id})).await;
    assert_eq!(error_code(&off).as_deref(), Some("FORBIDDEN"));

    s.server.enable_full_reads(&s.server.master).await;
    let full = s.server.ok(&s.token, CREDENTIALS, json!({"id": id})).await;
    let data: Value = serde_json::from_str(full["authenticationCredentials"]["data"].as_str().unwrap()).unwrap();
    assert_eq!(data, json!({"email": "agent@acme.test", "api_token": SECRET}));
    let form: Value = serde_json::from_str(full["authenticationCredentials"]["formData"].as_str().unwrap()).unwrap();
    assert_eq!(form, json!({"subdomain": "acme"}));

    let other = s.server.create_user(&s.server.master, "other").await;
    let other_token = s.server.user_token(&s.server.master, &other).await;
    let foreign = s.server.graphql(Some(&other_token), CREDENTIALS, json!({"id": id})).await;
    assert_eq!(error_code(&foreign).as_deref(), Some("NOT_FOUND"));
    let master = s.server.graphql(Some(&s.server.master), CREDENTIALS, json!({"id": id})).await;
    assert_eq!(error_code(&master).as_deref(), Some("FORBIDDEN"));
}

#[tokio::test]
async fn an_update_replaces_the_credential_and_is_validated_like_a_create() {
    let s = setup().await;
    s.server.enable_full_reads(&s.server.master).await;
    let id = s.server.import_zendesk(&s.token, &s.zendesk.1, "zd").await;
    let update = "mutation($in: UpdateUserAuthenticationInput!) { updateUserAuthentication(input: $in) { authentication { id name customFields } clientMutationId } }";
    let input = json!({"authenticationId": id, "name": "Zendesk (rotated)", "data": {"email": "b@acme.test", "api_token": "zd-rotated-0002"}, "formData": {"subdomain": "acme-eu"}, "clientMutationId": "u"});
    let data = s.server.ok(&s.token, update, json!({"in": input})).await;
    assert_eq!(data["updateUserAuthentication"]["authentication"]["name"], "Zendesk (rotated)");
    assert_eq!(data["updateUserAuthentication"]["clientMutationId"], "u");
    let full = s.server.ok(&s.token, CREDENTIALS, json!({"id": id})).await;
    assert!(full["authenticationCredentials"]["data"].as_str().unwrap().contains("zd-rotated-0002"));

    let invalid = json!({"authenticationId": id, "name": "x", "data": {"email": "b@acme.test"}});
    let body = s.server.graphql(Some(&s.token), update, json!({"in": invalid})).await;
    assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"));
    let unchanged = s.server.ok(&s.token, CREDENTIALS, json!({"id": id})).await;
    assert_eq!(unchanged, full, "a refused update changes nothing");
}

#[tokio::test]
async fn removing_an_authentication_and_removing_its_user() {
    let s = setup().await;
    let first = s.server.import_zendesk(&s.token, &s.zendesk.1, "one").await;
    let second = s.server.import_zendesk(&s.token, &s.zendesk.1, "two").await;
    let remove = "mutation($id: ID!) { removeAuthentication(input: {authenticationId: $id, clientMutationId: \"rm\"}) { clientMutationId } }";
    let data = s.server.ok(&s.token, remove, json!({"id": first})).await;
    assert_eq!(data["removeAuthentication"]["clientMutationId"], "rm");
    let again = s.server.graphql(Some(&s.token), remove, json!({"id": first})).await;
    assert_eq!(error_code(&again).as_deref(), Some("NOT_FOUND"));
    assert_eq!(ids(&s.server.ok(&s.token, LIST, json!({})).await), vec![second.clone()]);

    s.server
        .ok(
            &s.server.master,
            "mutation($u: ID!) { removeExternalUser(input: {userId: $u}) { clientMutationId } }",
            json!({"u": s.user}),
        )
        .await;
    let gone = s
        .server
        .graphql(Some(&s.server.master), "query($id: ID!) { authentication(id: $id) { id } }", json!({"id": second}))
        .await;
    assert_eq!(error_code(&gone).as_deref(), Some("NOT_FOUND"), "the user's authentications went with the user");
}

#[tokio::test]
async fn every_change_and_token_leaves_an_audit_event_without_secrets() {
    let s = setup().await;
    s.server.enable_full_reads(&s.server.master).await;
    let id = s.server.import_zendesk(&s.token, &s.zendesk.1, "zd").await;
    s.server.ok(&s.token, CREDENTIALS, json!({"id": id})).await;
    s.server
        .ok(
            &s.token,
            "mutation($id: ID!) { removeAuthentication(input: {authenticationId: $id}) { clientMutationId } }",
            json!({"id": id}),
        )
        .await;
    let events = s
        .server
        .ok(
            &s.server.master,
            "{ auditEvents(first: 100) { edges { node { action actorKind actorId targetId occurredAt } } } }",
            json!({}),
        )
        .await;
    let list = events["auditEvents"]["edges"].as_array().unwrap();
    let actions: Vec<&str> = list.iter().map(|edge| edge["node"]["action"].as_str().unwrap()).collect();
    for expected in [
        "external_user.created",
        "user_token.minted",
        "authentication.created",
        "authentication.read_full",
        "authentication.removed",
    ] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    let read = list.iter().find(|edge| edge["node"]["action"] == "authentication.read_full").unwrap();
    assert_eq!(read["node"]["actorKind"], "user");
    assert_eq!(read["node"]["actorId"], s.user.as_str());
    assert_eq!(read["node"]["targetId"], id.as_str());
    assert!(!events.to_string().contains(SECRET) && !events.to_string().contains(&s.token));
}

/// The public API's reference import example for AWS SQS, byte for byte.
const SQS_EXAMPLE_DATA: &str =
    "{\"region\":\"us-east-1\",\"account_id\":\"1234\",\"access_key\":\"accesskey\",\"secret_key\":\"secretkey\"}";

#[tokio::test]
async fn the_public_apis_sqs_import_example_is_accepted_verbatim_over_graphql_and_rest() {
    let s = setup().await;
    s.server.enable_full_reads(&s.server.master).await;
    let (service, environment) = s.server.builtin_environment("aws-sqs").await;
    let mutation = "mutation { createUserAuthentication(input: {name: \"SQS\", serviceId: \"SERVICE\", serviceEnvironmentId: \"ENVIRONMENT\", data: \"{\\\"region\\\":\\\"us-east-1\\\",\\\"account_id\\\":\\\"1234\\\",\\\"access_key\\\":\\\"accesskey\\\",\\\"secret_key\\\":\\\"secretkey\\\"}\"}) { authenticationId } }"
        .replace("SERVICE", &service)
        .replace("ENVIRONMENT", &environment);
    let data = s.server.ok(&s.token, &mutation, json!({})).await;
    let id = data["createUserAuthentication"]["authenticationId"].as_str().unwrap().to_owned();
    let read = s.server.ok(&s.token, CREDENTIALS, json!({"id": id})).await;
    let stored: Value = serde_json::from_str(read["authenticationCredentials"]["data"].as_str().unwrap()).unwrap();
    assert_eq!(stored, serde_json::from_str::<Value>(SQS_EXAMPLE_DATA).unwrap());

    // The same as a variable, and over REST with the string or the object.
    let input = json!({"in": {"name": "SQS", "serviceId": service, "serviceEnvironmentId": environment, "data": SQS_EXAMPLE_DATA}});
    assert!(s.server.graphql(Some(&s.token), CREATE, input).await.get("errors").is_none());
    for credentials in [json!(SQS_EXAMPLE_DATA), serde_json::from_str(SQS_EXAMPLE_DATA).unwrap()] {
        for name in ["credentials", "data"] {
            let body = json!({"name": "SQS", "serviceEnvironmentId": environment, name: credentials});
            let (status, created) =
                s.server.rest(reqwest::Method::POST, "/authentications", Some(&s.token), Some(body)).await;
            assert_eq!(status, 201, "{name}: {created}");
        }
    }
}

#[tokio::test]
async fn validation_refuses_what_is_surely_wrong_and_not_a_vendor_format_guess() {
    let s = setup().await;
    let (service, environment) = s.server.builtin_environment("aws-sqs").await;
    let import = |data: Value| json!({"in": {"name": "SQS", "serviceId": service, "serviceEnvironmentId": environment, "data": data}});
    let message = |body: &Value| body["errors"][0]["message"].as_str().unwrap_or_default().to_owned();

    let missing =
        s.server.graphql(Some(&s.token), CREATE, import(json!({"region": "us-east-1", "access_key": "AKIA"}))).await;
    assert_eq!(error_code(&missing).as_deref(), Some("BAD_USER_INPUT"));
    assert!(message(&missing).contains("secret_key"), "{missing}");
    let wrong_type = s
        .server
        .graphql(Some(&s.token), CREATE, import(json!({"region": "us-east-1", "access_key": 1, "secret_key": "s"})))
        .await;
    assert!(message(&wrong_type).contains("/access_key: has the wrong type"), "{wrong_type}");
    let unknown = s
        .server
        .graphql(
            Some(&s.token),
            CREATE,
            import(json!({"region": "us-east-1", "access_key": "a", "secret_key": "s", "secret": "x"})),
        )
        .await;
    assert!(message(&unknown).contains("unexpected properties secret"), "{unknown}");
    // A region AWS opened after the catalog was written, and an unusual key: accepted.
    let new_region = json!({"region": "mars-north-7", "access_key": "key-from-a-vault", "secret_key": "s", "account_id": "000000000000"});
    assert!(s.server.graphql(Some(&s.token), CREATE, import(new_region)).await.get("errors").is_none());

    // Test keys of Stripe's test mode are real credentials; a Stripe key prefix is fixed by Stripe.
    let (stripe, production) = s.server.builtin_environment("stripe").await;
    let stripe_import = |key: &str| json!({"in": {"name": "Stripe", "serviceId": stripe, "serviceEnvironmentId": production, "data": {"api_key": key}}});
    assert!(
        s.server
            .graphql(Some(&s.token), CREATE, stripe_import("sk_live_51H-with_new+chars"))
            .await
            .get("errors")
            .is_none()
    );
    let publishable = s.server.graphql(Some(&s.token), CREATE, stripe_import("pk_live_123")).await;
    assert!(message(&publishable).contains("/api_key: does not match the pattern"), "{publishable}");
}

/// A page is one statement that joins each authentication to its service and environment:
/// every node shows its own, never a neighbour's, and a change to an environment shows in
/// the next page at once.
#[tokio::test]
async fn a_page_shows_each_authentications_own_service_and_environment_as_they_are_now() {
    let s = setup().await;
    let master = &s.server.master;
    let service = s.server.create_custom_service(master, "ledger").await;
    let created = s
        .server
        .ok(
            master,
            "mutation($s: ID!) { createServiceEnvironment(input: {serviceId: $s, title: \"Sandbox\", authenticationType: token}) { serviceEnvironment { id } } }",
            json!({"s": service}),
        )
        .await;
    let sandbox = created["createServiceEnvironment"]["serviceEnvironment"]["id"].as_str().unwrap().to_owned();
    let import_ledger = "mutation($s: String!, $e: String!) { createUserAuthentication(input: {name: \"ledger\", serviceId: $s, serviceEnvironmentId: $e, data: {token: \"t\"}}) { authenticationId } }";
    let mut expected = Vec::new();
    for n in 0..3 {
        let zendesk = s.server.import_zendesk(&s.token, &s.zendesk.1, &format!("zd-{n}")).await;
        expected.push((zendesk, s.zendesk.clone(), "Production"));
        let data = s.server.ok(&s.token, import_ledger, json!({"s": service, "e": sandbox})).await;
        let ledger = data["createUserAuthentication"]["authenticationId"].as_str().unwrap().to_owned();
        expected.push((ledger, (service.clone(), sandbox.clone()), "Sandbox"));
    }

    let shown = |page: &Value| -> Vec<(String, (String, String), String)> {
        page["viewer"]["authentications"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|edge| {
                let node = &edge["node"];
                assert_eq!(node["serviceEnvironment"]["serviceId"], node["service"]["id"], "{node}");
                let text = |v: &Value| v.as_str().unwrap().to_owned();
                (
                    text(&node["id"]),
                    (text(&node["service"]["id"]), text(&node["serviceEnvironment"]["id"])),
                    text(&node["serviceEnvironment"]["title"]),
                )
            })
            .collect()
    };
    let page = "query($first: Int) { viewer { authentications(first: $first) { edges { node { id service { id } serviceEnvironment { id serviceId title } } } } } }";
    let first = s.server.ok(&s.token, page, json!({"first": 10})).await;
    let want: Vec<_> = expected.iter().map(|(id, ids, title)| (id.clone(), ids.clone(), (*title).to_owned())).collect();
    assert_eq!(shown(&first), want);

    s.server
        .ok(
            master,
            "mutation($e: ID!) { updateServiceEnvironment(input: {serviceEnvironmentId: $e, title: \"Live\"}) { serviceEnvironment { id } } }",
            json!({"e": sandbox}),
        )
        .await;
    let after = s.server.ok(&s.token, page, json!({"first": 10})).await;
    let renamed: Vec<_> = want
        .into_iter()
        .map(|(id, ids, title)| {
            let title = if ids.1 == sandbox { "Live".to_owned() } else { title };
            (id, ids, title)
        })
        .collect();
    assert_eq!(shown(&after), renamed);
}

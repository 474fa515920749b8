//! The service catalog: built-in services for everyone, custom services and OAuth apps
//! for their own organization.

use latchkey::App;
use reqwest::Method;
use serde_json::json;

use crate::support::{TestServer, error_code};

const CLIENT_SECRET: &str = "oauth-client-secret-9f8e7d6c";

#[tokio::test]
async fn the_builtin_catalog_is_visible_to_every_organization_with_stable_ids() {
    let server = TestServer::start().await;
    let master_b = server.other_org().await;
    let list = "{ services(first: 100) { edges { node { id name version title builtin } } } }";
    let a = server.ok(&server.master, list, json!({})).await;
    let b = server.ok(&master_b, list, json!({})).await;
    assert_eq!(a, b);
    let names: Vec<&str> =
        a["services"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["name"].as_str().unwrap()).collect();
    assert!(names.len() >= 12, "{names:?}");
    for name in [
        "slack",
        "salesforce",
        "zendesk",
        "aws-sqs",
        "netsuite",
        "airtable",
        "stripe",
        "github",
        "hubspot",
        "mailchimp",
        "marketo",
        "http-basic-auth",
    ] {
        assert!(names.contains(&name), "{name} is built in");
    }
    // A restart reloads the catalog without changing ids.
    let again = App::build(&server.storage.config(|_| {})).await.unwrap();
    let principal = again.state.authenticator.authenticate(Some(&format!("Bearer {}", server.master))).await.unwrap();
    let ids_after = latchkey::domain::catalog::all_services(again.db(), principal.caller().unwrap()).await.unwrap();
    for edge in a["services"]["edges"].as_array().unwrap() {
        assert!(ids_after.iter().any(|s| s.id.to_string() == edge["node"]["id"].as_str().unwrap()));
    }
}

#[tokio::test]
async fn a_custom_service_with_an_oauth_app_is_its_organizations_alone() {
    let server = TestServer::start().await;
    let service = server.create_custom_service(&server.master, "acme-crm").await;
    let create_env = "mutation($in: CreateServiceEnvironmentInput!) { createServiceEnvironment(input: $in) { serviceEnvironment { id title authenticationType credentialsSchema scopes { scope } oauthApp { clientId authorizeUrl tokenUrl } } } }";
    let input = json!({"in": {"serviceId": service, "title": "Acme OAuth app", "authenticationType": "oauth2",
        "credentialsSchema": {"type": "object", "properties": {"access_token": {"type": "string"}}, "required": ["access_token"]},
        "scopes": [{"scope": "contacts.read", "description": "Read contacts"}],
        "oauthApp": {"clientId": "acme-client", "clientSecret": CLIENT_SECRET, "authorizeUrl": "https://crm.acme.test/oauth/authorize", "tokenUrl": "https://crm.acme.test/oauth/token"}}});
    let body = server.graphql(Some(&server.master), create_env, input).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert!(!body.to_string().contains(CLIENT_SECRET), "the client secret is never returned");
    let environment = body["data"]["createServiceEnvironment"]["serviceEnvironment"].clone();
    assert_eq!(environment["authenticationType"], "oauth2");
    assert_eq!(environment["oauthApp"]["clientId"], "acme-client");
    let environment_id = environment["id"].as_str().unwrap().to_owned();

    // Visible over REST to the organization's end users, under its name.
    let user = server.create_user(&server.master, "crm-user").await;
    let token = server.user_token(&server.master, &user).await;
    let (status, environments) =
        server.rest(Method::GET, "/services/acme-crm/versions/1/environments", Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(environments["elements"][0]["id"], environment_id.as_str());

    // Invisible to another organization.
    let master_b = server.other_org().await;
    let (status, _) =
        server.rest(Method::GET, "/services/acme-crm/versions/1/environments", Some(&master_b), None).await;
    assert_eq!(status, 404);
    let (_, connectors) = server.rest(Method::GET, "/connectors", Some(&master_b), None).await;
    assert!(!connectors.to_string().contains("acme-crm"));

    // In use, neither the environment nor the service can go.
    let import = "mutation($s: String!, $e: String!) { createUserAuthentication(input: {name: \"crm\", serviceId: $s, serviceEnvironmentId: $e, data: {access_token: \"tok\"}}) { authenticationId } }";
    let auth = server.ok(&token, import, json!({"s": service, "e": environment_id})).await;
    let remove_env =
        "mutation($id: ID!) { removeServiceEnvironment(input: {serviceEnvironmentId: $id}) { clientMutationId } }";
    let remove_service = "mutation($id: ID!) { removeService(input: {serviceId: $id}) { clientMutationId } }";
    assert_eq!(
        error_code(&server.graphql(Some(&server.master), remove_env, json!({"id": environment_id})).await).as_deref(),
        Some("CONFLICT")
    );
    assert_eq!(
        error_code(&server.graphql(Some(&server.master), remove_service, json!({"id": service})).await).as_deref(),
        Some("CONFLICT")
    );
    let auth_id = auth["createUserAuthentication"]["authenticationId"].clone();
    server
        .ok(
            &token,
            "mutation($id: ID!) { removeAuthentication(input: {authenticationId: $id}) { clientMutationId } }",
            json!({"id": auth_id}),
        )
        .await;
    server.ok(&server.master, remove_env, json!({"id": environment_id})).await;
    server.ok(&server.master, remove_service, json!({"id": service})).await;
    let (status, _) = server.rest(Method::GET, "/services/acme-crm/versions/1/environments", Some(&token), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_oauth_app_environment_can_be_added_to_a_builtin_service_and_inherits_its_schemas() {
    let server = TestServer::start().await;
    let (slack, production) = server.builtin_environment("slack").await;
    let create_env = "mutation($s: ID!) { createServiceEnvironment(input: {serviceId: $s, title: \"Our Slack app\", authenticationType: oauth2,
        oauthApp: {clientId: \"123.456\", clientSecret: \"slack-secret\", authorizeUrl: \"https://slack.com/oauth/v2/authorize\", tokenUrl: \"https://slack.com/api/oauth.v2.access\"}}) { serviceEnvironment { id credentialsSchema scopes { scope } } } }";
    let data = server.ok(&server.master, create_env, json!({"s": slack})).await;
    let own = &data["createServiceEnvironment"]["serviceEnvironment"];
    let environments = server.ok(&server.master, "{ serviceEnvironments(serviceName: \"slack\", serviceVersion: \"1\") { id credentialsSchema scopes { scope } } }", json!({})).await;
    let list = environments["serviceEnvironments"].as_array().unwrap();
    assert_eq!(list[0]["id"], production.as_str(), "Production comes first");
    assert_eq!(list[1]["id"], own["id"]);
    assert_eq!(own["credentialsSchema"], list[0]["credentialsSchema"]);
    assert_eq!(own["scopes"], list[0]["scopes"]);
    let master_b = server.other_org().await;
    let theirs = server
        .ok(&master_b, "{ serviceEnvironments(serviceName: \"slack\", serviceVersion: \"1\") { id } }", json!({}))
        .await;
    assert_eq!(theirs["serviceEnvironments"].as_array().unwrap().len(), 1);
    // Built-in rows are read-only.
    let body = server.graphql(Some(&server.master), "mutation($id: ID!) { updateServiceEnvironment(input: {serviceEnvironmentId: $id, title: \"mine\"}) { serviceEnvironment { id } } }", json!({"id": production})).await;
    assert_eq!(error_code(&body).as_deref(), Some("FORBIDDEN"));
}

#[tokio::test]
async fn custom_services_refuse_bad_names_duplicates_and_invalid_schemas() {
    let server = TestServer::start().await;
    let create = "mutation($n: String!) { createService(input: {name: $n, title: \"T\"}) { service { id } } }";
    for (name, code) in [("Not Valid", "BAD_USER_INPUT"), ("slack", "CONFLICT")] {
        let body = server.graphql(Some(&server.master), create, json!({"n": name})).await;
        assert_eq!(error_code(&body).as_deref(), Some(code), "{name}");
    }
    let service = server.create_custom_service(&server.master, "dup").await;
    let body = server.graphql(Some(&server.master), create, json!({"n": "dup"})).await;
    assert_eq!(error_code(&body).as_deref(), Some("CONFLICT"));
    // Another organization may use the same name.
    let master_b = server.other_org().await;
    server.create_custom_service(&master_b, "dup").await;
    let bad_schema = "mutation($s: ID!) { createServiceEnvironment(input: {serviceId: $s, title: \"x\", authenticationType: token, credentialsSchema: {type: 12}}) { serviceEnvironment { id } } }";
    let body = server.graphql(Some(&server.master), bad_schema, json!({"s": service})).await;
    assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"), "{body}");
    let user = server.create_user(&server.master, "u").await;
    let token = server.user_token(&server.master, &user).await;
    let body = server.graphql(Some(&token), create, json!({"n": "mine"})).await;
    assert_eq!(error_code(&body).as_deref(), Some("FORBIDDEN"));
}

#[tokio::test]
async fn every_service_has_an_icon_built_in_ones_embedded_and_custom_ones_their_own_or_a_default() {
    let server = TestServer::start().await;
    let list = "{ services(first: 100) { edges { node { name builtin icon } } } }";
    server.create_custom_service(&server.master, "plain-crm").await;
    let create = "mutation { createService(input: {name: \"logo-crm\", title: \"Logo CRM\", icon: \"https://crm.example/logo.svg\"}) { service { icon } } }";
    server.ok(&server.master, create, json!({})).await;
    let data = server.ok(&server.master, list, json!({})).await;
    let edges = data["services"]["edges"].as_array().unwrap().clone();
    assert_eq!(edges.len(), 17);
    for edge in &edges {
        let (name, icon) = (edge["node"]["name"].as_str().unwrap(), edge["node"]["icon"].as_str().unwrap());
        match name {
            "logo-crm" => assert_eq!(icon, "https://crm.example/logo.svg"),
            _ => assert!(icon.starts_with("data:image/svg+xml;base64,"), "{name}: {icon}"),
        }
    }
    let icon = |name: &str| edges.iter().find(|e| e["node"]["name"] == name).unwrap()["node"]["icon"].clone();
    assert_eq!(icon("plain-crm"), json!(latchkey::domain::catalog::DEFAULT_ICON));
    assert_ne!(icon("slack"), icon("plain-crm"), "built-in services ship their own icon");
}

#[tokio::test]
async fn lookups_by_id_find_built_in_entries_for_everyone_and_custom_ones_only_in_their_organization() {
    use latchkey::{
        domain::{catalog, catalog_cache},
        error::Error,
        ids::{EnvironmentId, ServiceId},
    };
    let server = TestServer::start().await;
    let master_b = server.other_org().await;
    let own = server.create_custom_service(&server.master, "own-crm").await;
    let data = server
        .ok(&server.master, "mutation($s: ID!) { createServiceEnvironment(input: {serviceId: $s, title: \"Own\", authenticationType: token}) { serviceEnvironment { id } } }", json!({"s": own}))
        .await;
    let own_env = data["createServiceEnvironment"]["serviceEnvironment"]["id"].as_str().unwrap().to_owned();
    let (zendesk, zendesk_env) = server.builtin_environment("zendesk").await;
    let uuid = |id: &str| uuid::Uuid::parse_str(id).unwrap();

    let app = App::build(&server.storage.config(|_| {})).await.unwrap();
    let authenticate = |token: String| {
        let authenticator = app.state.authenticator.clone();
        async move { authenticator.authenticate(Some(&format!("Bearer {token}"))).await.unwrap() }
    };
    let (a, b) = (authenticate(server.master.clone()).await, authenticate(master_b.clone()).await);
    let (a, b) = (a.caller().unwrap(), b.caller().unwrap());
    let db = app.db();

    let services = [uuid(&own), uuid(&zendesk)];
    let environments = [uuid(&own_env), uuid(&zendesk_env)];
    for (caller, sees_own) in [(a, true), (b, false)] {
        // Stamps that match nothing cached: each row is read, as the caller may see it.
        let stamps = |ids: &[uuid::Uuid; 2]| ids.map(|id| catalog_cache::Stamp { id, updated_at: chrono::Utc::now() });
        let found = catalog_cache::services(db, caller, &stamps(&services)).await.unwrap();
        assert_eq!((found.contains_key(&services[0]), found.contains_key(&services[1])), (sees_own, true));
        let found = catalog_cache::environments(db, caller, &stamps(&environments)).await.unwrap();
        assert_eq!((found.contains_key(&environments[0]), found.contains_key(&environments[1])), (sees_own, true));
        let service = catalog::service(db, caller, ServiceId(services[0])).await;
        assert_eq!(service.is_ok(), sees_own);
        let environment = catalog::environment(db, caller, EnvironmentId(environments[0])).await;
        assert_eq!(environment.is_ok(), sees_own);
        if !sees_own {
            assert!(matches!(service, Err(Error::NotFound("service"))));
            assert!(matches!(environment, Err(Error::NotFound("service environment"))));
        }
        assert!(catalog::service(db, caller, ServiceId(services[1])).await.is_ok());
        assert!(catalog::environment(db, caller, EnvironmentId(environments[1])).await.is_ok());
    }

    // Over the API, another organization's custom environment reads as a missing one.
    let import = "mutation($s: String!, $e: String!) { createUserAuthentication(input: {name: \"n\", serviceId: $s, serviceEnvironmentId: $e, data: {}}) { authenticationId } }";
    let foreign = server.graphql(Some(&master_b), import, json!({"s": own, "e": own_env})).await;
    let missing_id = uuid::Uuid::now_v7().to_string();
    let missing = server.graphql(Some(&master_b), import, json!({"s": own, "e": missing_id})).await;
    assert_eq!(error_code(&foreign).as_deref(), Some("NOT_FOUND"), "{foreign}");
    assert_eq!(foreign, missing);
}

#[tokio::test]
async fn concurrent_creates_of_one_service_name_make_one_service() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let server = server.clone();
        tasks.spawn(async move {
            let body = server
                .graphql(
                    Some(&server.master),
                    "mutation { createService(input: {name: \"acme-race\", title: \"Acme\"}) { service { id } } }",
                    json!({}),
                )
                .await;
            error_code(&body)
        });
    }
    let mut codes = Vec::new();
    while let Some(code) = tasks.join_next().await {
        codes.push(code.unwrap());
    }
    assert_eq!(codes.iter().filter(|code| code.is_none()).count(), 1, "{codes:?}");
    assert!(codes.iter().flatten().all(|code| code == "CONFLICT"), "{codes:?}");
    let data = server.ok(&server.master, "{ services(first: 100) { edges { node { name } } } }", json!({})).await;
    let edges = data["services"]["edges"].as_array().unwrap();
    assert_eq!(edges.iter().filter(|edge| edge["node"]["name"] == "acme-race").count(), 1, "one service");
}

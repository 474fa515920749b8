//! The `/core/v1` endpoints, as clients of the public REST API call them.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::TestServer;

const SECRET: &str = "zd-secret-token-0001";

struct Setup {
    server: TestServer,
    token: String,
    environment: String,
}

async fn setup() -> Setup {
    let server = TestServer::start().await;
    let user = server.create_user(&server.master, "rest-user").await;
    let token = server.user_token(&server.master, &user).await;
    let (_, environment) = server.builtin_environment("zendesk").await;
    Setup { server, token, environment }
}

fn body(environment: &str) -> Value {
    json!({"name": "Zendesk", "serviceEnvironmentId": environment,
           "credentials": {"email": "agent@acme.test", "api_token": SECRET}, "userData": {"subdomain": "acme"}})
}

#[tokio::test]
async fn the_import_flow_finds_the_environment_then_creates_and_reads_back() {
    let s = setup().await;
    let (status, connectors) = s.server.rest(Method::GET, "/connectors", Some(&s.token), None).await;
    assert_eq!(status, 200);
    let zendesk = connectors["elements"].as_array().unwrap().iter().find(|c| c["name"] == "zendesk").unwrap().clone();
    assert_eq!(zendesk["service"]["name"], "zendesk");
    let path = format!("/services/zendesk/versions/{}/environments", zendesk["version"]);
    let (status, environments) = s.server.rest(Method::GET, &path, Some(&s.token), None).await;
    assert_eq!(status, 200);
    let production = &environments["elements"][0];
    assert_eq!(production["title"], "Production");
    assert_eq!(production["authenticationType"], "token");
    assert_eq!(production["credentialsSchema"]["required"], json!(["email", "api_token"]));
    let environment = production["id"].as_str().unwrap();

    let (status, created) =
        s.server.rest(Method::POST, "/authentications", Some(&s.token), Some(body(environment))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let (status, read) = s.server.rest(Method::GET, &format!("/authentications/{id}"), Some(&s.token), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        read,
        json!({"id": id, "name": "Zendesk", "serviceEnvironmentId": environment, "scopes": [], "status": "ACTIVE", "expiresAt": null})
    );

    // Created over REST, visible over GraphQL, and the reverse.
    let listed = s.server.ok(&s.token, "{ viewer { authentications { edges { node { id } } } } }", json!({})).await;
    assert_eq!(listed["viewer"]["authentications"]["edges"][0]["node"]["id"], id);
    let via_graphql = s.server.import_zendesk(&s.token, environment, "via GraphQL").await;
    let (status, read) =
        s.server.rest(Method::GET, &format!("/authentications/{via_graphql}"), Some(&s.token), None).await;
    assert_eq!((status, read["name"].clone()), (200, json!("via GraphQL")));
}

#[tokio::test]
async fn bad_bodies_and_schema_violations_are_400_with_a_code() {
    let s = setup().await;
    let mut invalid = body(&s.environment);
    invalid["credentials"] = json!({"email": "agent@acme.test"});
    let (status, error) = s.server.rest(Method::POST, "/authentications", Some(&s.token), Some(invalid)).await;
    assert_eq!(status, 400);
    assert_eq!(error["code"], "BAD_USER_INPUT");
    assert!(error["message"].as_str().unwrap().contains("credentials: required property \"api_token\" is missing"));

    let (status, error) =
        s.server.rest(Method::POST, "/authentications", Some(&s.token), Some(json!({"name": 5}))).await;
    assert_eq!((status, error["code"].clone()), (400, json!("BAD_USER_INPUT")));
    let raw = s
        .server
        .client
        .post(format!("{}/core/v1/authentications", s.server.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(format!("{{\"name\": \"x\", \"credentials\": {{\"api_token\": \"{SECRET}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert!(!raw.text().await.unwrap().contains(SECRET), "a refused body is never echoed");
    let (status, _) = s.server.rest(Method::GET, "/authentications/not-a-uuid", Some(&s.token), None).await;
    assert_eq!(status, 400);
    let (status, error) = s.server.rest(Method::GET, "/connectors", None, None).await;
    assert_eq!((status, error["code"].clone()), (401, json!("UNAUTHENTICATED")));
}

#[tokio::test]
async fn put_is_a_full_replacement_that_cannot_change_the_environment() {
    let s = setup().await;
    s.server.enable_full_reads(&s.server.master).await;
    let (_, created) =
        s.server.rest(Method::POST, "/authentications", Some(&s.token), Some(body(&s.environment))).await;
    let path = format!("/authentications/{}", created["id"].as_str().unwrap());

    let (status, _) = s.server.rest(Method::PUT, &path, Some(&s.token), Some(json!({"name": "only a name"}))).await;
    assert_eq!(status, 400, "credentials are required");
    let (_, other_environment) = s.server.builtin_environment("stripe").await;
    let moved = json!({"name": "x", "credentials": {"email": "agent@acme.test", "api_token": "t"}, "serviceEnvironmentId": other_environment});
    let (status, _) = s.server.rest(Method::PUT, &path, Some(&s.token), Some(moved)).await;
    assert_eq!(status, 400, "the environment cannot change");

    let replacement = json!({"name": "Zendesk EU", "credentials": {"email": "eu@acme.test", "api_token": "zd-eu-0003"}, "userData": {"subdomain": "acme-eu"}});
    let (status, updated) = s.server.rest(Method::PUT, &path, Some(&s.token), Some(replacement)).await;
    assert_eq!(status, 200);
    assert_eq!(updated["name"], "Zendesk EU");
    assert_eq!(updated["serviceEnvironmentId"], s.environment.as_str());
    let (status, full) = s.server.rest(Method::GET, &format!("{path}/full"), Some(&s.token), None).await;
    assert_eq!(status, 200);
    assert_eq!(full["credentials"], json!({"email": "eu@acme.test", "api_token": "zd-eu-0003"}));
    assert_eq!(full["userData"], json!({"subdomain": "acme-eu"}));
}

#[tokio::test]
async fn metadata_never_holds_secrets_and_full_reads_need_the_setting_and_the_owner() {
    let s = setup().await;
    let (_, created) =
        s.server.rest(Method::POST, "/authentications", Some(&s.token), Some(body(&s.environment))).await;
    let path = format!("/authentications/{}", created["id"].as_str().unwrap());
    for token in [&s.token, &s.server.master] {
        let (status, read) = s.server.rest(Method::GET, &path, Some(token), None).await;
        assert_eq!(status, 200);
        assert!(!read.to_string().contains(SECRET));
        assert!(read.get("credentials").is_none() && read.get("userData").is_none());
    }
    let (status, error) = s.server.rest(Method::GET, &format!("{path}/full"), Some(&s.token), None).await;
    assert_eq!((status, error["code"].clone()), (403, json!("FORBIDDEN")), "full reads are off by default");
    s.server.enable_full_reads(&s.server.master).await;
    let (status, full) = s.server.rest(Method::GET, &format!("{path}/full"), Some(&s.token), None).await;
    assert_eq!(status, 200);
    assert_eq!(full["credentials"]["api_token"], SECRET);
    let (status, _) = s.server.rest(Method::GET, &format!("{path}/full"), Some(&s.server.master), None).await;
    assert_eq!(status, 403, "the master token never reads secrets");
}

#[tokio::test]
async fn another_users_or_organizations_authentication_answers_404_on_every_call() {
    let s = setup().await;
    s.server.enable_full_reads(&s.server.master).await;
    let (_, created) =
        s.server.rest(Method::POST, "/authentications", Some(&s.token), Some(body(&s.environment))).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let other_user = s.server.create_user(&s.server.master, "someone-else").await;
    let other_user = s.server.user_token(&s.server.master, &other_user).await;
    let master_b = s.server.other_org().await;
    s.server.enable_full_reads(&master_b).await;
    let user_b = s.server.create_user(&master_b, "org-b-user").await;
    let user_b = s.server.user_token(&master_b, &user_b).await;
    let missing = uuid::Uuid::now_v7().to_string();
    let replacement = json!({"name": "stolen", "credentials": {"email": "x@evil.test", "api_token": "x"}});

    for (who, token) in [
        ("another user", &other_user),
        ("another organization's master", &master_b),
        ("another organization's user", &user_b),
    ] {
        for target in [&id, &missing] {
            let path = format!("/authentications/{target}");
            let calls = [
                (Method::GET, path.clone(), None),
                (Method::PUT, path.clone(), Some(replacement.clone())),
                (Method::DELETE, path.clone(), None),
            ];
            for (method, path, body) in calls {
                let (status, error) = s.server.rest(method.clone(), &path, Some(token), body).await;
                assert_eq!((status, error["code"].clone()), (404, json!("NOT_FOUND")), "{who}: {method} {path}");
            }
            if token != &master_b {
                let full = format!("/authentications/{target}/full");
                let (status, _) = s.server.rest(Method::GET, &full, Some(token), None).await;
                assert_eq!(status, 404, "{who}: full read");
            }
        }
    }
    let (status, read) = s.server.rest(Method::GET, &format!("/authentications/{id}"), Some(&s.token), None).await;
    assert_eq!((status, read["name"].clone()), (200, json!("Zendesk")), "nothing changed");
    let (status, body) = s.server.rest(Method::DELETE, &format!("/authentications/{id}"), Some(&s.token), None).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, _) = s.server.rest(Method::GET, &format!("/authentications/{id}"), Some(&s.token), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_older_generations_body_names_data_and_form_data_work_on_post_and_put() {
    let s = setup().await;
    s.server.enable_full_reads(&s.server.master).await;
    let older = json!({"name": "Zendesk", "serviceEnvironmentId": s.environment,
        "data": {"email": "agent@acme.test", "api_token": SECRET}, "formData": {"subdomain": "acme"}});
    let (status, created) = s.server.rest(Method::POST, "/authentications", Some(&s.token), Some(older)).await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/authentications/{}", created["id"].as_str().unwrap());
    let (_, full) = s.server.rest(Method::GET, &format!("{path}/full"), Some(&s.token), None).await;
    assert_eq!(full["credentials"], json!({"email": "agent@acme.test", "api_token": SECRET}));
    assert_eq!(full["userData"], json!({"subdomain": "acme"}));

    // As in GraphQL, `data` may be a string of JSON text.
    let replacement = json!({"name": "Zendesk EU", "data": "{\"email\":\"eu@acme.test\",\"api_token\":\"zd-eu-0003\"}",
        "formData": {"subdomain": "acme-eu"}});
    let (status, updated) = s.server.rest(Method::PUT, &path, Some(&s.token), Some(replacement)).await;
    assert_eq!((status, updated["name"].clone()), (200, json!("Zendesk EU")), "{updated}");
    let (_, full) = s.server.rest(Method::GET, &format!("{path}/full"), Some(&s.token), None).await;
    assert_eq!(full["credentials"], json!({"email": "eu@acme.test", "api_token": "zd-eu-0003"}));
    assert_eq!(full["userData"], json!({"subdomain": "acme-eu"}));

    // Both names of a pair is a clear 400 that names them, on either call.
    let credentials = json!({"email": "agent@acme.test", "api_token": SECRET});
    let both = [
        json!({"name": "x", "serviceEnvironmentId": s.environment, "credentials": credentials, "data": credentials}),
        json!({"name": "x", "serviceEnvironmentId": s.environment, "credentials": credentials,
               "userData": {"subdomain": "a"}, "formData": {"subdomain": "a"}}),
    ];
    for body in both {
        for (method, target) in [(Method::POST, "/authentications"), (Method::PUT, path.as_str())] {
            let (status, error) = s.server.rest(method.clone(), target, Some(&s.token), Some(body.clone())).await;
            assert_eq!((status, error["code"].clone()), (400, json!("BAD_USER_INPUT")), "{method} {body}");
            let message = error["message"].as_str().unwrap();
            assert!(message.contains("not both"), "{message}");
            assert!(!message.contains(SECRET), "the message never echoes a value");
        }
    }
}

#[tokio::test]
async fn environments_show_the_older_generations_schema_names_too() {
    let s = setup().await;
    let (status, environments) =
        s.server.rest(Method::GET, "/services/zendesk/versions/1/environments", Some(&s.token), None).await;
    assert_eq!(status, 200);
    let production = &environments["elements"][0];
    assert_eq!(production["dataSchema"], production["credentialsSchema"]);
    assert_eq!(production["formDataSchema"], production["userDataSchema"]);
    assert_eq!(production["dataSchema"]["required"], json!(["email", "api_token"]));
}

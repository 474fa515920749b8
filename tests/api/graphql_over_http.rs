//! GraphQL over HTTP as clients see it: media types by `Accept`, status codes by media
//! type, 401 for every refused token on both transports, and the graphql-http audit.

use std::process::Command;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Storage, TestServer, error_code, repo_path, require_tool};

const JWT_SECRET: &str = "k3Jx9vQe2LwR7tYp4ZsN8bHc6MdF1gUa0oViEqWnXyTr5Kj";

async fn post(server: &TestServer, accept: Option<&str>, token: Option<&str>, query: &str) -> reqwest::Response {
    let mut request = server.client.post(format!("{}/graphql", server.base)).json(&json!({"query": query}));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn content_type(response: &reqwest::Response) -> String {
    response.headers()["content-type"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_answer_s_media_type_follows_accept() {
    let server = TestServer::start().await;
    let legacy = [None, Some("*/*"), Some("application/json"), Some("application/json, text/plain, */*")];
    for accept in legacy {
        let response = post(&server, accept, Some(&server.master), "{ viewer { details { name } } }").await;
        assert_eq!(response.status(), 200);
        assert!(content_type(&response).starts_with("application/json"), "{accept:?}: {}", content_type(&response));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["data"]["viewer"]["details"]["name"], "default");
    }
    let modern = [
        "application/graphql-response+json",
        "application/graphql-response+json, application/json",
        "application/json;q=0.9, application/graphql-response+json",
    ];
    for accept in modern {
        let response = post(&server, Some(accept), Some(&server.master), "{ __typename }").await;
        assert_eq!(response.status(), 200);
        assert!(content_type(&response).starts_with("application/graphql-response+json"), "{accept}");
    }
}

#[tokio::test]
async fn request_errors_are_400_without_data_only_under_graphql_response_json() {
    let server = TestServer::start().await;
    for (query, code) in [("{ viewer { ", "GRAPHQL_PARSE_FAILED"), ("{ nope }", "GRAPHQL_VALIDATION_FAILED")] {
        let modern = post(&server, Some("application/graphql-response+json"), Some(&server.master), query).await;
        assert_eq!(modern.status(), 400, "{query}");
        let body: Value = modern.json().await.unwrap();
        assert_eq!(error_code(&body).as_deref(), Some(code));
        assert!(body.get("data").is_none(), "{body}");

        let legacy = post(&server, Some("application/json"), Some(&server.master), query).await;
        assert_eq!(legacy.status(), 200, "{query}");
        let body: Value = legacy.json().await.unwrap();
        assert_eq!(error_code(&body).as_deref(), Some(code));
        assert!(body.get("data").is_none(), "{body}");
    }
    // A field error is a result, not a request error: 200 under either media type.
    let missing = "{ viewer { authentications(first: 500) { edges { cursor } } } }";
    let response = post(&server, Some("application/graphql-response+json"), Some(&server.master), missing).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_post_without_a_json_content_type_is_a_bad_request() {
    let server = TestServer::start().await;
    let response = server
        .client
        .post(format!("{}/graphql", server.base))
        .body(json!({"query": "{ __typename }"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body).as_deref(), Some("BAD_REQUEST"));
}

/// A user token minted by the server, rewritten to have expired an hour ago and signed
/// again with the server's own secret: only its expiry is wrong.
fn expired(token: &str) -> String {
    let mut parts = token.split('.');
    let header: jsonwebtoken::Header =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    let past = chrono::Utc::now().timestamp() - 3_600;
    claims["exp"] = json!(past);
    claims["iat"] = json!(past - 60);
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes())).unwrap()
}

#[tokio::test]
async fn every_refused_token_is_401_with_a_bearer_challenge_on_both_transports() {
    let storage = Storage::new().await;
    let server = TestServer::start_on(storage, |raw| raw.jwt_secret = Some(JWT_SECRET.to_owned().into())).await;
    let revoked_user = server.create_user(&server.master, "revoked").await;
    let revoked = server.user_token(&server.master, &revoked_user).await;
    server
        .ok(
            &server.master,
            "mutation($u: ID!) { revokeUserTokens(input: {userId: $u}) { clientMutationId } }",
            json!({"u": revoked_user}),
        )
        .await;
    let removed_user = server.create_user(&server.master, "removed").await;
    let removed = server.user_token(&server.master, &removed_user).await;
    server
        .ok(
            &server.master,
            "mutation($u: ID!) { removeExternalUser(input: {userId: $u}) { clientMutationId } }",
            json!({"u": removed_user}),
        )
        .await;
    let live_user = server.create_user(&server.master, "live").await;
    let live = server.user_token(&server.master, &live_user).await;
    // The rewritten token is refused for its expiry alone: the untouched one works.
    server.ok(&live, "{ viewer { details { username } } }", json!({})).await;

    let refused = [
        ("garbage", "not-a-token".to_owned()),
        ("forged master token", format!("lk_master_{}", "A".repeat(43))),
        ("expired user token", expired(&live)),
        ("revoked user token", revoked),
        ("removed user's token", removed),
    ];
    for (kind, token) in &refused {
        let response = post(&server, None, Some(token), "{ viewer { details { name } } }").await;
        assert_eq!(response.status(), 401, "{kind} on /graphql");
        assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"), "{kind}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_code(&body).as_deref(), Some("UNAUTHENTICATED"), "{kind}: {body}");

        let response =
            server.client.get(format!("{}/core/v1/connectors", server.base)).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 401, "{kind} on /core/v1");
        assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"), "{kind}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "UNAUTHENTICATED", "{kind}: {body}");
    }
    // A scheme other than Bearer is refused too.
    let response = server
        .client
        .post(format!("{}/graphql", server.base))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn without_a_token_only_introspection_runs() {
    let server = TestServer::start().await;
    let response = post(&server, None, None, "{ __typename __schema { queryType { name } } }").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query", "{body}");

    for query in ["{ viewer { details { name } } }", "{ users { edges { cursor } } }"] {
        let response = post(&server, None, None, query).await;
        assert_eq!(response.status(), 401, "{query}");
        assert!(response.headers().contains_key("www-authenticate"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_code(&body).as_deref(), Some("UNAUTHENTICATED"));
    }
    let (status, body) = server.rest(Method::GET, "/connectors", None, None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("UNAUTHENTICATED")));
}

#[tokio::test]
async fn a_get_query_reads_operation_name_and_variables_from_the_query_string() {
    let server = TestServer::start().await;
    let query = "query A { viewer { details { name } } } query B($n: Int) { users(first: $n) { edges { cursor } } }";
    let response = server
        .client
        .get(format!("{}/graphql", server.base))
        .query(&[("query", query), ("operationName", "B"), ("variables", "{\"n\": 1}")])
        .bearer_auth(&server.master)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["users"]["edges"], json!([]), "{body}");
}

/// The graphql-http package's audit of the GraphQL-over-HTTP spec, against a real server:
/// no MUST and no SHOULD may fail.
#[tokio::test]
async fn the_graphql_over_http_audit_passes() {
    let dir = repo_path("tests/http-audit");
    let node = Command::new("node").arg("--version").output().is_ok_and(|out| out.status.success());
    if require_tool("the_graphql_over_http_audit_passes", node, "Node.js (node) on PATH").is_none() {
        return;
    }
    if !dir.join("node_modules/graphql-http").exists() {
        let installed = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir).status();
        let ok = installed.is_ok_and(|status| status.success());
        if require_tool("the_graphql_over_http_audit_passes", ok, "`npm ci` in tests/http-audit").is_none() {
            return;
        }
    }
    let server = TestServer::start().await;
    let url = format!("{}/graphql", server.base);
    let output =
        tokio::process::Command::new("node").arg("audit.mjs").arg(&url).current_dir(&dir).output().await.unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "graphql-http audit failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains(", 0 MUST/SHOULD failures"), "{report}");
}

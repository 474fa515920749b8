//! The HTTP surface: GraphiQL, GET queries, refusals before execution, health checks.

use serde_json::{Value, json};

use crate::support::{TestServer, error_code};

#[tokio::test]
async fn a_browser_get_serves_graphiql() {
    let server = TestServer::start().await;
    let response =
        server.client.get(format!("{}/graphql", server.base)).header("accept", "text/html").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(response.text().await.unwrap().to_lowercase().contains("graphiql"));
}

#[tokio::test]
async fn a_query_over_get_runs_and_a_mutation_over_get_is_405() {
    let server = TestServer::start().await;
    let url = format!("{}/graphql", server.base);
    let query =
        server.client.get(&url).query(&[("query", "{ viewer { details { name } } }")]).bearer_auth(&server.master);
    let body: Value = query.send().await.unwrap().json().await.unwrap();
    assert_eq!(body["data"]["viewer"]["details"]["name"], "default");

    let mutation = "mutation { createExternalUser(input: {name: \"g\", externalUserId: \"via-get\"}) { userId } }";
    let named = "query A { viewer { __typename } } mutation B { createExternalUser(input: {name: \"g\", externalUserId: \"via-get\"}) { userId } }";
    // A lone mutation; named operations with no name chosen; the mutation chosen by name.
    for (query, operation) in [(mutation, None), (named, None), (named, Some("B"))] {
        let mut params = vec![("query", query)];
        params.extend(operation.map(|name| ("operationName", name)));
        let response = server.client.get(&url).query(&params).bearer_auth(&server.master).send().await.unwrap();
        assert_eq!(response.status(), 405, "{query} {operation:?}");
        assert_eq!(response.headers()["allow"], "POST");
    }
    // Choosing the query by name runs it.
    let params = [("query", named), ("operationName", "A")];
    let response = server.client.get(&url).query(&params).bearer_auth(&server.master).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let users = server.ok(&server.master, "{ users { edges { node { id } } } }", json!({})).await;
    assert_eq!(users["users"]["edges"], json!([]), "no mutation over GET ran");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_and_malformed_ones_400() {
    let server = TestServer::start().await;
    let url = format!("{}/graphql", server.base);
    let huge = json!({"query": "{ viewer { __typename } }", "variables": {"pad": "x".repeat(2 * 1024 * 1024)}});
    let response = server.client.post(&url).bearer_auth(&server.master).json(&huge).send().await.unwrap();
    assert_eq!(response.status(), 413);

    let response = server
        .client
        .post(&url)
        .bearer_auth(&server.master)
        .header("content-type", "application/json")
        .body("{\"query\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");
}

#[tokio::test]
async fn wrong_types_and_syntax_errors_carry_a_code() {
    let server = TestServer::start().await;
    let wrong_type = server
        .graphql(Some(&server.master), "query($f: Int) { users(first: $f) { edges { cursor } } }", json!({"f": "ten"}))
        .await;
    assert!(error_code(&wrong_type).is_some(), "{wrong_type}");
    let syntax = server.graphql(Some(&server.master), "{ users { ", json!({})).await;
    assert_eq!(error_code(&syntax).as_deref(), Some("GRAPHQL_PARSE_FAILED"));
    let unknown = server.graphql(Some(&server.master), "{ nope }", json!({})).await;
    assert_eq!(error_code(&unknown).as_deref(), Some("GRAPHQL_VALIDATION_FAILED"));
}

#[tokio::test]
async fn queries_deeper_than_the_bound_are_refused_before_running() {
    let server = TestServer::start().await;
    let nested = format!(
        "{{ __schema {{ types {{ {} name {} }} }} }}",
        "fields { type { ofType { ".repeat(6),
        "} } } ".repeat(6)
    );
    let body = server.graphql(None, &nested, json!({})).await;
    assert!(body["errors"][0]["message"].as_str().unwrap().to_lowercase().contains("nested too deep"), "{body}");
    assert_eq!(error_code(&body).as_deref(), Some("QUERY_TOO_COMPLEX"));
}

#[tokio::test]
async fn the_standard_introspection_query_works_without_a_token() {
    let server = TestServer::start().await;
    // GraphiQL's query, with every option of graphql-js's getIntrospectionQuery on.
    let query = include_str!("../fixtures/introspection.graphql");
    let body = server.graphql(None, query, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
}

#[tokio::test]
async fn health_and_readiness_answer_ok() {
    let server = TestServer::start().await;
    for path in ["/healthz", "/readyz"] {
        let response = server.client.get(format!("{}{path}", server.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "ok");
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let server = TestServer::start().await;
    let response = server.client.get(format!("{}/healthz", server.base)).send().await.unwrap();
    assert!(response.headers().get("x-request-id").is_some());
}

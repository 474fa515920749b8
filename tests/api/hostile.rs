//! Hostile GraphQL documents: each is refused by the document gate, before the token is
//! checked and before any database work, and the server stays up for everyone else.

use serde_json::{Value, json};

use crate::support::{TestServer, error_code};

fn nested_list(levels: usize) -> String {
    format!(
        "{{ users(criteria: {{name: {}\"x\"{}}}) {{ edges {{ node {{ id }} }} }} }}",
        "[".repeat(levels),
        "]".repeat(levels)
    )
}

fn doubling_fragments(levels: usize) -> String {
    let mut query = format!("query {{ ...F{levels} }}\nfragment F0 on Query {{ __typename }}\n");
    for n in 1..=levels {
        query.push_str(&format!("fragment F{n} on Query {{ ...F{m} ...F{m} }}\n", m = n - 1));
    }
    query
}

async fn assert_alive(server: &TestServer) {
    let health = server.client.get(format!("{}/healthz", server.base)).send().await.unwrap();
    assert_eq!(health.status(), 200, "the server is still up");
    let data = server.ok(&server.master, "{ viewer { details { name } } }", json!({})).await;
    assert_eq!(data["viewer"]["details"]["name"], "default");
}

#[tokio::test]
async fn a_document_nested_two_thousand_levels_is_refused_and_the_server_stays_up() {
    let server = TestServer::start().await;
    let query = nested_list(2_000);
    let body = server.graphql(None, &query, json!({})).await;
    assert_eq!(error_code(&body).as_deref(), Some("QUERY_TOO_COMPLEX"), "{body}");
    assert!(body.get("data").is_none_or(Value::is_null));

    // GET parses the document too, to refuse mutations.
    let response =
        server.client.get(format!("{}/graphql", server.base)).query(&[("query", query.as_str())]).send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body).as_deref(), Some("QUERY_TOO_COMPLEX"), "{body}");
    assert_alive(&server).await;
}

#[tokio::test]
async fn fragments_that_double_at_each_level_are_refused_and_the_server_stays_up() {
    let server = TestServer::start().await;
    for levels in [22, 26, 30] {
        let body = server.graphql(Some(&server.master), &doubling_fragments(levels), json!({})).await;
        assert_eq!(error_code(&body).as_deref(), Some("QUERY_TOO_COMPLEX"), "{levels}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("fragments expanded"), "{message}");
    }
    assert_alive(&server).await;
}

#[tokio::test]
async fn the_gate_refuses_before_any_database_work() {
    let server = TestServer::start().await;
    // With the database gone, anything that reached it would fail as INTERNAL.
    server.db.clone().close().await.unwrap();
    let cases = [nested_list(100), doubling_fragments(24), "{ users { ".to_owned()];
    for query in &cases {
        let body = server.graphql(Some(&server.master), query, json!({})).await;
        let code = error_code(&body).unwrap();
        assert!(code == "QUERY_TOO_COMPLEX" || code == "GRAPHQL_PARSE_FAILED", "{code}: {body}");
    }
}

#[tokio::test]
async fn aliases_and_directives_are_bounded() {
    let server = TestServer::start().await;
    let aliases: String = (0..150).map(|i| format!("a{i}: __typename ")).collect();
    let body = server.graphql(None, &format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(error_code(&body).as_deref(), Some("QUERY_TOO_COMPLEX"), "{body}");

    let directives: String = (0..150).map(|_| "@skip(if: false) ").collect();
    let body = server.graphql(None, &format!("{{ __typename {directives} }}"), json!({})).await;
    assert_eq!(error_code(&body).as_deref(), Some("QUERY_TOO_COMPLEX"), "{body}");

    // Under the bounds, aliases work as GraphQL says.
    let few: String = (0..5).map(|i| format!("a{i}: __typename ")).collect();
    let body = server.graphql(None, &format!("{{ {few} }}"), json!({})).await;
    assert_eq!(body["data"]["a4"], "Query", "{body}");
}

#[tokio::test]
async fn complexity_multiplies_by_page_size() {
    let server = TestServer::start().await;
    let user = server.create_user(&server.master, "pager").await;
    let token = server.user_token(&server.master, &user).await;
    let page = |alias: usize, size: usize| {
        format!("p{alias}: solutionInstances(first: {size}) {{ edges {{ node {{ id name enabled }} }} }}")
    };
    // 90 aliases of a page of 100: 9,000 nodes asked for in one request.
    let big: String = (0..90).map(|i| page(i, 100)).collect::<Vec<_>>().join(" ");
    let body = server.graphql(Some(&token), &format!("{{ viewer {{ {big} }} }}"), json!({})).await;
    assert_eq!(error_code(&body).as_deref(), Some("QUERY_TOO_COMPLEX"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("too complex"), "{body}");

    // The same aliases over small pages are fine, and so is one full page.
    let small: String = (0..90).map(|i| page(i, 1)).collect::<Vec<_>>().join(" ");
    let body = server.graphql(Some(&token), &format!("{{ viewer {{ {small} }} }}"), json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let body = server.graphql(Some(&token), &format!("{{ viewer {{ {} }} }}", page(0, 100)), json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
}

#[tokio::test]
async fn a_batch_is_refused_as_a_bad_request() {
    let server = TestServer::start().await;
    let batch = json!([{"query": "{ __typename }"}, {"query": "{ __typename }"}]);
    let response = server.client.post(format!("{}/graphql", server.base)).json(&batch).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body).as_deref(), Some("BAD_REQUEST"), "{body}");
}

#[tokio::test]
async fn a_syntax_error_never_echoes_the_document() {
    let server = TestServer::start().await;
    let filler = "x".repeat(100 * 1024);
    let query = format!("{{ viewer {{ {filler} ( }}");
    let response =
        server.client.post(format!("{}/graphql", server.base)).json(&json!({"query": query})).send().await.unwrap();
    let text = response.text().await.unwrap();
    assert!(text.len() < 1_024, "a {} byte answer", text.len());
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error_code(&body).as_deref(), Some("GRAPHQL_PARSE_FAILED"), "{body}");
    assert!(body["errors"][0]["locations"][0]["line"].is_number(), "{body}");

    // Longer than the document bound: refused without parsing, still briefly.
    let long = format!("{{ viewer {{ {} ( }}", "x".repeat(600 * 1024));
    let body = server.graphql(None, &long, json!({})).await;
    assert_eq!(error_code(&body).as_deref(), Some("QUERY_TOO_COMPLEX"), "{body}");
}

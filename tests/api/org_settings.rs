//! Organization settings (ext): the brand and allowed origins of the hosted pages.

use serde_json::{Value, json};

use crate::support::{TestServer, error_code};

const READ: &str = "{ organizationSettings { displayName logoUrl accentColor allowedOrigins } }";
const UPDATE: &str = "mutation($input: UpdateOrganizationSettingsInput!) { updateOrganizationSettings(input: $input) { organizationSettings { displayName logoUrl accentColor allowedOrigins } clientMutationId } }";

async fn update(server: &TestServer, master: &str, input: Value) -> Value {
    server.graphql(Some(master), UPDATE, json!({"input": input})).await
}

#[tokio::test]
async fn an_organization_that_set_nothing_reads_empty_settings() {
    let server = TestServer::start().await;
    let data = server.ok(&server.master, READ, json!({})).await;
    assert_eq!(
        data["organizationSettings"],
        json!({"displayName": null, "logoUrl": null, "accentColor": null, "allowedOrigins": []})
    );
}

#[tokio::test]
async fn settings_are_saved_normalized_and_read_back() {
    let server = TestServer::start().await;
    let body = update(
        &server,
        &server.master,
        json!({
            "displayName": "  Acme Inc.  ",
            "logoUrl": "https://cdn.acme.example/logo.png",
            "accentColor": "#0A66C2",
            "allowedOrigins": ["https://App.Acme.example", "http://localhost:3000/", "https://app.acme.example"],
            "clientMutationId": "m1",
        }),
    )
    .await;
    let expected = json!({
        "displayName": "Acme Inc.",
        "logoUrl": "https://cdn.acme.example/logo.png",
        "accentColor": "#0a66c2",
        "allowedOrigins": ["https://app.acme.example", "http://localhost:3000"],
    });
    assert_eq!(body["data"]["updateOrganizationSettings"]["organizationSettings"], expected, "{body}");
    assert_eq!(body["data"]["updateOrganizationSettings"]["clientMutationId"], "m1");
    let data = server.ok(&server.master, READ, json!({})).await;
    assert_eq!(data["organizationSettings"], expected);
}

#[tokio::test]
async fn a_left_out_field_keeps_its_value_and_null_clears_it() {
    let server = TestServer::start().await;
    update(
        &server,
        &server.master,
        json!({"displayName": "Acme", "accentColor": "#112233", "allowedOrigins": ["https://a.example"]}),
    )
    .await;
    let body = update(&server, &server.master, json!({"accentColor": null})).await;
    let settings = &body["data"]["updateOrganizationSettings"]["organizationSettings"];
    assert_eq!(settings["displayName"], "Acme", "{body}");
    assert_eq!(settings["accentColor"], Value::Null);
    assert_eq!(settings["allowedOrigins"], json!(["https://a.example"]));
}

#[tokio::test]
async fn each_organization_sees_only_its_own_settings() {
    let server = TestServer::start().await;
    let master_b = server.other_org().await;
    update(&server, &server.master, json!({"displayName": "Acme", "allowedOrigins": ["https://a.example"]})).await;
    let data = server.ok(&master_b, READ, json!({})).await;
    assert_eq!(data["organizationSettings"]["displayName"], Value::Null);
    assert_eq!(data["organizationSettings"]["allowedOrigins"], json!([]));
}

#[tokio::test]
async fn a_bad_value_is_refused_and_changes_nothing() {
    let server = TestServer::start().await;
    update(&server, &server.master, json!({"displayName": "Acme", "allowedOrigins": ["https://a.example"]})).await;
    let too_many: Vec<String> = (0..21).map(|n| format!("https://a{n}.example")).collect();
    for input in [
        json!({"logoUrl": "http://cdn.acme.example/logo.png"}),
        json!({"logoUrl": "javascript:alert(1)"}),
        json!({"accentColor": "red"}),
        json!({"accentColor": "#12345"}),
        json!({"displayName": "   "}),
        json!({"displayName": "x".repeat(101)}),
        json!({"allowedOrigins": ["https://a.example/callback"]}),
        json!({"allowedOrigins": ["https://*.example.com"]}),
        json!({"allowedOrigins": ["null"]}),
        json!({"allowedOrigins": too_many}),
        // One good field with a bad one: neither is written.
        json!({"displayName": "Changed", "accentColor": "blue"}),
    ] {
        let body = update(&server, &server.master, input.clone()).await;
        assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"), "{input}: {body}");
    }
    let data = server.ok(&server.master, READ, json!({})).await;
    assert_eq!(data["organizationSettings"]["displayName"], "Acme");
    assert_eq!(data["organizationSettings"]["allowedOrigins"], json!(["https://a.example"]));
}

#[tokio::test]
async fn an_update_is_in_the_audit_trail() {
    let server = TestServer::start().await;
    update(&server, &server.master, json!({"displayName": "Acme"})).await;
    let data = server.ok(&server.master, "{ auditEvents(first: 100) { edges { node { action } } } }", json!({})).await;
    let actions: Vec<&str> = data["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"organization.settings_updated"), "{actions:?}");
}

#[tokio::test]
async fn concurrent_updates_of_different_fields_both_survive() {
    let server = TestServer::start().await;
    let (a, b) = tokio::join!(
        update(&server, &server.master, json!({"displayName": "Acme"})),
        update(&server, &server.master, json!({"accentColor": "#123456"})),
    );
    assert!(a.get("errors").is_none() && b.get("errors").is_none(), "{a} {b}");
    let data = server.ok(&server.master, READ, json!({})).await;
    assert_eq!(data["organizationSettings"]["displayName"], "Acme");
    assert_eq!(data["organizationSettings"]["accentColor"], "#123456");
}

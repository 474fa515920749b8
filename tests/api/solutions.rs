//! Solutions and solution instances: the import flow end to end, slot matching, values,
//! versions, counting, and referential integrity.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use latchkey::{
    auth::Principal,
    domain::{instances, pagination::PageRequest},
};
use serde_json::{Value, json};

use crate::support::{TestServer, error_code};

const CREATE_SOLUTION: &str =
    "mutation($in: CreateSolutionInput!) { createSolution(input: $in) { solution { id version } } }";
const PUBLISH: &str = "mutation($id: ID!) { publishSolution(input: {solutionId: $id}) { solution { version } } }";
/// The public API's own example, unchanged.
const CONTRACT_CREATE: &str = "mutation ($solutionId: ID!, $name: String!, $authValues: [AuthValue!]!, $configValues: [ConfigValue!]!) { createSolutionInstance(input: {solutionId: $solutionId, instanceName: $name, authValues: $authValues, configValues: $configValues}) { solutionInstance { id name enabled } } }";
const UPDATE: &str = "mutation($in: UpdateSolutionInstanceInput!) { updateSolutionInstance(input: $in) { solutionInstance { id name enabled authValues { externalId authId } configValues { externalId value } } clientMutationId } }";
const INSTANCES: &str = "query($c: SolutionInstanceSearchCriteria, $first: Int) { viewer { solutionInstances(criteria: $c, first: $first) { totalCount edges { node { id name enabled owner solutionVersion authValues { externalId authId } configValues { externalId value }
    workflows { edges { node { id sourceWorkflowId sourceWorkflowName triggerUrl } } }
    solutionVersionFlags { hasNewerVersion requiresUserInputToUpdateVersion requiresSystemInputToUpdateVersion } solution { id title } } } } } }";

struct Setup {
    server: TestServer,
    user: String,
    token: String,
    solution: String,
    zendesk_auth: String,
}

/// A published solution with a Zendesk auth slot, a choice with a default, and a required
/// number; an end user with a Zendesk authentication.
async fn setup() -> Setup {
    let server = TestServer::start().await;
    let (zendesk_service, zendesk_env) = server.builtin_environment("zendesk").await;
    let input = json!({"in": {
        "title": "Zendesk to SQS", "description": "Ticket sync", "tags": ["support", "sync"],
        "customFields": [{"key": "tier", "value": "gold"}],
        "authSlots": [{"externalId": "external_zendesk_authentication", "title": "Zendesk", "serviceId": zendesk_service, "required": true}],
        "configSlots": [
            {"externalId": "region", "title": "Region", "valueType": "CHOICE", "choices": ["\"eu\"", "\"us\""], "defaultValue": "\"eu\""},
            {"externalId": "batch_size", "title": "Batch size", "valueType": "NUMBER", "required": true}
        ],
        "workflows": [{"name": "Sync tickets"}]}});
    let data = server.ok(&server.master, CREATE_SOLUTION, input).await;
    let solution = data["createSolution"]["solution"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        server.ok(&server.master, PUBLISH, json!({"id": solution})).await["publishSolution"]["solution"]["version"],
        1
    );
    let user = server.create_user(&server.master, "sol-user").await;
    let token = server.user_token(&server.master, &user).await;
    let zendesk_auth = server.import_zendesk(&token, &zendesk_env, "zd").await;
    Setup { server, user, token, solution, zendesk_auth }
}

fn contract_variables(s: &Setup, auth_external_id: &str, config: Value) -> Value {
    json!({"solutionId": s.solution, "name": "My sync",
           "authValues": [{"externalId": auth_external_id, "authId": s.zendesk_auth}], "configValues": config})
}

async fn total(s: &Setup, token: &str, criteria: Value) -> i64 {
    let data = s.server.ok(token, INSTANCES, json!({"c": criteria})).await;
    data["viewer"]["solutionInstances"]["totalCount"].as_i64().unwrap()
}

#[tokio::test]
async fn the_import_flow_runs_end_to_end_with_the_contracts_own_query() {
    let s = setup().await;
    // Steps 1-3 happened in setup: user, token, environment lookup, import.
    let data = s
        .server
        .ok(
            &s.token,
            CONTRACT_CREATE,
            contract_variables(
                &s,
                "external_zendesk_authentication",
                json!([{"externalId": "batch_size", "value": "50"}]),
            ),
        )
        .await;
    let instance = &data["createSolutionInstance"]["solutionInstance"];
    assert_eq!(instance["enabled"], false, "new instances are disabled");
    let id = instance["id"].as_str().unwrap().to_owned();

    let enable = json!({"in": {"solutionInstanceId": id, "enabled": true, "errorOnEnablingWithMissingValues": true, "clientMutationId": "go"}});
    let data = s.server.ok(&s.token, UPDATE, enable).await;
    assert_eq!(data["updateSolutionInstance"]["clientMutationId"], "go");
    let listed = s.server.ok(&s.token, INSTANCES, json!({})).await;
    let node = &listed["viewer"]["solutionInstances"]["edges"][0]["node"];
    assert_eq!(node["enabled"], true);
    assert_eq!(node["owner"], s.user.as_str());
    assert_eq!(
        node["authValues"],
        json!([{"externalId": "external_zendesk_authentication", "authId": s.zendesk_auth}])
    );
    assert_eq!(
        node["configValues"],
        json!([{"externalId": "batch_size", "value": "50"}, {"externalId": "region", "value": "\"eu\""}]),
        "the default fills region"
    );
    assert_eq!(node["workflows"]["edges"][0]["node"]["sourceWorkflowName"], "Sync tickets");
    assert_eq!(node["workflows"]["edges"][0]["node"]["triggerUrl"], Value::Null);
    assert_eq!(node["solution"]["title"], "Zendesk to SQS");
    assert_eq!(listed["viewer"]["solutionInstances"]["totalCount"], 1);
}

#[tokio::test]
async fn external_ids_match_exactly_and_errors_list_the_valid_ones() {
    let s = setup().await;
    let body = s
        .server
        .graphql(Some(&s.token), CONTRACT_CREATE, contract_variables(&s, "External_Zendesk_Authentication", json!([])))
        .await;
    assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"));
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("\"External_Zendesk_Authentication\"") && message.contains("external_zendesk_authentication"),
        "{message}"
    );
    let config = json!([{"externalId": "Region", "value": "\"eu\""}]);
    let body = s
        .server
        .graphql(Some(&s.token), CONTRACT_CREATE, contract_variables(&s, "external_zendesk_authentication", config))
        .await;
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("\"Region\"") && message.contains("region, batch_size"), "{message}");
    assert_eq!(total(&s, &s.token, json!({})).await, 0, "a failing create leaves no row");
}

#[tokio::test]
async fn auth_ids_must_be_the_callers_own_and_of_the_slots_service() {
    let s = setup().await;
    let other = s.server.create_user(&s.server.master, "other").await;
    let other_token = s.server.user_token(&s.server.master, &other).await;
    let (_, zendesk_env) = s.server.builtin_environment("zendesk").await;
    let theirs = s.server.import_zendesk(&other_token, &zendesk_env, "theirs").await;
    let (slack_service, slack_env) = s.server.builtin_environment("slack").await;
    let slack = s.server.ok(&s.token, "mutation($s: String!, $e: String!) { createUserAuthentication(input: {name: \"slack\", serviceId: $s, serviceEnvironmentId: $e, data: {access_token: \"xoxb-1-2-abc\"}, formData: {team_id: \"T01\"}}) { authenticationId } }", json!({"s": slack_service, "e": slack_env})).await;
    let slack = slack["createUserAuthentication"]["authenticationId"].as_str().unwrap().to_owned();
    let missing = uuid::Uuid::now_v7().to_string();
    let mut messages = Vec::new();
    for auth in [&theirs, &missing, &slack] {
        let variables = json!({"solutionId": s.solution, "name": "x", "authValues": [{"externalId": "external_zendesk_authentication", "authId": auth}], "configValues": []});
        let body = s.server.graphql(Some(&s.token), CONTRACT_CREATE, variables).await;
        assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"), "{body}");
        messages.push(body["errors"][0]["message"].as_str().unwrap().to_owned());
    }
    assert_eq!(messages[0], messages[1], "a foreign authId answers exactly like a missing one");
    assert!(messages[2].contains("not for the service"), "{}", messages[2]);
    assert_eq!(total(&s, &s.token, json!({})).await, 0);
}

#[tokio::test]
async fn config_values_must_parse_as_their_slot_type() {
    let s = setup().await;
    for config in [
        json!([{"externalId": "batch_size", "value": "\"ten\""}]),
        json!([{"externalId": "region", "value": "\"mars\""}]),
    ] {
        let body = s
            .server
            .graphql(
                Some(&s.token),
                CONTRACT_CREATE,
                contract_variables(&s, "external_zendesk_authentication", config.clone()),
            )
            .await;
        assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"), "{config}");
    }
    assert_eq!(total(&s, &s.token, json!({})).await, 0);
}

#[tokio::test]
async fn updates_merge_values_per_external_id_and_enabling_can_require_them() {
    let s = setup().await;
    let id = s.server.create_instance(&s.token, &s.solution, "partial").await;
    let strict = json!({"in": {"solutionInstanceId": id, "enabled": true, "errorOnEnablingWithMissingValues": true}});
    let body = s.server.graphql(Some(&s.token), UPDATE, strict.clone()).await;
    assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"));
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("external_zendesk_authentication") && message.contains("batch_size"), "{message}");

    let set = json!({"in": {"solutionInstanceId": id, "instanceName": "renamed", "configValues": [{"externalId": "batch_size", "value": "10"}]}});
    let data = s.server.ok(&s.token, UPDATE, set).await;
    let instance = &data["updateSolutionInstance"]["solutionInstance"];
    assert_eq!(instance["name"], "renamed");
    assert_eq!(
        instance["configValues"],
        json!([{"externalId": "batch_size", "value": "10"}, {"externalId": "region", "value": "\"eu\""}])
    );
    let more = json!({"in": {"solutionInstanceId": id, "authValues": [{"externalId": "external_zendesk_authentication", "authId": s.zendesk_auth}], "configValues": [{"externalId": "region", "value": "\"us\""}]}});
    let data = s.server.ok(&s.token, UPDATE, more).await;
    let instance = &data["updateSolutionInstance"]["solutionInstance"];
    assert_eq!(
        instance["configValues"],
        json!([{"externalId": "batch_size", "value": "10"}, {"externalId": "region", "value": "\"us\""}]),
        "batch_size kept"
    );
    assert_eq!(instance["authValues"][0]["authId"], s.zendesk_auth.as_str());
    let data = s.server.ok(&s.token, UPDATE, strict).await;
    assert_eq!(data["updateSolutionInstance"]["solutionInstance"]["enabled"], true);
    let clear = json!({"in": {"solutionInstanceId": id, "enabled": false, "configValues": [{"externalId": "region", "value": null}]}});
    let data = s.server.ok(&s.token, UPDATE, clear).await;
    assert_eq!(
        data["updateSolutionInstance"]["solutionInstance"]["configValues"],
        json!([{"externalId": "batch_size", "value": "10"}])
    );
    // Without the flag, enabling with missing values is allowed.
    let lax = s.server.create_instance(&s.token, &s.solution, "lax").await;
    let data = s.server.ok(&s.token, UPDATE, json!({"in": {"solutionInstanceId": lax, "enabled": true}})).await;
    assert_eq!(data["updateSolutionInstance"]["solutionInstance"]["enabled"], true);
}

fn flags(data: &Value) -> Value {
    data["viewer"]["solutionInstances"]["edges"][0]["node"]["solutionVersionFlags"].clone()
}

#[tokio::test]
async fn version_flags_follow_a_publish_and_upgrade_needs_the_new_required_values() {
    let s = setup().await;
    let id = s.server.create_instance(&s.token, &s.solution, "v1").await;
    let mine = json!({"c": {"id": id}});
    assert_eq!(
        flags(&s.server.ok(&s.token, INSTANCES, mine.clone()).await),
        json!({"hasNewerVersion": false, "requiresUserInputToUpdateVersion": false, "requiresSystemInputToUpdateVersion": false})
    );

    // A new required, visible slot without a default: the user must act.
    let v2 = json!({"id": s.solution, "slots": [
        {"externalId": "region", "title": "Region", "valueType": "CHOICE", "choices": ["\"eu\"", "\"us\""], "defaultValue": "\"eu\""},
        {"externalId": "batch_size", "title": "Batch size", "valueType": "NUMBER", "required": true},
        {"externalId": "queue_name", "title": "Queue", "valueType": "STRING", "required": true}]});
    let update = "mutation($id: ID!, $slots: [ConfigSlotInput!]) { updateSolution(input: {solutionId: $id, configSlots: $slots}) { solution { id } } }";
    s.server.ok(&s.server.master, update, v2).await;
    assert_eq!(
        flags(&s.server.ok(&s.token, INSTANCES, mine.clone()).await)["hasNewerVersion"],
        false,
        "a draft is not a version"
    );
    s.server.ok(&s.server.master, PUBLISH, json!({"id": s.solution})).await;
    assert_eq!(
        flags(&s.server.ok(&s.token, INSTANCES, mine.clone()).await),
        json!({"hasNewerVersion": true, "requiresUserInputToUpdateVersion": true, "requiresSystemInputToUpdateVersion": false})
    );

    let upgrade = "mutation($id: ID!, $auth: [AuthValue!], $config: [ConfigValue!]) { upgradeSolutionInstance(input: {solutionInstanceId: $id, authValues: $auth, configValues: $config}) { solutionInstance { solutionVersion configValues { externalId value } } } }";
    let body = s.server.graphql(Some(&s.token), upgrade, json!({"id": id})).await;
    assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"));
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("queue_name"));
    assert_eq!(
        s.server.ok(&s.token, INSTANCES, mine.clone()).await["viewer"]["solutionInstances"]["edges"][0]["node"]["solutionVersion"],
        1,
        "a refused upgrade changes nothing"
    );

    // A new required hidden slot: the system must act.
    let v3 = json!({"id": s.solution, "slots": [
        {"externalId": "batch_size", "title": "Batch size", "valueType": "NUMBER", "required": true},
        {"externalId": "queue_name", "title": "Queue", "valueType": "STRING", "required": true},
        {"externalId": "internal_key", "title": "Internal", "valueType": "STRING", "required": true, "hidden": true}]});
    s.server.ok(&s.server.master, update, v3).await;
    s.server.ok(&s.server.master, PUBLISH, json!({"id": s.solution})).await;
    assert_eq!(
        flags(&s.server.ok(&s.token, INSTANCES, mine.clone()).await),
        json!({"hasNewerVersion": true, "requiresUserInputToUpdateVersion": true, "requiresSystemInputToUpdateVersion": true})
    );

    let config = json!([{"externalId": "batch_size", "value": "5"}, {"externalId": "queue_name", "value": "\"tickets\""}, {"externalId": "internal_key", "value": "\"k\""}]);
    let auth = json!([{"externalId": "external_zendesk_authentication", "authId": s.zendesk_auth}]);
    let data = s.server.ok(&s.token, upgrade, json!({"id": id, "auth": auth, "config": config})).await;
    let upgraded = &data["upgradeSolutionInstance"]["solutionInstance"];
    assert_eq!(upgraded["solutionVersion"], 3);
    let ids: Vec<&str> =
        upgraded["configValues"].as_array().unwrap().iter().map(|v| v["externalId"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["batch_size", "internal_key", "queue_name"], "region left with its slot");
    assert_eq!(flags(&s.server.ok(&s.token, INSTANCES, mine).await)["hasNewerVersion"], false);
}

#[tokio::test]
async fn total_count_follows_every_criterion_and_owner_is_for_the_master_token() {
    let s = setup().await;
    let a = s.server.create_instance(&s.token, &s.solution, "alpha").await;
    let b = s.server.create_instance(&s.token, &s.solution, "beta").await;
    let other = s.server.create_user(&s.server.master, "other").await;
    let other_token = s.server.user_token(&s.server.master, &other).await;
    s.server.create_instance(&other_token, &s.solution, "alpha").await;
    let second = s.server.publish_solution(&s.server.master, "Other solution").await;
    s.server.create_instance(&s.token, &second, "gamma").await;

    assert_eq!(total(&s, &s.token, json!({})).await, 3);
    assert_eq!(total(&s, &s.server.master, json!({})).await, 4);
    assert_eq!(total(&s, &s.token, json!({"id": a})).await, 1);
    assert_eq!(total(&s, &s.token, json!({"ids": [a, b]})).await, 2);
    assert_eq!(total(&s, &s.token, json!({"name": "alpha"})).await, 1);
    assert_eq!(total(&s, &s.server.master, json!({"name": "alpha"})).await, 2);
    assert_eq!(total(&s, &s.server.master, json!({"owner": other})).await, 1);
    assert_eq!(total(&s, &s.token, json!({"solutionId": s.solution})).await, 2);
    assert_eq!(total(&s, &other_token, json!({"id": a})).await, 0, "another user's instance is not seen");
    let body = s.server.graphql(Some(&s.token), INSTANCES, json!({"c": {"owner": s.user}})).await;
    assert_eq!(error_code(&body).as_deref(), Some("FORBIDDEN"));
    let page = s.server.ok(&s.server.master, INSTANCES, json!({"first": 1})).await;
    assert_eq!(page["viewer"]["solutionInstances"]["totalCount"], 4, "the count covers every page");
    assert_eq!(page["viewer"]["solutionInstances"]["edges"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_page_of_instances_costs_the_same_statements_whatever_its_size() {
    let s = setup().await;
    for n in 0..12 {
        let id = s.server.create_instance(&s.token, &s.solution, &format!("i{n}")).await;
        let values = json!({"in": {"solutionInstanceId": id, "authValues": [{"externalId": "external_zendesk_authentication", "authId": s.zendesk_auth}], "configValues": [{"externalId": "batch_size", "value": "1"}]}});
        s.server.ok(&s.token, UPDATE, values).await;
    }
    let second = s.server.publish_solution(&s.server.master, "Other").await;
    s.server.create_instance(&s.token, &second, "other").await;

    let config = s.server.storage.config(|_| {});
    let mut db = latchkey::db::connect(&config).await.unwrap();
    let statements = Arc::new(AtomicUsize::new(0));
    let counter = statements.clone();
    db.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let app = latchkey::App::build(&s.server.storage.config(|_| {})).await.unwrap();
    let Principal::User(scope) =
        app.state.authenticator.authenticate(Some(&format!("Bearer {}", s.token))).await.unwrap()
    else {
        panic!("a user token");
    };
    let mut counts = Vec::new();
    for size in [1, 5, 13] {
        statements.store(0, Ordering::SeqCst);
        let page = PageRequest::new(Some(size), None, None, None).unwrap();
        let (page, total) =
            instances::list(&db, latchkey::auth::Caller::User(&scope), instances::Criteria::default(), &page)
                .await
                .unwrap();
        assert_eq!(page.items.len(), size as usize);
        assert_eq!(total, 13);
        assert!(
            page.items
                .iter()
                .all(|i| i.config_values.contains_key("batch_size") || i.solution_id.to_string() == second)
        );
        counts.push(statements.load(Ordering::SeqCst));
    }
    assert_eq!(counts, vec![6, 6, 6], "page, count, auth values, config values, solutions, versions");
}

#[tokio::test]
async fn access_is_the_owners_and_the_master_token_only_reads() {
    let s = setup().await;
    let id = s.server.create_instance(&s.token, &s.solution, "mine").await;
    let body = s
        .server
        .graphql(
            Some(&s.server.master),
            CONTRACT_CREATE,
            contract_variables(&s, "external_zendesk_authentication", json!([])),
        )
        .await;
    assert_eq!(error_code(&body).as_deref(), Some("FORBIDDEN"), "the master token does not create instances");
    let master_b = s.server.other_org().await;
    let user_b = s.server.create_user(&master_b, "b").await;
    let user_b = s.server.user_token(&master_b, &user_b).await;
    let body = s
        .server
        .graphql(Some(&user_b), UPDATE, json!({"in": {"solutionInstanceId": id, "instanceName": "stolen"}}))
        .await;
    assert_eq!(error_code(&body).as_deref(), Some("NOT_FOUND"));
    assert_eq!(total(&s, &master_b, json!({})).await, 0, "another organization sees none");
    let solutions = s.server.ok(&user_b, "{ viewer { solutions { edges { node { id } } } } }", json!({})).await;
    assert_eq!(solutions["viewer"]["solutions"]["edges"], json!([]));
    let body = s
        .server
        .graphql(
            Some(&user_b),
            CONTRACT_CREATE,
            json!({"solutionId": s.solution, "name": "x", "authValues": [], "configValues": []}),
        )
        .await;
    assert_eq!(error_code(&body).as_deref(), Some("NOT_FOUND"));
}

#[tokio::test]
async fn solution_lists_show_what_can_be_activated_and_tags_filter_them() {
    let s = setup().await;
    s.server.ok(&s.server.master, CREATE_SOLUTION, json!({"in": {"title": "Draft only", "tags": ["support"]}})).await;
    let query = "query($tags: [String!]) { viewer { solutions(criteria: {tags: $tags}) { edges { node { title tags version customFields { key value } configSlots { externalId title defaultValue } authSlots { externalId title } } } } } }";
    let as_user = s.server.ok(&s.token, query, json!({})).await;
    let edges = as_user["viewer"]["solutions"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1);
    let node = &edges[0]["node"];
    assert_eq!(node["version"], 1);
    assert_eq!(node["customFields"], json!([{"key": "tier", "value": "gold"}]));
    assert_eq!(node["configSlots"][0], json!({"externalId": "region", "title": "Region", "defaultValue": "\"eu\""}));
    assert_eq!(node["authSlots"], json!([{"externalId": "external_zendesk_authentication", "title": "Zendesk"}]));
    // The master token's list is what can be activated too: the draft is not in it.
    let as_master = s.server.ok(&s.server.master, query, json!({"tags": ["support"]})).await;
    let titles = |data: &Value| {
        let edges = data["viewer"]["solutions"]["edges"].as_array().unwrap().clone();
        edges.iter().map(|edge| edge["node"]["title"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(titles(&as_master), ["Zendesk to SQS"]);
    let both = s.server.ok(&s.server.master, query, json!({"tags": ["support", "sync"]})).await;
    assert_eq!(titles(&both), ["Zendesk to SQS"]);
}

#[tokio::test]
async fn drafts_are_listed_for_the_master_token_only_when_asked_for() {
    let s = setup().await;
    let data = s.server.ok(&s.server.master, CREATE_SOLUTION, json!({"in": {"title": "Draft only"}})).await;
    let draft = data["createSolution"]["solution"]["id"].as_str().unwrap().to_owned();
    let edit = "mutation($in: UpdateSolutionInput!) { updateSolution(input: $in) { solution { title } } }";
    s.server.ok(&s.server.master, edit, json!({"in": {"solutionId": s.solution, "title": "Zendesk to SQS v2"}})).await;
    let query = "query($c: SolutionSearchCriteria) { viewer { solutions(criteria: $c) { edges { node { id title version } } } } }";
    let nodes = |data: Value| {
        data["viewer"]["solutions"]["edges"].as_array().unwrap().iter().map(|e| e["node"].clone()).collect::<Vec<_>>()
    };

    let published = nodes(s.server.ok(&s.server.master, query, json!({})).await);
    assert_eq!(published, [json!({"id": s.solution, "title": "Zendesk to SQS", "version": 1})]);
    let everything = nodes(s.server.ok(&s.server.master, query, json!({"c": {"includeDrafts": true}})).await);
    assert_eq!(
        everything,
        [
            json!({"id": s.solution, "title": "Zendesk to SQS v2", "version": 1}),
            json!({"id": draft, "title": "Draft only", "version": 0})
        ]
    );

    let body = s.server.graphql(Some(&s.token), query, json!({"c": {"includeDrafts": true}})).await;
    assert_eq!(error_code(&body).as_deref(), Some("FORBIDDEN"), "{body}");
}

#[tokio::test]
async fn authentications_in_use_and_solutions_with_instances_cannot_be_removed() {
    let s = setup().await;
    let variables = contract_variables(&s, "external_zendesk_authentication", json!([]));
    let data = s.server.ok(&s.token, CONTRACT_CREATE, variables).await;
    let instance = data["createSolutionInstance"]["solutionInstance"]["id"].as_str().unwrap().to_owned();
    let remove_auth =
        "mutation($id: ID!) { removeAuthentication(input: {authenticationId: $id}) { clientMutationId } }";
    let body = s.server.graphql(Some(&s.token), remove_auth, json!({"id": s.zendesk_auth})).await;
    assert_eq!(error_code(&body).as_deref(), Some("CONFLICT"));
    assert!(body["errors"][0]["message"].as_str().unwrap().contains(&instance), "the message names the instance");
    let remove_solution = "mutation($id: ID!) { removeSolution(input: {solutionId: $id}) { clientMutationId } }";
    let body = s.server.graphql(Some(&s.server.master), remove_solution, json!({"id": s.solution})).await;
    assert_eq!(error_code(&body).as_deref(), Some("CONFLICT"));

    // Removing the user removes their instances, then their authentications.
    s.server
        .ok(
            &s.server.master,
            "mutation($u: ID!) { removeExternalUser(input: {userId: $u}) { clientMutationId } }",
            json!({"u": s.user}),
        )
        .await;
    assert_eq!(total(&s, &s.server.master, json!({})).await, 0);
    s.server.ok(&s.server.master, remove_solution, json!({"id": s.solution})).await;
}

#[tokio::test]
async fn instance_changes_leave_audit_events() {
    let s = setup().await;
    let id = s.server.create_instance(&s.token, &s.solution, "audited").await;
    for enabled in [true, false] {
        s.server.ok(&s.token, UPDATE, json!({"in": {"solutionInstanceId": id, "enabled": enabled}})).await;
    }
    s.server
        .ok(
            &s.token,
            "mutation($id: ID!) { removeSolutionInstance(input: {solutionInstanceId: $id}) { clientMutationId } }",
            json!({"id": id}),
        )
        .await;
    let events = s
        .server
        .ok(&s.server.master, "{ auditEvents(first: 100) { edges { node { action targetId } } } }", json!({}))
        .await;
    let actions: Vec<String> = events["auditEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["targetId"] == id.as_str())
        .map(|e| e["node"]["action"].as_str().unwrap().to_owned())
        .collect();
    for action in [
        "solution_instance.created",
        "solution_instance.updated",
        "solution_instance.enabled",
        "solution_instance.disabled",
        "solution_instance.removed",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
    }
}

/// The public API's examples send plain strings as `Json` values and get them back as sent;
/// JSON text keeps its meaning, and text that is JSON (`50`) is JSON, not a string.
#[tokio::test]
async fn plain_string_config_values_round_trip_exactly_as_given() {
    let server = TestServer::start().await;
    let input = json!({"in": {"title": "Mailer", "configSlots": [
        {"externalId": "support_email", "title": "Support email", "valueType": "STRING", "defaultValue": "support@example.com"},
        {"externalId": "zip", "title": "Zip code", "valueType": "STRING"},
        {"externalId": "batch_size", "title": "Batch size", "valueType": "NUMBER"}
    ]}});
    let data = server.ok(&server.master, CREATE_SOLUTION, input).await;
    let solution = data["createSolution"]["solution"]["id"].as_str().unwrap().to_owned();
    server.ok(&server.master, PUBLISH, json!({"id": solution})).await;
    let user = server.create_user(&server.master, "mailer-user").await;
    let token = server.user_token(&server.master, &user).await;

    let slots = server
        .ok(
            &token,
            "{ viewer { solutions { edges { node { configSlots { externalId defaultValue } } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        slots["viewer"]["solutions"]["edges"][0]["node"]["configSlots"],
        json!([{"externalId": "support_email", "defaultValue": "support@example.com"},
               {"externalId": "zip", "defaultValue": "null"},
               {"externalId": "batch_size", "defaultValue": "null"}])
    );

    let config = json!([{"externalId": "zip", "value": "\"10001\""}, {"externalId": "batch_size", "value": "50"}]);
    let created = server
        .ok(
            &token,
            CONTRACT_CREATE,
            json!({"solutionId": solution, "name": "Mine", "authValues": [], "configValues": config}),
        )
        .await;
    let instance = created["createSolutionInstance"]["solutionInstance"]["id"].as_str().unwrap().to_owned();
    let values = |data: &Value| data["updateSolutionInstance"]["solutionInstance"]["configValues"].clone();
    let data = server.ok(&token, UPDATE, json!({"in": {"solutionInstanceId": instance}})).await;
    assert_eq!(
        values(&data),
        json!([{"externalId": "batch_size", "value": "50"},
               {"externalId": "support_email", "value": "support@example.com"},
               {"externalId": "zip", "value": "\"10001\""}])
    );

    let update = |value: &str| json!({"in": {"solutionInstanceId": instance, "configValues": [{"externalId": "support_email", "value": value}]}});
    let data = server.ok(&token, UPDATE, update("help desk <help@example.com>")).await;
    assert_eq!(values(&data)[1]["value"], "help desk <help@example.com>");
    let data = server.ok(&token, UPDATE, update("\"help@example.com\"")).await;
    assert_eq!(values(&data)[1]["value"], "\"help@example.com\"", "JSON text comes back as JSON text");
    let reread = server.ok(&token, INSTANCES, json!({"c": {"id": instance}})).await;
    assert_eq!(
        reread["viewer"]["solutionInstances"]["edges"][0]["node"]["configValues"][1]["value"],
        "\"help@example.com\""
    );

    // Text that is JSON is JSON: a bare 10001 is a number, refused by a string slot with a hint.
    let zip =
        json!({"in": {"solutionInstanceId": instance, "configValues": [{"externalId": "zip", "value": "10001"}]}});
    let body = server.graphql(Some(&token), UPDATE, zip).await;
    assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("with quotes"), "{body}");
    // Text that opens like JSON but is broken is refused, not stored as a string.
    let broken = json!({"in": {"solutionInstanceId": instance, "configValues": [{"externalId": "support_email", "value": "{\"a\":"}]}});
    assert!(server.graphql(Some(&token), UPDATE, broken).await.get("errors").is_some());
}

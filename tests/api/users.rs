//! End users, user tokens and authorization codes, as the partner backend uses them.

use latchkey::domain::users;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};

use crate::support::{TestServer, error_code};

const CREATE: &str = "mutation($name: String!, $ext: String!, $test: Boolean, $cmid: String) {
    createExternalUser(input: {name: $name, externalUserId: $ext, isTestUser: $test, clientMutationId: $cmid}) { userId clientMutationId } }";
const UPDATE: &str = "mutation($id: ID!, $name: String, $test: Boolean) {
    updateExternalUser(input: {userId: $id, name: $name, isTestUser: $test, clientMutationId: \"u1\"}) {
        user { id name externalUserId isTestUser } clientMutationId } }";
const REMOVE: &str =
    "mutation($id: ID!) { removeExternalUser(input: {userId: $id, clientMutationId: \"r1\"}) { clientMutationId } }";
const USERS: &str = "query($c: UserSearchCriteria, $first: Int, $after: String, $last: Int, $before: String) {
    users(criteria: $c, first: $first, after: $after, last: $last, before: $before) {
        edges { node { id name externalUserId isTestUser } cursor }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";
const DETAILS: &str = "{ viewer { details { username email name } } }";

fn ids(data: &Value) -> Vec<String> {
    data["users"]["edges"].as_array().unwrap().iter().map(|e| e["node"]["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn creating_a_user_returns_its_id_and_echoes_the_client_mutation_id() {
    let server = TestServer::start().await;
    let data = server
        .ok(&server.master, CREATE, json!({"name": "Ann Lee", "ext": "ann-1", "test": true, "cmid": "abc-123"}))
        .await;
    assert_eq!(data["createExternalUser"]["clientMutationId"], "abc-123");
    let id = data["createExternalUser"]["userId"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());

    let listed = server.ok(&server.master, USERS, json!({"c": {"userId": id}})).await;
    assert_eq!(
        listed["users"]["edges"][0]["node"],
        json!({"id": id, "name": "Ann Lee", "externalUserId": "ann-1", "isTestUser": true})
    );

    let without = server.ok(&server.master, CREATE, json!({"name": "Bo", "ext": "bo-1"})).await;
    assert_eq!(without["createExternalUser"]["clientMutationId"], Value::Null);
}

#[tokio::test]
async fn an_external_user_id_is_unique_within_an_organization_only() {
    let server = TestServer::start().await;
    server.create_user(&server.master, "dup").await;
    let again = server.graphql(Some(&server.master), CREATE, json!({"name": "Other", "ext": "dup"})).await;
    assert_eq!(error_code(&again).as_deref(), Some("CONFLICT"));
    assert!(again["errors"][0]["message"].as_str().unwrap().contains("dup"));

    let other_org = server.other_org().await;
    server.create_user(&other_org, "dup").await;
}

#[tokio::test]
async fn empty_oversized_and_malformed_input_is_bad_user_input_and_stores_nothing() {
    let server = TestServer::start().await;
    let long = "x".repeat(300);
    for (name, ext) in [("", "e1"), ("   ", "e2"), ("ok", ""), (long.as_str(), "e3"), ("ok", long.as_str())] {
        let body = server.graphql(Some(&server.master), CREATE, json!({"name": name, "ext": ext})).await;
        assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"), "{name:?}/{ext:?}: {body}");
    }
    let listed = server.ok(&server.master, USERS, json!({})).await;
    assert!(ids(&listed).is_empty());

    let bad_id = server.graphql(Some(&server.master), UPDATE, json!({"id": "not-a-uuid", "name": "x"})).await;
    assert_eq!(error_code(&bad_id).as_deref(), Some("BAD_USER_INPUT"));
    let bad_cursor = server.graphql(Some(&server.master), USERS, json!({"after": "!!"})).await;
    assert_eq!(error_code(&bad_cursor).as_deref(), Some("BAD_USER_INPUT"));
    let too_many = server.graphql(Some(&server.master), USERS, json!({"first": 10_000})).await;
    assert_eq!(error_code(&too_many).as_deref(), Some("BAD_USER_INPUT"));
}

#[tokio::test]
async fn updating_a_user_changes_only_the_given_fields() {
    let server = TestServer::start().await;
    let id = server.create_user(&server.master, "u-upd").await;
    let data = server.ok(&server.master, UPDATE, json!({"id": id, "test": true})).await;
    assert_eq!(
        data["updateExternalUser"],
        json!({"user": {"id": id, "name": "Test User", "externalUserId": "u-upd", "isTestUser": true}, "clientMutationId": "u1"})
    );
    let data = server.ok(&server.master, UPDATE, json!({"id": id, "name": "Renamed"})).await;
    assert_eq!(data["updateExternalUser"]["user"]["name"], "Renamed");
    assert_eq!(data["updateExternalUser"]["user"]["isTestUser"], true);
}

#[tokio::test]
async fn a_foreign_user_id_answers_exactly_like_a_missing_one_and_changes_nothing() {
    let server = TestServer::start().await;
    let other_org = server.other_org().await;
    let foreign = server.create_user(&other_org, "theirs").await;
    let missing = uuid::Uuid::now_v7().to_string();
    for query in [UPDATE, REMOVE] {
        let on_foreign = server.graphql(Some(&server.master), query, json!({"id": foreign, "name": "hijacked"})).await;
        let on_missing = server.graphql(Some(&server.master), query, json!({"id": missing, "name": "hijacked"})).await;
        assert_eq!(error_code(&on_foreign).as_deref(), Some("NOT_FOUND"));
        assert_eq!(on_foreign["errors"][0]["message"], on_missing["errors"][0]["message"]);
    }
    let theirs = server.ok(&other_org, USERS, json!({"c": {"userId": foreign}})).await;
    assert_eq!(theirs["users"]["edges"][0]["node"]["name"], "Test User");
    // Lists never show another organization's users.
    let ours = server.ok(&server.master, USERS, json!({})).await;
    assert!(!ids(&ours).contains(&foreign));
}

#[tokio::test]
async fn search_criteria_filter_the_users() {
    let server = TestServer::start().await;
    let a = server.create_user(&server.master, "crit-a").await;
    let b = server.ok(&server.master, CREATE, json!({"name": "Bea", "ext": "crit-b", "test": true})).await;
    let b = b["createExternalUser"]["userId"].as_str().unwrap().to_owned();
    let cases = [
        (json!({"externalUserId": "crit-a"}), vec![a.clone()]),
        (json!({"name": "Bea"}), vec![b.clone()]),
        (json!({"isTestUser": true}), vec![b.clone()]),
        (json!({"isTestUser": false}), vec![a.clone()]),
        (json!({"userId": a, "isTestUser": true}), vec![]),
        (json!({}), vec![a.clone(), b.clone()]),
    ];
    for (criteria, expected) in cases {
        let data = server.ok(&server.master, USERS, json!({"c": criteria})).await;
        assert_eq!(ids(&data), expected, "criteria {criteria}");
    }
}

#[tokio::test]
async fn pagination_walks_forwards_and_backwards_across_page_boundaries() {
    let server = TestServer::start().await;
    let mut all = Vec::new();
    for n in 0..7 {
        all.push(server.create_user(&server.master, &format!("page-{n}")).await);
    }
    // Forwards in pages of 3: [0,1,2] [3,4,5] [6].
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let data = server.ok(&server.master, USERS, json!({"first": 3, "after": after})).await;
        let info = data["users"]["pageInfo"].clone();
        seen.extend(ids(&data));
        pages.push((info["hasPreviousPage"].as_bool().unwrap(), info["hasNextPage"].as_bool().unwrap()));
        if !info["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = info["endCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, all);
    assert_eq!(pages, vec![(false, true), (true, true), (true, false)]);

    // Backwards in pages of 3: [4,5,6] [1,2,3] [0].
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let data = server.ok(&server.master, USERS, json!({"last": 3, "before": before})).await;
        let info = data["users"]["pageInfo"].clone();
        let mut page = ids(&data);
        page.extend(seen);
        seen = page;
        pages.push((info["hasPreviousPage"].as_bool().unwrap(), info["hasNextPage"].as_bool().unwrap()));
        if !info["hasPreviousPage"].as_bool().unwrap() {
            break;
        }
        before = info["startCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, all);
    assert_eq!(pages, vec![(true, false), (true, true), (false, true)]);

    // Cursors are per edge: starting after the second edge gives the rest.
    let first = server.ok(&server.master, USERS, json!({"first": 2})).await;
    let cursor = first["users"]["edges"][1]["cursor"].as_str().unwrap();
    let rest = server.ok(&server.master, USERS, json!({"after": cursor})).await;
    assert_eq!(ids(&rest), all[2..].to_vec());
    // An empty page still says what lies before it.
    let empty = server.ok(&server.master, USERS, json!({"first": 0})).await;
    assert_eq!(empty["users"]["pageInfo"]["hasNextPage"], true);
}

#[tokio::test]
async fn a_user_token_identifies_its_user_and_the_master_token_its_organization() {
    let server = TestServer::start().await;
    let id = server.create_user(&server.master, "viewer-1").await;
    let token = server.user_token(&server.master, &id).await;
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let mine = server.ok(&token, DETAILS, json!({})).await;
    // latchkey keeps no email addresses; `email` is never null, as published.
    assert_eq!(mine["viewer"]["details"], json!({"username": "viewer-1", "email": "", "name": "Test User"}));
    let org = server.ok(&server.master, DETAILS, json!({})).await;
    assert_eq!(org["viewer"]["details"], json!({"username": "default", "email": "", "name": "default"}));
}

#[tokio::test]
async fn removing_a_user_invalidates_their_tokens_at_once() {
    let server = TestServer::start().await;
    let id = server.create_user(&server.master, "leaver").await;
    let token = server.user_token(&server.master, &id).await;
    server.ok(&token, DETAILS, json!({})).await;
    let removed = server.ok(&server.master, REMOVE, json!({"id": id})).await;
    assert_eq!(removed["removeExternalUser"]["clientMutationId"], "r1");
    let after = server.graphql(Some(&token), DETAILS, json!({})).await;
    assert_eq!(error_code(&after).as_deref(), Some("UNAUTHENTICATED"));
    let listed = server.ok(&server.master, USERS, json!({"c": {"userId": id}})).await;
    assert!(ids(&listed).is_empty());
    // Re-creating the same external id yields a new user the old token cannot reach.
    let again = server.create_user(&server.master, "leaver").await;
    assert_ne!(again, id);
    let still = server.graphql(Some(&token), DETAILS, json!({})).await;
    assert_eq!(error_code(&still).as_deref(), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn revoking_a_users_tokens_keeps_the_user_and_new_tokens_work() {
    let server = TestServer::start().await;
    let id = server.create_user(&server.master, "revoked").await;
    let old = server.user_token(&server.master, &id).await;
    // Used once first, so the server has seen it valid.
    server.ok(&old, DETAILS, json!({})).await;
    server
        .ok(
            &server.master,
            "mutation($u: ID!) { revokeUserTokens(input: {userId: $u}) { clientMutationId } }",
            json!({"u": id}),
        )
        .await;
    let refused = server.graphql(Some(&old), DETAILS, json!({})).await;
    assert_eq!(error_code(&refused).as_deref(), Some("UNAUTHENTICATED"));
    let fresh = server.user_token(&server.master, &id).await;
    server.ok(&fresh, DETAILS, json!({})).await;
}

#[tokio::test]
async fn authorization_codes_are_single_use_and_expire() {
    let server = TestServer::start().await;
    let id = server.create_user(&server.master, "coder").await;
    let generate = "mutation($u: ID!) { generateAuthorizationCode(input: {userId: $u, clientMutationId: \"g\"}) { authorizationCode clientMutationId } }";
    let data = server.ok(&server.master, generate, json!({"u": id})).await;
    assert_eq!(data["generateAuthorizationCode"]["clientMutationId"], "g");
    let code = data["generateAuthorizationCode"]["authorizationCode"].as_str().unwrap().to_owned();

    let org = latchkey::ids::OrgId(server.org_of(&server.master).await);
    let other_org = latchkey::ids::OrgId(server.org_of(&server.other_org().await).await);
    assert!(
        users::redeem_authorization_code(&server.db, other_org, &code).await.is_err(),
        "another organization's code is refused"
    );
    let user = users::redeem_authorization_code(&server.db, org, &code).await.expect("first use works");
    assert_eq!(user.id.to_string(), id);
    assert!(users::redeem_authorization_code(&server.db, org, &code).await.is_err(), "second use is refused");
    assert!(users::redeem_authorization_code(&server.db, org, "lk_code_made-up").await.is_err());

    let data = server.ok(&server.master, generate, json!({"u": id})).await;
    let late = data["generateAuthorizationCode"]["authorizationCode"].as_str().unwrap().to_owned();
    let row = entity::authorization_code::Entity::find()
        .all(&server.db)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.consumed_at.is_none())
        .unwrap();
    let mut row: entity::authorization_code::ActiveModel = row.into();
    row.expires_at = Set(chrono::Utc::now() - chrono::Duration::seconds(1));
    row.update(&server.db).await.unwrap();
    assert!(users::redeem_authorization_code(&server.db, org, &late).await.is_err(), "an expired code is refused");
}

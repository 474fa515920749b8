//! The access table: every field of `Query`, `Mutation` and `Viewer`, with the token it
//! takes. The tests drive each field with every kind of caller and compare with the
//! table; a field missing from the table fails them, so no field ships unguarded.

use std::collections::BTreeSet;

use serde_json::json;

use crate::support::{TestServer, error_code};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Master,
    MasterOrUser,
}

impl Access {
    fn sdl(self) -> &'static str {
        match self {
            Access::Master => "@access(token: MASTER)",
            Access::MasterOrUser => "@access(token: MASTER_OR_USER)",
        }
    }
}

/// One row: type, field, access, whether the operation names an object by id, and the
/// operation (`$id` is an end user of organization A, made fresh for each call).
struct Row {
    ty: &'static str,
    field: &'static str,
    access: Access,
    takes_id: bool,
    operation: &'static str,
}

const TABLE: &[Row] = &[
    Row {
        ty: "Query",
        field: "users",
        access: Access::Master,
        takes_id: false,
        operation: "query($id: ID) { users(criteria: {userId: $id}) { edges { node { id } } } }",
    },
    Row {
        ty: "Query",
        field: "viewer",
        access: Access::MasterOrUser,
        takes_id: false,
        operation: "{ viewer { __typename } }",
    },
    Row {
        ty: "Viewer",
        field: "details",
        access: Access::MasterOrUser,
        takes_id: false,
        operation: "{ viewer { details { username } } }",
    },
    Row {
        ty: "Mutation",
        field: "createExternalUser",
        access: Access::Master,
        takes_id: false,
        operation: "mutation { createExternalUser(input: {name: \"n\", externalUserId: \"matrix-new\"}) { userId } }",
    },
    Row {
        ty: "Mutation",
        field: "updateExternalUser",
        access: Access::Master,
        takes_id: true,
        operation: "mutation($id: ID!) { updateExternalUser(input: {userId: $id, name: \"changed\"}) { user { id } } }",
    },
    Row {
        ty: "Mutation",
        field: "removeExternalUser",
        access: Access::Master,
        takes_id: true,
        operation: "mutation($id: ID!) { removeExternalUser(input: {userId: $id}) { clientMutationId } }",
    },
    Row {
        ty: "Mutation",
        field: "authorize",
        access: Access::Master,
        takes_id: true,
        operation: "mutation($id: ID!) { authorize(input: {userId: $id}) { accessToken } }",
    },
    Row {
        ty: "Mutation",
        field: "generateAuthorizationCode",
        access: Access::Master,
        takes_id: true,
        operation: "mutation($id: ID!) { generateAuthorizationCode(input: {userId: $id}) { authorizationCode } }",
    },
    Row {
        ty: "Mutation",
        field: "revokeUserTokens",
        access: Access::Master,
        takes_id: true,
        operation: "mutation($id: ID!) { revokeUserTokens(input: {userId: $id}) { clientMutationId } }",
    },
];

#[derive(Clone, Copy, Debug)]
enum Caller {
    NoToken,
    BadToken,
    ForgedMasterToken,
    MasterA,
    MasterB,
    User1A,
    User2A,
    UserB,
}

const CALLERS: [Caller; 8] = [
    Caller::NoToken,
    Caller::BadToken,
    Caller::ForgedMasterToken,
    Caller::MasterA,
    Caller::MasterB,
    Caller::User1A,
    Caller::User2A,
    Caller::UserB,
];

/// The error code the table promises, or `None` for success.
fn expected(row: &Row, caller: Caller) -> Option<&'static str> {
    match (caller, row.access) {
        (Caller::NoToken | Caller::BadToken | Caller::ForgedMasterToken, _) => Some("UNAUTHENTICATED"),
        (_, Access::MasterOrUser) => None,
        (Caller::MasterA, Access::Master) => None,
        // Another organization's master token: the id is simply not found there.
        (Caller::MasterB, Access::Master) => row.takes_id.then_some("NOT_FOUND"),
        (Caller::User1A | Caller::User2A | Caller::UserB, Access::Master) => Some("FORBIDDEN"),
    }
}

#[tokio::test]
async fn every_field_answers_every_kind_of_caller_as_the_access_table_says() {
    let server = TestServer::start().await;
    let master_b = server.other_org().await;
    let user1 = server.create_user(&server.master, "matrix-1").await;
    let user2 = server.create_user(&server.master, "matrix-2").await;
    let user_b = server.create_user(&master_b, "matrix-b").await;
    let user1_token = server.user_token(&server.master, &user1).await;
    let user2_token = server.user_token(&server.master, &user2).await;
    let user_b_token = server.user_token(&master_b, &user_b).await;

    let mut failures = Vec::new();
    for (n, row) in TABLE.iter().enumerate() {
        for (m, caller) in CALLERS.iter().enumerate() {
            let target = server.create_user(&server.master, &format!("target-{n}-{m}")).await;
            let token = match caller {
                Caller::NoToken => None,
                Caller::BadToken => Some("not-a-token".to_owned()),
                Caller::ForgedMasterToken => Some(format!("lk_master_{}", "A".repeat(43))),
                Caller::MasterA => Some(server.master.clone()),
                Caller::MasterB => Some(master_b.clone()),
                Caller::User1A => Some(user1_token.clone()),
                Caller::User2A => Some(user2_token.clone()),
                Caller::UserB => Some(user_b_token.clone()),
            };
            let operation = row.operation.replace("matrix-new", &format!("matrix-new-{n}-{m}"));
            let body = server.graphql(token.as_deref(), &operation, json!({"id": target})).await;
            let got = error_code(&body);
            if got.as_deref() != expected(row, *caller) {
                failures.push(format!(
                    "{}.{} as {caller:?}: expected {:?}, got {body}",
                    row.ty,
                    row.field,
                    expected(row, *caller)
                ));
            }
            // A refused call changes nothing: the target still exists, unchanged.
            if got.is_some() {
                let check = server
                    .ok(
                        &server.master,
                        "query($id: ID) { users(criteria: {userId: $id}) { edges { node { name } } } }",
                        json!({"id": target}),
                    )
                    .await;
                if check["users"]["edges"][0]["node"]["name"] != "Test User" {
                    failures.push(format!("{}.{} as {caller:?} was refused but changed the target", row.ty, row.field));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn every_field_of_the_schema_has_a_row_in_the_access_table() {
    let server = TestServer::start().await;
    for ty in ["Query", "Mutation", "Viewer"] {
        let body =
            server.graphql(None, "query($t: String!) { __type(name: $t) { fields { name } } }", json!({"t": ty})).await;
        let in_schema: BTreeSet<String> = body["data"]["__type"]["fields"]
            .as_array()
            .expect("introspection works without a token")
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect();
        let in_table: BTreeSet<String> = TABLE.iter().filter(|r| r.ty == ty).map(|r| r.field.to_owned()).collect();
        assert_eq!(in_schema, in_table, "fields of {ty} vs the access table");
    }
}

#[test]
fn schema_graphql_shows_the_token_of_every_field() {
    let sdl = latchkey::graphql::sdl();
    for row in TABLE {
        let block_start = sdl.find(&format!("type {} {{", row.ty)).unwrap_or_else(|| panic!("type {}", row.ty));
        let block = &sdl[block_start..block_start + sdl[block_start..].find("\n}").unwrap()];
        let line = block
            .lines()
            .find(|line| {
                line.trim_start().starts_with(&format!("{}(", row.field))
                    || line.trim_start().starts_with(&format!("{}:", row.field))
            })
            .unwrap_or_else(|| panic!("{}.{} in the SDL", row.ty, row.field));
        assert!(line.contains(row.access.sdl()), "{}.{}: {line}", row.ty, row.field);
    }
}

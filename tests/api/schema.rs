//! The committed `schema.graphql` is the schema the code exports.

#[test]
fn schema_graphql_matches_the_exported_sdl() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).expect("schema.graphql");
    let exported = latchkey::graphql::sdl();
    assert!(
        committed == exported,
        "schema.graphql is out of date: run `cargo run -- schema > schema.graphql` and commit it"
    );
}

#[test]
fn the_schema_uses_the_contracts_type_names() {
    let sdl = latchkey::graphql::sdl();
    for name in [
        "type ExternalUser",
        "type UserConnection",
        "type UserConnectionEdge",
        "type PageInfo",
        "type UserDetails",
        "input UserSearchCriteria",
        "input CreateExternalUserInput",
        "input UpdateExternalUserInput",
        "input RemoveExternalUserInput",
        "input AuthorizeInput",
        "input GenerateAuthorizationCodeInput",
        "scalar DateTime",
    ] {
        assert!(
            sdl.lines().any(|line| line == name || line.starts_with(&format!("{name} "))),
            "{name} is missing from the schema"
        );
    }
}

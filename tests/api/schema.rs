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

/// One type of a schema, as `tests/fixtures/public-schema.md` writes it: kind, interfaces,
/// and each field's type and arguments, types written as in SDL (`[String!]!`).
#[derive(Debug, Default)]
struct TypeShape {
    kind: String,
    interfaces: std::collections::BTreeSet<String>,
    fields: std::collections::BTreeMap<String, (String, std::collections::BTreeMap<String, String>)>,
}

/// The published types, from the fenced block of the committed copy of the public schema.
fn published_types() -> std::collections::BTreeMap<String, TypeShape> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/public-schema.md"))
        .expect("tests/fixtures/public-schema.md");
    let block = text.split("```").nth(1).expect("a fenced block of types");
    let mut types = std::collections::BTreeMap::new();
    for line in block.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let (head, body) = line.split_once('{').map_or((line, ""), |(head, body)| (head, body));
        let mut words = head.split_whitespace();
        let kind = words.next().unwrap().to_owned();
        let name = words.next().unwrap().to_owned();
        let interfaces = match words.next() {
            Some("implements") => words.filter(|word| *word != "&").map(str::to_owned).collect(),
            _ => Default::default(),
        };
        let mut shape = TypeShape { kind, interfaces, ..Default::default() };
        for field in body.trim_end_matches('}').split(';').map(str::trim).filter(|f| !f.is_empty()) {
            let (signature, ty) = field.rsplit_once(": ").unwrap();
            let (field_name, args) = match signature.split_once('(') {
                Some((field_name, args)) => {
                    let args = args.trim_end_matches(')').split(", ").map(|arg| {
                        let (arg, ty) = arg.split_once(": ").unwrap();
                        (arg.to_owned(), ty.to_owned())
                    });
                    (field_name, args.collect())
                }
                None => (signature, Default::default()),
            };
            shape.fields.insert(field_name.to_owned(), (ty.to_owned(), args));
        }
        types.insert(name, shape);
    }
    types
}

fn type_ref(ty: &serde_json::Value) -> String {
    match ty["kind"].as_str().unwrap() {
        "NON_NULL" => format!("{}!", type_ref(&ty["ofType"])),
        "LIST" => format!("[{}]", type_ref(&ty["ofType"])),
        _ => ty["name"].as_str().unwrap().to_owned(),
    }
}

/// The served schema's types, read by introspection over HTTP.
async fn served_types(server: &crate::support::TestServer) -> std::collections::BTreeMap<String, TypeShape> {
    let query = "{ __schema { types { kind name interfaces { name }
        fields(includeDeprecated: true) { name type { ...T } args { name type { ...T } } }
        inputFields { name type { ...T } } } } }
        fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }";
    let body = server.graphql(None, query, serde_json::json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let mut types = std::collections::BTreeMap::new();
    for ty in body["data"]["__schema"]["types"].as_array().unwrap() {
        let kind = match ty["kind"].as_str().unwrap() {
            "OBJECT" => "Object",
            "INPUT_OBJECT" => "InputObject",
            "INTERFACE" => "Interface",
            "SCALAR" => "Scalar",
            "ENUM" => "Enum",
            "UNION" => "Union",
            other => panic!("unexpected kind {other}"),
        };
        let mut shape = TypeShape { kind: kind.to_owned(), ..Default::default() };
        for interface in ty["interfaces"].as_array().into_iter().flatten() {
            shape.interfaces.insert(interface["name"].as_str().unwrap().to_owned());
        }
        for field in
            ty["fields"].as_array().into_iter().flatten().chain(ty["inputFields"].as_array().into_iter().flatten())
        {
            let args = field["args"].as_array().into_iter().flatten();
            let args = args.map(|arg| (arg["name"].as_str().unwrap().to_owned(), type_ref(&arg["type"])));
            shape.fields.insert(field["name"].as_str().unwrap().to_owned(), (type_ref(&field["type"]), args.collect()));
        }
        types.insert(ty["name"].as_str().unwrap().to_owned(), shape);
    }
    types
}

/// Every published type keeps its kind, interfaces, fields, arguments and nullability; what
/// latchkey adds (fields, arguments, input fields, interfaces) never makes a published
/// operation invalid, so added arguments and input fields are optional.
#[tokio::test]
async fn the_served_schema_keeps_every_published_type_field_and_argument() {
    let server = crate::support::TestServer::start().await;
    let served = served_types(&server).await;
    let mut mismatches = Vec::new();
    for (name, published) in published_types() {
        let Some(ours) = served.get(&name) else {
            mismatches.push(format!("{name}: missing"));
            continue;
        };
        if ours.kind != published.kind {
            mismatches.push(format!("{name}: is {} not {}", ours.kind, published.kind));
        }
        for interface in published.interfaces.difference(&ours.interfaces) {
            mismatches.push(format!("{name}: does not implement {interface}"));
        }
        for (field, (ty, args)) in &published.fields {
            let Some((our_ty, our_args)) = ours.fields.get(field) else {
                mismatches.push(format!("{name}.{field}: missing"));
                continue;
            };
            if our_ty != ty {
                mismatches.push(format!("{name}.{field}: is {our_ty} not {ty}"));
            }
            for (arg, arg_ty) in args {
                match our_args.get(arg) {
                    Some(our) if our == arg_ty => {}
                    Some(our) => mismatches.push(format!("{name}.{field}({arg}): is {our} not {arg_ty}")),
                    None => mismatches.push(format!("{name}.{field}({arg}): missing")),
                }
            }
            for (arg, our) in our_args.iter().filter(|(arg, _)| !args.contains_key(*arg)) {
                if our.ends_with('!') {
                    mismatches.push(format!("{name}.{field}({arg}): an added argument must be optional, is {our}"));
                }
            }
        }
        if published.kind == "InputObject" {
            for (field, (our, _)) in ours.fields.iter().filter(|(field, _)| !published.fields.contains_key(*field)) {
                if our.ends_with('!') {
                    mismatches.push(format!("{name}.{field}: an added input field must be optional, is {our}"));
                }
            }
        }
    }
    assert!(mismatches.is_empty(), "the schema departs from the published one:\n{}", mismatches.join("\n"));
}

/// A client compiled against the published schema: its fragments on the renamed types and
/// the interfaces, and its `$input: XxxInput!` variables, validate and run unchanged.
#[tokio::test]
async fn a_client_written_against_the_published_schema_runs_unchanged() {
    use serde_json::json;
    let server = crate::support::TestServer::start().await;
    let user = server.create_user(&server.master, "published-1").await;
    let token = server.user_token(&server.master, &user).await;
    let (service, environment) = server.builtin_environment("zendesk").await;

    let create =
        "mutation ($input: CreateUserAuthenticationInput!) { createUserAuthentication(input: $input) { ...Created } }
        fragment Created on CreateUserAuthenticationPayload { authenticationId clientMutationId }";
    let input = json!({"input": {"name": "Zendesk", "serviceId": service, "serviceEnvironmentId": environment,
        "data": "{\"email\":\"agent@acme.test\",\"api_token\":\"zd-token\"}", "formData": "{\"subdomain\":\"acme\"}",
        "clientMutationId": "c1"}});
    let created = server.ok(&token, create, input).await;
    assert_eq!(created["createUserAuthentication"]["clientMutationId"], "c1");
    let auth_id = created["createUserAuthentication"]["authenticationId"].as_str().unwrap().to_owned();

    let solution = server.publish_solution(&server.master, "Sync").await;
    let instance = server.create_instance(&token, &solution, "Mine").await;
    let instances = "query ($criteria: SolutionInstanceSearchCriteria) { viewer { solutionInstances(criteria: $criteria) { edges { node { ...Instance } } } } }
        fragment Instance on SolutionInstance { ... on Node { id } owner solutionVersionFlags { ...Flags }
            workflows { edges { node { ... on Node { id } sourceWorkflowId sourceWorkflowName } } } }
        fragment Flags on SolutionInstanceSolutionVersionFlags { hasNewerVersion requiresUserInputToUpdateVersion requiresSystemInputToUpdateVersion }";
    let data = server.ok(&token, instances, json!({"criteria": {"id": instance, "solutionId": solution}})).await;
    let node = &data["viewer"]["solutionInstances"]["edges"][0]["node"];
    assert_eq!(node["id"], instance.as_str());
    assert_eq!(node["owner"], user.as_str());
    assert_eq!(node["solutionVersionFlags"]["hasNewerVersion"], false);
    assert_eq!(node["workflows"]["edges"][0]["node"]["sourceWorkflowName"], "Sync");

    let users = "query ($criteria: UserSearchCriteria) { users(criteria: $criteria) { edges { node { ... on User { id } ... on Node { id } externalUserId } } } }";
    let data = server.ok(&server.master, users, json!({"criteria": {"userId": user}})).await;
    assert_eq!(data["users"]["edges"][0]["node"], json!({"id": user, "externalUserId": "published-1"}));

    let authentications = "{ viewer { authentications { edges { node { ... on Node { id } customFields service { ...Service } serviceEnvironment { id name title } } } } } }
        fragment Service on Service { id name version title icon }";
    let data = server.ok(&token, authentications, json!({})).await;
    let node = &data["viewer"]["authentications"]["edges"][0]["node"];
    assert_eq!(node["id"], auth_id.as_str());
    assert!(node["service"]["icon"].as_str().unwrap().starts_with("data:image/svg+xml;base64,"), "{node}");
    assert_eq!(node["serviceEnvironment"]["name"], "Production");
    assert_eq!(node["serviceEnvironment"]["title"], "Production");
    let slots =
        "{ viewer { solutions { edges { node { ... on Node { id } configSlots { externalId defaultValue } } } } } }";
    assert_eq!(server.ok(&token, slots, json!({})).await["viewer"]["solutions"]["edges"][0]["node"]["id"], solution);

    let remove =
        "mutation ($input: RemoveUserAuthenticationInput!) { removeAuthentication(input: $input) { ...Removed } }
        fragment Removed on RemoveUserAuthenticationPayload { clientMutationId }";
    let removed =
        server.ok(&token, remove, json!({"input": {"authenticationId": auth_id, "clientMutationId": "r1"}})).await;
    assert_eq!(removed["removeAuthentication"]["clientMutationId"], "r1");
}

/// `callConnector` is in the published schema, but latchkey runs no connectors: it says so
/// with a code rather than pretending.
#[tokio::test]
async fn call_connector_answers_not_supported() {
    use serde_json::json;
    let server = crate::support::TestServer::start().await;
    let call = "mutation ($input: ConnectorCallInput!) { callConnector(input: $input) { output clientMutationId } }";
    let input = json!({"input": {"connector": "slack", "version": "8.1", "operation": "list_users", "input": "{}"}});
    let body = server.graphql(Some(&server.master), call, input).await;
    assert_eq!(crate::support::error_code(&body).as_deref(), Some("NOT_SUPPORTED"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("not supported"), "{body}");
}

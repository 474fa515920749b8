//! Many writers at once: on one server, on two server processes sharing one database, on a
//! one-connection pool, and in processes stopped (SIGTERM) or killed (SIGKILL) mid-write.
//! No request fails for want of a lock, every acknowledged write stays, and nothing is left
//! half written.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use entity::{
    audit_event, authentication, external_user, instance_auth_value, instance_config_value, solution_instance,
};
use latchkey::app::SHUTDOWN_GRACE;
use sea_orm::{ColumnTrait, Database, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::{
    process::Cluster,
    support::{Storage, TestServer},
};

const CREATE_USER: &str =
    "mutation($n: String!, $e: String!) { createExternalUser(input: {name: $n, externalUserId: $e}) { userId } }";
const AUTHORIZE: &str = "mutation($u: ID!) { authorize(input: {userId: $u}) { accessToken } }";
const UPDATE_USER: &str =
    "mutation($u: ID!, $n: String!) { updateExternalUser(input: {userId: $u, name: $n}) { user { name } } }";
const REMOVE_USER: &str = "mutation($u: ID!) { removeExternalUser(input: {userId: $u}) { clientMutationId } }";
const IMPORT: &str = "mutation($s: ID!, $e: ID!) { createUserAuthentication(input: {name: \"zd\", serviceId: $s, serviceEnvironmentId: $e, data: {email: \"agent@acme.test\", api_token: \"zd-token-0001\"}, formData: {subdomain: \"acme\"}}) { authenticationId } }";
const CREATE_INSTANCE: &str = "mutation($s: ID!, $n: String!, $a: [AuthValue!]!, $c: [ConfigValue!]!) { createSolutionInstance(input: {solutionId: $s, instanceName: $n, authValues: $a, configValues: $c}) { solutionInstance { id authValues { externalId authId } configValues { externalId value } } } }";
const UPDATE_INSTANCE: &str =
    "mutation($in: UpdateSolutionInstanceInput!) { updateSolutionInstance(input: $in) { solutionInstance { id } } }";
const UPGRADE_INSTANCE: &str = "mutation($in: UpgradeSolutionInstanceInput!) { upgradeSolutionInstance(input: $in) { solutionInstance { id solutionVersion } } }";
const INSTANCE: &str = "query($c: SolutionInstanceSearchCriteria) { viewer { solutionInstances(criteria: $c) { edges { node { id enabled solutionVersion authValues { externalId authId } configValues { externalId value } } } } } }";
const VIEWER: &str = "{ viewer { details { name } authentications { edges { node { id } } } } }";
const USERS: &str = "{ users(first: 20) { edges { node { id name } } } }";

/// GraphQL over HTTP to one or more servers sharing a database; the `n`th call of a
/// client goes to server `n % servers`.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    bases: Arc<Vec<String>>,
}

impl Api {
    fn new(bases: Vec<String>) -> Self {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        Self { client, bases: Arc::new(bases) }
    }

    /// The operation's `data`, or what went wrong: the error code first (`NO_ANSWER` when
    /// the transport failed), then the status and body.
    async fn run(&self, n: usize, token: &str, query: &str, variables: Value) -> Result<Value, String> {
        let base = &self.bases[n % self.bases.len()];
        let response = self
            .client
            .post(format!("{base}/graphql"))
            .bearer_auth(token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .map_err(|err| format!("NO_ANSWER: {err}"))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|err| format!("NO_CODE: {status}, not JSON: {err}"))?;
        if status != 200 || body.get("errors").is_some() {
            let code = body["errors"][0]["extensions"]["code"].as_str().unwrap_or("NO_CODE");
            return Err(format!("{code}: {status} {body}"));
        }
        Ok(body["data"].clone())
    }

    async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        self.run(0, token, query, variables).await.unwrap_or_else(|err| panic!("{query}: {err}"))
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("{value} is not a string")).to_owned()
}

/// One end user's instance of a published solution with an optional Zendesk auth slot and
/// `slots` optional string config slots `s0`, `s1`, …
struct Fixture {
    api: Api,
    master: String,
    solution: String,
    zendesk: (String, String),
    user: String,
    token: String,
    instance: String,
}

fn config_slots(ids: impl Iterator<Item = String>) -> Value {
    ids.map(|id| json!({"externalId": id, "title": id, "valueType": "STRING"})).collect()
}

async fn fixture(api: Api, master: &str, slots: usize) -> Fixture {
    let environment = api
        .ok(
            master,
            "{ serviceEnvironments(serviceName: \"zendesk\", serviceVersion: \"1\") { id serviceId } }",
            json!({}),
        )
        .await;
    let zendesk =
        (text(&environment["serviceEnvironments"][0]["serviceId"]), text(&environment["serviceEnvironments"][0]["id"]));
    let input = json!({
        "title": "Sync", "workflows": [{"name": "Sync"}],
        "authSlots": [{"externalId": "zendesk", "title": "Zendesk", "serviceId": zendesk.0}],
        "configSlots": config_slots((0..slots).map(|i| format!("s{i}"))),
    });
    let created = api
        .ok(
            master,
            "mutation($in: CreateSolutionInput!) { createSolution(input: $in) { solution { id } } }",
            json!({"in": input}),
        )
        .await;
    let solution = text(&created["createSolution"]["solution"]["id"]);
    publish(&api, master, &solution).await;
    let user = text(
        &api.ok(master, CREATE_USER, json!({"n": "Owner", "e": format!("owner-{}", uuid::Uuid::new_v4())})).await["createExternalUser"]
            ["userId"],
    );
    let token = text(&api.ok(master, AUTHORIZE, json!({"u": user})).await["authorize"]["accessToken"]);
    let variables = json!({"s": solution, "n": "shared", "a": [], "c": []});
    let instance =
        text(&api.ok(&token, CREATE_INSTANCE, variables).await["createSolutionInstance"]["solutionInstance"]["id"]);
    Fixture { api, master: master.to_owned(), solution, zendesk, user, token, instance }
}

async fn publish(api: &Api, master: &str, solution: &str) {
    api.ok(
        master,
        "mutation($id: ID!) { publishSolution(input: {solutionId: $id}) { solution { version } } }",
        json!({"id": solution}),
    )
    .await;
}

/// The instance as its owner reads it: version, auth values and config values.
async fn read_instance(api: &Api, token: &str, id: &str) -> (i64, BTreeMap<String, String>, BTreeMap<String, String>) {
    let data = api.ok(token, INSTANCE, json!({"c": {"id": id}})).await;
    let node = &data["viewer"]["solutionInstances"]["edges"][0]["node"];
    let pairs = |list: &Value, value: &str| -> BTreeMap<String, String> {
        list.as_array()
            .unwrap_or_else(|| panic!("instance {id} not found: {data}"))
            .iter()
            .map(|v| (text(&v["externalId"]), text(&v[value])))
            .collect()
    };
    (
        node["solutionVersion"].as_i64().unwrap(),
        pairs(&node["authValues"], "authId"),
        pairs(&node["configValues"], "value"),
    )
}

/// Every task's errors, joined; panics of tasks propagate.
async fn errors_of(mut tasks: JoinSet<Vec<String>>) -> Vec<String> {
    let mut errors = Vec::new();
    while let Some(result) = tasks.join_next().await {
        errors.extend(result.unwrap());
    }
    errors
}

/// `count` concurrent calls of `mutation` (an update or an upgrade) on the fixture's
/// instance, spread over the servers, the `i`th setting slot `{prefix}{i}` to `"v{i}"`;
/// none may fail.
async fn set_slots_concurrently(f: &Fixture, mutation: &'static str, prefix: &str, count: usize) {
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let (api, token) = (f.api.clone(), f.token.clone());
        let value = json!([{"externalId": format!("{prefix}{i}"), "value": format!("\"v{i}\"")}]);
        let input = json!({"in": {"solutionInstanceId": f.instance, "configValues": value}});
        tasks.spawn(async move { api.run(i, &token, mutation, input).await.err().into_iter().collect() });
    }
    let errors = errors_of(tasks).await;
    assert!(errors.is_empty(), "{} of {count} concurrent calls failed: {errors:#?}", errors.len());
}

/// `count` concurrent updates of one instance, each setting its own slot `s{i}`; then
/// every value must be there.
async fn each_concurrent_update_keeps_its_slot(f: &Fixture, count: usize) {
    set_slots_concurrently(f, UPDATE_INSTANCE, "s", count).await;
    let (_, _, config) = read_instance(&f.api, &f.token, &f.instance).await;
    let expected: BTreeMap<String, String> = (0..count).map(|i| (format!("s{i}"), format!("\"v{i}\""))).collect();
    assert_eq!(config, expected, "every acknowledged update keeps its slot");
}

#[tokio::test]
async fn twenty_concurrent_updates_of_one_instance_all_succeed_and_keep_their_slots() {
    let server = TestServer::start().await;
    let f = fixture(Api::new(vec![server.base.clone()]), &server.master, 20).await;
    each_concurrent_update_keeps_its_slot(&f, 20).await;
}

#[tokio::test]
async fn twenty_concurrent_upgrades_of_one_instance_all_succeed_and_keep_their_values() {
    let server = TestServer::start().await;
    let f = fixture(Api::new(vec![server.base.clone()]), &server.master, 1).await;
    let set = json!({"solutionInstanceId": f.instance, "configValues": [{"externalId": "s0", "value": "\"kept\""}]});
    f.api.ok(&f.token, UPDATE_INSTANCE, json!({"in": set})).await;
    let slots = config_slots(std::iter::once("s0".to_owned()).chain((0..20).map(|i| format!("n{i}"))));
    let update = "mutation($id: ID!, $c: [ConfigSlotInput!]) { updateSolution(input: {solutionId: $id, configSlots: $c}) { solution { id } } }";
    f.api.ok(&f.master, update, json!({"id": f.solution, "c": slots})).await;
    publish(&f.api, &f.master, &f.solution).await;

    set_slots_concurrently(&f, UPGRADE_INSTANCE, "n", 20).await;
    let (version, _, config) = read_instance(&f.api, &f.token, &f.instance).await;
    assert_eq!(version, 2);
    let mut expected: BTreeMap<String, String> = (0..20).map(|i| (format!("n{i}"), format!("\"v{i}\""))).collect();
    expected.insert("s0".into(), "\"kept\"".into());
    assert_eq!(config, expected, "every upgrade's value and the value from before are kept");
}

/// What one client of the mixed workload made, to check against the final state.
struct Acknowledged {
    user: String,
    token: String,
    authentication: String,
    instance: String,
}

/// One client's operations, in order; the first failure ends it.
async fn mixed_client(f: Arc<Fixture>, i: usize) -> Result<Acknowledged, String> {
    let (api, master) = (&f.api, f.master.as_str());
    let user = text(
        &api.run(i, master, CREATE_USER, json!({"n": format!("client {i}"), "e": format!("client-{i}")})).await?["createExternalUser"]
            ["userId"],
    );
    let token = text(&api.run(i, master, AUTHORIZE, json!({"u": user})).await?["authorize"]["accessToken"]);
    api.run(i, master, UPDATE_USER, json!({"u": user, "n": format!("client {i} renamed")})).await?;
    // Every client also writes the same user and the same instance.
    api.run(i, master, UPDATE_USER, json!({"u": f.user, "n": format!("shared by {i}")})).await?;
    api.run(i, master, AUTHORIZE, json!({"u": f.user})).await?;
    let shared = json!({"solutionInstanceId": f.instance, "configValues": [{"externalId": format!("s{i}"), "value": format!("\"client-{i}\"")}]});
    api.run(i, &f.token, UPDATE_INSTANCE, json!({"in": shared})).await?;
    let authentication = text(
        &api.run(i, &token, IMPORT, json!({"s": f.zendesk.0, "e": f.zendesk.1})).await?["createUserAuthentication"]["authenticationId"],
    );
    let variables = json!({"s": f.solution, "n": format!("own {i}"), "a": [{"externalId": "zendesk", "authId": authentication}], "c": [{"externalId": "s0", "value": "\"own\""}]});
    let instance = text(
        &api.run(i, &token, CREATE_INSTANCE, variables).await?["createSolutionInstance"]["solutionInstance"]["id"],
    );
    let own = json!({"solutionInstanceId": instance, "enabled": true, "configValues": [{"externalId": "s1", "value": format!("\"own-{i}\"")}]});
    api.run(i, &token, UPDATE_INSTANCE, json!({"in": own})).await?;
    api.run(i, &token, VIEWER, json!({})).await?;
    api.run(i, &token, INSTANCE, json!({"c": {"id": instance}})).await?;
    api.run(i, master, USERS, json!({})).await?;
    Ok(Acknowledged { user, token, authentication, instance })
}

/// Sixty clients at once, each writing its own rows and the shared ones and reading;
/// then the final state is checked against what was acknowledged.
async fn sixty_clients(api: Api, master: &str) {
    const CLIENTS: usize = 60;
    let f = Arc::new(fixture(api, master, CLIENTS).await);
    let mut tasks = JoinSet::new();
    for i in 0..CLIENTS {
        let f = f.clone();
        tasks.spawn(async move { (i, mixed_client(f, i).await) });
    }
    let mut done = Vec::new();
    let mut errors = Vec::new();
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            (i, Ok(acknowledged)) => done.push((i, acknowledged)),
            (i, Err(err)) => errors.push(format!("client {i}: {err}")),
        }
    }
    assert!(errors.is_empty(), "{} of {CLIENTS} clients saw an error: {errors:#?}", errors.len());

    let (_, _, shared) = read_instance(&f.api, &f.token, &f.instance).await;
    let expected: BTreeMap<String, String> =
        (0..CLIENTS).map(|i| (format!("s{i}"), format!("\"client-{i}\""))).collect();
    assert_eq!(shared, expected, "every client's value on the shared instance stays");
    let name = text(&f.api.ok(&f.token, VIEWER, json!({})).await["viewer"]["details"]["name"]);
    assert!((0..CLIENTS).any(|i| name == format!("shared by {i}")), "{name}");
    for (i, acknowledged) in done {
        let viewer = f.api.ok(&acknowledged.token, VIEWER, json!({})).await;
        assert_eq!(viewer["viewer"]["details"]["name"], format!("client {i} renamed"));
        let (_, auth, config) = read_instance(&f.api, &acknowledged.token, &acknowledged.instance).await;
        assert_eq!(auth, BTreeMap::from([("zendesk".to_owned(), acknowledged.authentication.clone())]));
        let own: BTreeMap<String, String> =
            [("s0".to_owned(), "\"own\"".to_owned()), ("s1".to_owned(), format!("\"own-{i}\""))].into();
        assert_eq!(config, own, "client {i} ({})", acknowledged.user);
    }
}

#[tokio::test]
async fn sixty_concurrent_clients_writing_and_reading_see_no_errors_and_keep_every_acknowledged_write() {
    let server = TestServer::start().await;
    sixty_clients(Api::new(vec![server.base.clone()]), &server.master).await;
}

#[tokio::test]
async fn two_server_processes_on_one_database_keep_every_concurrent_update() {
    let cluster = Cluster::new().await;
    let (first, second) = (cluster.start(&[]).await, cluster.start(&[]).await);
    let api = Api::new(vec![first.base.clone(), second.base.clone()]);
    let f = fixture(api.clone(), &cluster.master, 20).await;
    each_concurrent_update_keeps_its_slot(&f, 20).await;
    sixty_clients(api, &cluster.master).await;
}

#[tokio::test]
async fn a_one_connection_pool_queues_requests_fails_cleanly_when_exhausted_and_recovers() {
    let storage = Storage::new().await;
    let server = TestServer::start_on(storage, |raw| raw.database_max_connections = Some("1".into())).await;
    let api = Api::new(vec![server.base.clone()]);
    let f = Arc::new(fixture(api.clone(), &server.master, 60).await);
    let mut tasks = JoinSet::new();
    for i in 0..60 {
        let f = f.clone();
        tasks.spawn(async move { mixed_client(f, i).await.err().into_iter().collect() });
    }
    // Requests wait for the one connection; a wait past the acquire timeout would be a
    // coded error, never a hang, and nothing here waits that long.
    let errors = errors_of(tasks).await;
    assert!(errors.is_empty(), "{} of 60 clients saw an error: {errors:#?}", errors.len());

    // The test takes the only connection: a request then waits the bounded acquire time
    // and fails with a code, and the server answers again once the connection is back.
    let held = latchkey::db::write(&server.db).await.unwrap();
    let response = api
        .client
        .post(format!("{}/graphql", server.base))
        .bearer_auth(&server.master)
        .json(&json!({"query": USERS}))
        .send()
        .await
        .expect("an answer, not a hang");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    // INTERNAL is 500 wherever it happens: before execution (the token check) or in it.
    assert!([200, 500].contains(&status), "{status}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "INTERNAL", "{body}");
    assert_eq!(body["errors"][0]["message"], "internal error", "nothing internal shown: {body}");
    held.rollback().await.unwrap();
    api.ok(&server.master, USERS, json!({})).await;
}

/// A connection of the test's own to the cluster's database.
async fn connect(cluster: &Cluster) -> DatabaseConnection {
    let url = match &cluster.storage.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}?mode=rw", cluster.storage.dir.path().join("latchkey.db").display()),
    };
    Database::connect(url).await.unwrap()
}

fn instance_input(f: &Fixture, name: &str, authentication: &str, slots: usize) -> Value {
    let config: Vec<Value> =
        (0..slots).map(|s| json!({"externalId": format!("s{s}"), "value": format!("\"{name}-{s}\"")})).collect();
    json!({"s": f.solution, "n": name, "a": [{"externalId": "zendesk", "authId": authentication}], "c": config})
}

#[tokio::test]
async fn sigterm_lets_in_flight_writes_finish_completely_and_exits_zero() {
    const SLOTS: usize = 5;
    let cluster = Cluster::new().await;
    // The request log shows when the server has taken the requests up.
    let mut server = cluster.start(&[("LATCHKEY_LOG", "info,tower_http=debug")]).await;
    let f = fixture(Api::new(vec![server.base.clone()]), &cluster.master, SLOTS).await;
    let authentication = text(
        &f.api.ok(&f.token, IMPORT, json!({"s": f.zendesk.0, "e": f.zendesk.1})).await["createUserAuthentication"]["authenticationId"],
    );

    // Hold the writers back (SQLite: the write lock; PostgreSQL: the owner's row) so the
    // creates are surely in flight when the signal arrives.
    let db = connect(&cluster).await;
    let blocker = latchkey::db::write(&db).await.unwrap();
    let owner = uuid::Uuid::parse_str(&f.user).unwrap();
    external_user::Entity::find_by_id(owner).lock_exclusive().one(&blocker).await.unwrap();
    let taken_up = || server.output().matches("started processing request").count();
    let before = taken_up();
    let mut tasks = JoinSet::new();
    for i in 0..10 {
        let (api, token, variables) =
            (f.api.clone(), f.token.clone(), instance_input(&f, &format!("i{i}"), &authentication, SLOTS));
        tasks.spawn(async move { (i, api.run(i, &token, CREATE_INSTANCE, variables).await) });
    }
    let waiting = std::time::Instant::now();
    while taken_up() < before + 10 {
        assert!(waiting.elapsed() < Duration::from_secs(60), "the requests never arrived:\n{}", server.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.rollback().await.unwrap();

    let mut created = BTreeSet::new();
    while let Some(result) = tasks.join_next().await {
        let (i, answer) = result.unwrap();
        let data = answer.unwrap_or_else(|err| panic!("create {i} in flight at SIGTERM did not finish: {err}"));
        let instance = &data["createSolutionInstance"]["solutionInstance"];
        assert_eq!(instance["configValues"].as_array().unwrap().len(), SLOTS, "a complete answer: {instance}");
        assert_eq!(instance["authValues"][0]["authId"], authentication.as_str());
        created.insert(uuid::Uuid::parse_str(&text(&instance["id"])).unwrap());
    }
    let status = server.exit_within(SHUTDOWN_GRACE + Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit within the grace period with 0: {status:?}\n{}",
        server.output()
    );

    let stored = no_partial_rows(&db, &f, SLOTS).await;
    assert_eq!(stored, created, "exactly the acknowledged instances were written");
}

/// Checks that every instance but the fixture's own (made empty) holds one auth value and
/// all `slots` config values, that no value row lacks its instance, that every instance and
/// user has exactly one creation audit event, and that every user whose removal was
/// recorded is gone with their authentications. Returns the instances checked.
async fn no_partial_rows(db: &DatabaseConnection, f: &Fixture, slots: usize) -> BTreeSet<uuid::Uuid> {
    let instances: BTreeSet<_> =
        solution_instance::Entity::find().all(db).await.unwrap().into_iter().map(|i| i.id).collect();
    let mut config: BTreeMap<uuid::Uuid, usize> = BTreeMap::new();
    for row in instance_config_value::Entity::find().all(db).await.unwrap() {
        assert!(instances.contains(&row.instance_id), "a config value without its instance");
        *config.entry(row.instance_id).or_default() += 1;
    }
    let mut auth: BTreeMap<uuid::Uuid, usize> = BTreeMap::new();
    for row in instance_auth_value::Entity::find().all(db).await.unwrap() {
        assert!(instances.contains(&row.instance_id), "an auth value without its instance");
        *auth.entry(row.instance_id).or_default() += 1;
    }
    let own = uuid::Uuid::parse_str(&f.instance).unwrap();
    let written: BTreeSet<_> = instances.iter().copied().filter(|id| *id != own).collect();
    for id in &written {
        assert_eq!((auth.get(id), config.get(id)), (Some(&1), Some(&slots)), "instance {id} is half written");
    }
    let events = audit_event::Entity::find().all(db).await.unwrap();
    let created =
        |action: &str, id: uuid::Uuid| events.iter().filter(|e| e.action == action && e.target_id == Some(id)).count();
    for id in &instances {
        assert_eq!(created("solution_instance.created", *id), 1, "instance {id} has its creation event");
    }
    let users: BTreeSet<_> = external_user::Entity::find().all(db).await.unwrap().into_iter().map(|u| u.id).collect();
    for id in &users {
        assert_eq!(created("external_user.created", *id), 1, "user {id} has its creation event");
    }
    for event in events.iter().filter(|e| e.action == "external_user.removed") {
        let id = event.target_id.unwrap();
        assert!(!users.contains(&id), "a user whose removal was recorded is gone");
        let owned =
            authentication::Entity::find().filter(authentication::Column::OwnerUserId.eq(id)).count(db).await.unwrap();
        assert_eq!(owned, 0, "a removed user's authentications are gone");
    }
    written
}

/// Instances whose creation was acknowledged, with their owners; users whose removal was
/// asked, and whether it was acknowledged.
type Written = (Vec<(String, String)>, Vec<(String, bool)>);

/// Sixteen writers creating users, their authentications and full instances, and removing
/// every other user, until the process is killed after `kill_after` acknowledged instances.
async fn write_until_killed(cluster: &Cluster, f: &Arc<Fixture>, run: usize, kill_after: usize) -> Written {
    const SLOTS: usize = 5;
    let mut server = cluster.start(&[]).await;
    let api = Api::new(vec![server.base.clone()]);
    let (acknowledged, stopped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = JoinSet::new();
    for writer in 0..16 {
        let (f, api, acknowledged, stopped) = (f.clone(), api.clone(), acknowledged.clone(), stopped.clone());
        tasks.spawn(async move {
            let (mut instances, mut removals) = (Vec::new(), Vec::new());
            for round in 0.. {
                let step = async {
                    let e = format!("r{run}-w{writer}-{round}");
                    let user = text(&api.run(0, &f.master, CREATE_USER, json!({"n": e, "e": e})).await?["createExternalUser"]["userId"]);
                    let token = text(&api.run(0, &f.master, AUTHORIZE, json!({"u": user})).await?["authorize"]["accessToken"]);
                    let auth = text(&api.run(0, &token, IMPORT, json!({"s": f.zendesk.0, "e": f.zendesk.1})).await?["createUserAuthentication"]["authenticationId"]);
                    let created = api.run(0, &token, CREATE_INSTANCE, instance_input(&f, &e, &auth, SLOTS)).await?;
                    instances.push((user.clone(), text(&created["createSolutionInstance"]["solutionInstance"]["id"])));
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                    if round % 2 == 1 {
                        removals.push((user.clone(), false));
                        api.run(0, &f.master, REMOVE_USER, json!({"u": user})).await?;
                        removals.last_mut().unwrap().1 = true;
                    }
                    Ok::<_, String>(())
                };
                if let Err(err) = step.await {
                    stopped.fetch_add(1, Ordering::SeqCst);
                    return (instances, removals, err);
                }
            }
            unreachable!("a writer only stops on an error")
        });
    }
    while acknowledged.load(Ordering::SeqCst) < kill_after && stopped.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let healthy = stopped.load(Ordering::SeqCst) == 0;
    server.crash();
    let (mut instances, mut removals) = (Vec::new(), Vec::new());
    while let Some(result) = tasks.join_next().await {
        let (made, asked, err) = result.unwrap();
        assert!(healthy, "a writer failed before the kill: {err}\n{}", server.output());
        instances.extend(made);
        removals.extend(asked);
    }
    (instances, removals)
}

#[tokio::test]
async fn processes_killed_mid_write_leave_no_partial_rows_and_restart() {
    let cluster = Cluster::new().await;
    let f = {
        let server = cluster.start(&[]).await;
        Arc::new(fixture(Api::new(vec![server.base.clone()]), &cluster.master, 5).await)
    };
    let (mut instances, mut removals) = (Vec::new(), BTreeMap::new());
    for (run, kill_after) in [17, 24, 31].into_iter().enumerate() {
        let (made, asked) = write_until_killed(&cluster, &f, run, kill_after).await;
        instances.extend(made);
        removals.extend(asked);
    }

    let restarted = cluster.start(&[]).await;
    let db = connect(&cluster).await;
    let stored = no_partial_rows(&db, &f, 5).await;
    for (user, instance) in &instances {
        let id = uuid::Uuid::parse_str(instance).unwrap();
        match removals.get(user) {
            None => assert!(stored.contains(&id), "acknowledged instance {instance} is complete"),
            Some(true) => assert!(!stored.contains(&id), "instance {instance} went with its removed user"),
            // The removal may or may not have committed before the kill.
            Some(false) => {}
        }
    }
    // The restarted server answers from the same data.
    Api::new(vec![restarted.base.clone()]).ok(&cluster.master, USERS, json!({})).await;
}

#[tokio::test]
async fn concurrent_publishes_of_one_solution_each_get_their_own_version() {
    let server = TestServer::start().await;
    let f = fixture(Api::new(vec![server.base.clone()]), &server.master, 1).await;
    let mut tasks = JoinSet::new();
    for i in 0..10 {
        let (api, master, solution) = (f.api.clone(), f.master.clone(), f.solution.clone());
        tasks.spawn(async move {
            let publish = "mutation($id: ID!) { publishSolution(input: {solutionId: $id}) { solution { version } } }";
            api.run(i, &master, publish, json!({"id": solution}))
                .await
                .map(|data| data["publishSolution"]["solution"]["version"].as_i64().unwrap())
        });
    }
    let mut versions = Vec::new();
    while let Some(result) = tasks.join_next().await {
        versions.push(result.unwrap().unwrap_or_else(|err| panic!("a concurrent publish failed: {err}")));
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..12).collect::<Vec<_>>(), "versions 2 to 11, one each");
}

/// Only the codes a client can act on: the object went away, or the token with its user.
fn gone(err: &str) -> bool {
    ["NOT_FOUND:", "UNAUTHENTICATED:", "BAD_USER_INPUT:"].iter().any(|code| err.starts_with(code))
}

#[tokio::test]
async fn removing_a_user_while_their_rows_are_being_written_leaves_none_and_fails_nothing_internally() {
    let server = TestServer::start().await;
    let f = Arc::new(fixture(Api::new(vec![server.base.clone()]), &server.master, 1).await);
    let auth = text(
        &f.api.ok(&f.token, IMPORT, json!({"s": f.zendesk.0, "e": f.zendesk.1})).await["createUserAuthentication"]["authenticationId"],
    );
    let mut tasks = JoinSet::new();
    for i in 0..30 {
        let (f, auth) = (f.clone(), auth.clone());
        tasks.spawn(async move {
            let answer = match i {
                15 => f.api.run(i, &f.master, REMOVE_USER, json!({"u": f.user})).await,
                _ if i % 3 == 0 => f.api.run(i, &f.token, IMPORT, json!({"s": f.zendesk.0, "e": f.zendesk.1})).await,
                _ if i % 3 == 1 => f.api.run(i, &f.token, CREATE_INSTANCE, instance_input(&f, &format!("i{i}"), &auth, 1)).await,
                _ => {
                    let input = json!({"solutionInstanceId": f.instance, "authValues": [{"externalId": "zendesk", "authId": auth}]});
                    f.api.run(i, &f.token, UPDATE_INSTANCE, json!({"in": input})).await
                }
            };
            match answer {
                Err(err) if i == 15 || !gone(&err) => vec![err],
                _ => vec![],
            }
        });
    }
    let errors = errors_of(tasks).await;
    assert!(errors.is_empty(), "failures other than the user being gone: {errors:#?}");
    let owner = uuid::Uuid::parse_str(&f.user).unwrap();
    let instances =
        solution_instance::Entity::find().filter(solution_instance::Column::OwnerUserId.eq(owner)).count(&server.db);
    let authentications =
        authentication::Entity::find().filter(authentication::Column::OwnerUserId.eq(owner)).count(&server.db);
    assert_eq!((instances.await.unwrap(), authentications.await.unwrap()), (0, 0), "nothing of the user is left");
}

#[tokio::test]
async fn removing_an_authentication_while_instances_take_it_up_either_refuses_or_leaves_it_unused() {
    let server = TestServer::start().await;
    let f = Arc::new(fixture(Api::new(vec![server.base.clone()]), &server.master, 1).await);
    let remove = "mutation($id: ID!) { removeAuthentication(input: {authenticationId: $id}) { clientMutationId } }";
    // Eight authentications, each removed while six instances try to take it up.
    let mut authentications = Vec::new();
    let mut tasks = JoinSet::new();
    for round in 0..8 {
        let import = f.api.ok(&f.token, IMPORT, json!({"s": f.zendesk.0, "e": f.zendesk.1})).await;
        let auth = text(&import["createUserAuthentication"]["authenticationId"]);
        authentications.push(uuid::Uuid::parse_str(&auth).unwrap());
        for i in 0..7 {
            let (f, auth) = (f.clone(), auth.clone());
            tasks.spawn(async move {
                let answer = if i == 3 {
                    f.api.run(i, &f.token, remove, json!({"id": auth})).await
                } else {
                    let input = instance_input(&f, &format!("r{round}-i{i}"), &auth, 1);
                    f.api.run(i, &f.token, CREATE_INSTANCE, input).await
                };
                match answer {
                    Err(err) if !(gone(&err) || (i == 3 && err.starts_with("CONFLICT:"))) => vec![err],
                    _ => vec![],
                }
            });
        }
    }
    let errors = errors_of(tasks).await;
    assert!(errors.is_empty(), "unexpected failures: {errors:#?}");
    for id in authentications {
        let exists = authentication::Entity::find_by_id(id).one(&server.db).await.unwrap().is_some();
        let used = instance_auth_value::Entity::find()
            .filter(instance_auth_value::Column::AuthenticationId.eq(id))
            .count(&server.db)
            .await
            .unwrap();
        assert!(exists || used == 0, "a removed authentication is used by no instance");
    }
}

/// A token that one replica has already accepted is refused by it as soon as another
/// replica revokes it: at once on PostgreSQL (a notification), within the poll on SQLite.
#[tokio::test]
async fn a_revocation_on_one_replica_reaches_the_other_that_cached_the_token() {
    let cluster = Cluster::new().await;
    let (first, second) = (cluster.start(&[]).await, cluster.start(&[]).await);
    let api = Api::new(vec![first.base.clone()]);
    let user = api
        .ok(
            &cluster.master,
            "mutation { createExternalUser(input: {name: \"r\", externalUserId: \"r\"}) { userId } }",
            json!({}),
        )
        .await["createExternalUser"]["userId"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = api
        .ok(&cluster.master, "mutation($u: ID!) { authorize(input: {userId: $u}) { accessToken } }", json!({"u": user}))
        .await["authorize"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let on_second = Api::new(vec![second.base.clone()]);
    for _ in 0..3 {
        on_second.ok(&token, "{ viewer { details { name } } }", json!({})).await;
    }
    api.ok(
        &cluster.master,
        "mutation($u: ID!) { revokeUserTokens(input: {userId: $u}) { clientMutationId } }",
        json!({"u": user}),
    )
    .await;
    let refused = crate::support::eventually_refused(&second.base, &token).await;
    assert_eq!(crate::support::error_code(&refused).as_deref(), Some("UNAUTHENTICATED"), "{refused}");
    // And the replica that revoked refuses it at once.
    let first_answer = api.run(0, &token, "{ viewer { details { name } } }", json!({})).await;
    assert!(first_answer.is_err_and(|err| err.contains("UNAUTHENTICATED")), "refused at once");
}

/// A replica that has shown an environment with its authentications shows another
/// replica's change to that environment on its very next read: each read checks the
/// catalog's stamps in its own statement.
#[tokio::test]
async fn a_catalog_change_on_one_replica_shows_at_once_on_the_other_that_cached_it() {
    let cluster = Cluster::new().await;
    let (first, second) = (cluster.start(&[]).await, cluster.start(&[]).await);
    let api = Api::new(vec![first.base.clone()]);
    let on_second = Api::new(vec![second.base.clone()]);
    let master = &cluster.master;
    let service = api
        .ok(
            master,
            "mutation { createService(input: {name: \"ledger\", title: \"Ledger\"}) { service { id } } }",
            json!({}),
        )
        .await["createService"]["service"]["id"]
        .clone();
    let environment = api
        .ok(
            master,
            "mutation($s: ID!) { createServiceEnvironment(input: {serviceId: $s, title: \"Live\", authenticationType: token, credentialsSchema: {type: \"object\", required: [\"key\"]}}) { serviceEnvironment { id } } }",
            json!({"s": service}),
        )
        .await["createServiceEnvironment"]["serviceEnvironment"]["id"]
        .clone();
    api.ok(
        master,
        "mutation($s: String!, $e: String!) { createUserAuthentication(input: {name: \"l\", serviceId: $s, serviceEnvironmentId: $e, data: {key: \"k\"}}) { authenticationId } }",
        json!({"s": service, "e": environment}),
    )
    .await;
    let page = "{ viewer { authentications(first: 5) { edges { node { service { title } serviceEnvironment { title credentialsSchema } } } } } }";
    let shown = |data: Value| data["viewer"]["authentications"]["edges"][0]["node"].clone();
    for _ in 0..3 {
        let node = shown(on_second.ok(master, page, json!({})).await);
        assert_eq!(node["serviceEnvironment"]["title"], "Live");
    }

    api.ok(
        master,
        "mutation($e: ID!) { updateServiceEnvironment(input: {serviceEnvironmentId: $e, title: \"Sandbox\", credentialsSchema: {type: \"object\", required: [\"token\"]}}) { serviceEnvironment { id } } }",
        json!({"e": environment}),
    )
    .await;
    api.ok(
        master,
        "mutation($s: ID!) { updateService(input: {serviceId: $s, title: \"Ledger (EU)\"}) { service { id } } }",
        json!({"s": service}),
    )
    .await;
    let node = shown(on_second.ok(master, page, json!({})).await);
    assert_eq!(node["service"]["title"], "Ledger (EU)");
    assert_eq!(node["serviceEnvironment"]["title"], "Sandbox");
    let schema: Value = match &node["serviceEnvironment"]["credentialsSchema"] {
        Value::String(text) => serde_json::from_str(text).unwrap(),
        other => other.clone(),
    };
    assert_eq!(schema["required"], json!(["token"]), "{node}");
}

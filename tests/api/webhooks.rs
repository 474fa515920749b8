//! Webhooks end to end, with a real receiver on loopback that verifies every request with
//! the Standard Webhooks library, can answer 500, hang, or be killed and restarted, and
//! records the order, the attempts and any request sent while another with the same
//! `webhook-id` was still in flight.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;
use latchkey::{
    crypto::{EncryptionKey, Keyring},
    domain::{authentications, webhooks::expiry},
    keys::{files, fingerprint, rotation},
};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use standardwebhooks::Webhook;
use tokio::{net::TcpListener, sync::Notify, task::JoinHandle};

use crate::{
    process::Cluster,
    support::{Storage, TestServer, error_code},
};

/// Retries a few hundred milliseconds apart, so tests see several attempts quickly.
const FAST_RETRIES: &str = "300ms,300ms,300ms,300ms,300ms";
/// How long a test waits for deliveries that are surely coming (a killed process's lease
/// runs 30 s of it).
const PATIENCE: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------
// The receiver

#[derive(Clone, Debug)]
pub(crate) struct Receipt {
    id: String,
    pub(crate) body: String,
    pub(crate) payload: Value,
    headers: http::HeaderMap,
    /// Whether each of the receiver's secrets verifies the request.
    pub(crate) verified: Vec<bool>,
    /// What the receiver answered (0: it hung up without answering).
    status: u16,
    /// 1 for the first request with this `webhook-id`.
    attempt: usize,
}

impl Receipt {
    pub(crate) fn kind(&self) -> &str {
        self.payload["type"].as_str().unwrap_or_default()
    }

    fn subject(&self) -> String {
        let data = &self.payload["data"];
        data["authenticationId"].as_str().or(data["solutionInstanceId"].as_str()).unwrap_or_default().to_owned()
    }
}

/// How the receiver answers.
#[derive(Clone, Default)]
pub(crate) struct Script {
    /// The first this many requests of every `webhook-id` answer 500.
    fail_first: usize,
    /// Events of these types always answer 500.
    fail_types: HashSet<String>,
    /// Every request waits this long before its answer.
    delay: Duration,
    /// Requests wait, unanswered, until [`Receiver::release`].
    hang: bool,
}

#[derive(Default)]
struct Inner {
    receipts: Vec<Receipt>,
    in_flight: HashSet<String>,
    /// Requests that arrived while another with the same `webhook-id` was in flight.
    overlaps: Vec<String>,
}

#[derive(Default)]
struct State {
    secrets: Mutex<Vec<String>>,
    script: Mutex<Script>,
    inner: Mutex<Inner>,
    release: Notify,
}

/// Clears a request from the in-flight set when its handler ends or is dropped.
struct InFlight(Arc<State>, String);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inner.lock().unwrap().in_flight.remove(&self.1);
    }
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<hyper::body::Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|body| body.to_bytes()).unwrap_or_default();
    let id = parts.headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let verified = state
        .secrets
        .lock()
        .unwrap()
        .iter()
        .map(|secret| Webhook::new(secret).unwrap().verify(&body, &parts.headers).is_ok())
        .collect();
    let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let script = state.script.lock().unwrap().clone();
    // Registered before the request is recorded, so a release right after is not missed.
    let released = state.release.notified();
    tokio::pin!(released);
    released.as_mut().enable();
    let guard = {
        let mut inner = state.inner.lock().unwrap();
        if !inner.in_flight.insert(id.clone()) {
            inner.overlaps.push(id.clone());
        }
        let attempt = inner.receipts.iter().filter(|receipt| receipt.id == id).count() + 1;
        let failing =
            attempt <= script.fail_first || script.fail_types.contains(payload["type"].as_str().unwrap_or(""));
        let status = if script.hang {
            0
        } else if failing {
            500
        } else {
            200
        };
        inner.receipts.push(Receipt {
            id: id.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
            payload,
            headers: parts.headers,
            verified,
            status,
            attempt,
        });
        (InFlight(state.clone(), id), status)
    };
    let (_in_flight, status) = guard;
    if script.hang {
        released.await;
    }
    tokio::time::sleep(script.delay).await;
    let status = if status == 0 { 503 } else { status };
    Ok(Response::builder().status(status).body(Full::from("thanks")).unwrap())
}

/// Serves until aborted; aborting drops every open connection with it.
async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let state = state.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(state.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

pub(crate) struct Receiver {
    addr: SocketAddr,
    state: Arc<State>,
    server: Option<JoinHandle<()>>,
}

impl Receiver {
    pub(crate) async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State { script: Mutex::new(script), ..State::default() });
        let server = tokio::spawn(serve(listener, state.clone()));
        Self { addr, state, server: Some(server) }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hooks/latchkey", self.addr)
    }

    pub(crate) fn trust(&self, secret: &str) {
        self.state.secrets.lock().unwrap().push(secret.to_owned());
    }

    fn script(&self, change: impl FnOnce(&mut Script)) {
        change(&mut self.state.script.lock().unwrap());
    }

    /// Lets every hung request answer.
    fn release(&self) {
        self.state.release.notify_waiters();
    }

    /// Stops listening and drops every connection, as a crashed receiver would.
    fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    async fn restart(&mut self) {
        let started = Instant::now();
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(err) if started.elapsed() < Duration::from_secs(10) => {
                    eprintln!("rebinding {}: {err}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => panic!("cannot listen on {} again: {err}", self.addr),
            }
        };
        self.server = Some(tokio::spawn(serve(listener, self.state.clone())));
    }

    fn receipts(&self) -> Vec<Receipt> {
        self.state.inner.lock().unwrap().receipts.clone()
    }

    fn overlaps(&self) -> Vec<String> {
        self.state.inner.lock().unwrap().overlaps.clone()
    }

    /// Waits until `done` holds for the receipts, and returns them.
    pub(crate) async fn wait_for(&self, what: &str, done: impl Fn(&[Receipt]) -> bool) -> Vec<Receipt> {
        let started = Instant::now();
        loop {
            let receipts = self.receipts();
            if done(&receipts) {
                return receipts;
            }
            assert!(started.elapsed() < PATIENCE, "waited in vain for {what}; received: {:#?}", summary(&receipts));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `count` distinct events were answered 200.
    async fn wait_delivered(&self, count: usize) -> Vec<Receipt> {
        self.wait_for(&format!("{count} delivered events"), |receipts| delivered_ids(receipts).len() >= count).await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill();
    }
}

fn summary(receipts: &[Receipt]) -> Vec<String> {
    receipts.iter().map(|r| format!("{} {} #{} -> {}", r.id, r.kind(), r.attempt, r.status)).collect()
}

fn delivered_ids(receipts: &[Receipt]) -> HashSet<String> {
    receipts.iter().filter(|receipt| receipt.status == 200).map(|receipt| receipt.id.clone()).collect()
}

/// Per subject, the event types in the order their first requests arrived; and checks
/// that no event's first request came before the event ahead of it was answered 200.
fn order_by_subject(receipts: &[Receipt]) -> HashMap<String, Vec<String>> {
    let mut order: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (n, receipt) in receipts.iter().enumerate() {
        let events = order.entry(receipt.subject()).or_default();
        if events.iter().any(|(id, _)| *id == receipt.id) {
            continue;
        }
        if let Some((ahead, kind)) = events.last() {
            let answered = receipts[..n].iter().any(|earlier| earlier.id == *ahead && earlier.status == 200);
            assert!(
                answered,
                "{} was sent before {kind} ({ahead}) was delivered: {:#?}",
                receipt.kind(),
                summary(receipts)
            );
        }
        events.push((receipt.id.clone(), receipt.kind().to_owned()));
    }
    order.into_iter().map(|(subject, events)| (subject, events.into_iter().map(|(_, kind)| kind).collect())).collect()
}

// ---------------------------------------------------------------------------------------
// The API

const CREATE_ENDPOINT: &str = "mutation($url: String!, $types: [WebhookEventType!]!) { createWebhookEndpoint(input: {url: $url, eventTypes: $types}) { webhookEndpoint { id url eventTypes enabled } signingSecret } }";
const ALL_TYPES: &[&str] = &[
    "AUTHENTICATION_CREATED",
    "AUTHENTICATION_UPDATED",
    "AUTHENTICATION_REMOVED",
    "AUTHENTICATION_REFRESH_FAILED",
    "AUTHENTICATION_EXPIRING",
    "SOLUTION_INSTANCE_CREATED",
    "SOLUTION_INSTANCE_UPDATED",
    "SOLUTION_INSTANCE_ENABLED",
    "SOLUTION_INSTANCE_DISABLED",
    "SOLUTION_INSTANCE_REMOVED",
];
const DELIVERIES: &str = "query($id: ID!) { webhookDeliveries(endpointId: $id, first: 100) { edges { node { id eventId eventType subjectId payload status nextAttemptAt deliveredAt attempts { number attemptedAt durationMs httpStatus errorClass responseExcerpt } } } } }";
const IMPORT: &str = "mutation($s: String!, $e: String!, $n: String!, $token: String!) { createUserAuthentication(input: {name: $n, serviceId: $s, serviceEnvironmentId: $e, data: {email: \"agent@acme.test\", api_token: $token}, formData: {subdomain: \"acme\"}}) { authenticationId } }";
const REPLACE: &str = "mutation($id: ID!, $token: String!) { updateUserAuthentication(input: {authenticationId: $id, name: \"renewed\", data: {email: \"agent@acme.test\", api_token: $token}, formData: {subdomain: \"acme\"}}) { authentication { id } } }";

/// A GraphQL call to any latchkey (a test server or a spawned process) that must succeed.
async fn gql(base: &str, token: &str, query: &str, variables: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(body.get("errors").is_none(), "{query}: {body}");
    body["data"].clone()
}

/// Registers an endpoint for `types`; answers its id and signing secret.
pub(crate) async fn create_endpoint(base: &str, master: &str, url: &str, types: &[&str]) -> (String, String) {
    let data = gql(base, master, CREATE_ENDPOINT, json!({"url": url, "types": types})).await;
    let created = &data["createWebhookEndpoint"];
    (
        created["webhookEndpoint"]["id"].as_str().unwrap().to_owned(),
        created["signingSecret"].as_str().unwrap().to_owned(),
    )
}

async fn deliveries(base: &str, master: &str, endpoint: &str) -> Vec<Value> {
    let data = gql(base, master, DELIVERIES, json!({"id": endpoint})).await;
    data["webhookDeliveries"]["edges"].as_array().unwrap().iter().map(|edge| edge["node"].clone()).collect()
}

/// The endpoint's delivery log once none of its `count` deliveries is pending. A receiver
/// sees a request before latchkey reads the answer and records it, so a test that has
/// seen the requests waits for the log to catch up before it reads the log.
async fn settled_deliveries(base: &str, master: &str, endpoint: &str, count: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let log = deliveries(base, master, endpoint).await;
        if log.len() >= count && log.iter().all(|delivery| delivery["status"] != "PENDING") {
            return log;
        }
        assert!(started.elapsed() < PATIENCE, "waited in vain for {count} settled deliveries: {log:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn zendesk(base: &str, master: &str) -> (String, String) {
    let query = "{ serviceEnvironments(serviceName: \"zendesk\", serviceVersion: \"1\") { id serviceId } }";
    let data = gql(base, master, query, json!({})).await;
    let environment = &data["serviceEnvironments"][0];
    (environment["serviceId"].as_str().unwrap().to_owned(), environment["id"].as_str().unwrap().to_owned())
}

async fn import(
    base: &str,
    token: &str,
    (service, environment): &(String, String),
    name: &str,
    secret: &str,
) -> String {
    let variables = json!({"s": service, "e": environment, "n": name, "token": secret});
    let data = gql(base, token, IMPORT, variables).await;
    data["createUserAuthentication"]["authenticationId"].as_str().unwrap().to_owned()
}

/// An end user of the master token's organization and a user token for them.
async fn end_user(base: &str, master: &str, external_id: &str) -> (String, String) {
    let created = gql(
        base,
        master,
        "mutation($e: String!) { createExternalUser(input: {name: \"Ann Lee\", externalUserId: $e}) { userId } }",
        json!({"e": external_id}),
    )
    .await;
    let user = created["createExternalUser"]["userId"].as_str().unwrap().to_owned();
    let token =
        gql(base, master, "mutation($u: ID!) { authorize(input: {userId: $u}) { accessToken } }", json!({"u": user}))
            .await["authorize"]["accessToken"]
            .as_str()
            .unwrap()
            .to_owned();
    (user, token)
}

async fn server_with(customize: impl FnOnce(&mut latchkey::config::RawConfig)) -> TestServer {
    TestServer::start_on(Storage::new().await, customize).await
}

async fn fast_server() -> TestServer {
    server_with(|raw| raw.webhook_retry_schedule = Some(FAST_RETRIES.into())).await
}

async fn authentication_row(server: &TestServer, id: &str) -> entity::authentication::Model {
    entity::authentication::Entity::find_by_id(uuid::Uuid::parse_str(id).unwrap())
        .one(&server.db)
        .await
        .unwrap()
        .expect("the authentication")
}

// ---------------------------------------------------------------------------------------
// Endpoints

#[tokio::test]
async fn the_master_token_manages_its_own_endpoints_and_sees_the_signing_secret_only_once() {
    let server = TestServer::start().await;
    let (base, master) = (server.base.as_str(), server.master.as_str());
    let (id, secret) = create_endpoint(base, master, "http://127.0.0.1:9/in", &["AUTHENTICATION_CREATED"]).await;
    let key = secret.strip_prefix("whsec_").expect("the Standard Webhooks form");
    assert!(key.len() >= 40, "{secret}");
    Webhook::new(&secret).expect("a secret the library reads");

    let list = gql(
        base,
        master,
        "{ webhookEndpoints { edges { node { id url eventTypes enabled description } } } }",
        json!({}),
    )
    .await;
    assert_eq!(list["webhookEndpoints"]["edges"][0]["node"]["id"], id.as_str());
    assert!(!list.to_string().contains(key), "a read never shows the secret");

    let update = "mutation($id: ID!, $url: String, $types: [WebhookEventType!], $enabled: Boolean, $d: String) { updateWebhookEndpoint(input: {webhookEndpointId: $id, url: $url, eventTypes: $types, enabled: $enabled, description: $d}) { webhookEndpoint { url eventTypes enabled description } } }";
    let updated = gql(
        base,
        master,
        update,
        json!({"id": id, "url": "http://127.0.0.1:9/other", "types": ["SOLUTION_INSTANCE_REMOVED", "AUTHENTICATION_REMOVED", "AUTHENTICATION_REMOVED"], "enabled": false, "d": "billing"}),
    )
    .await;
    assert_eq!(
        updated["updateWebhookEndpoint"]["webhookEndpoint"],
        json!({"url": "http://127.0.0.1:9/other", "eventTypes": ["AUTHENTICATION_REMOVED", "SOLUTION_INSTANCE_REMOVED"], "enabled": false, "description": "billing"})
    );
    let rotate =
        "mutation($id: ID!) { rotateWebhookEndpointSecret(input: {webhookEndpointId: $id}) { signingSecret } }";
    let rotated =
        gql(base, master, rotate, json!({"id": id})).await["rotateWebhookEndpointSecret"]["signingSecret"].clone();
    assert!(rotated.as_str().unwrap().starts_with("whsec_") && rotated != secret.as_str());

    // Another organization's master token finds nothing, as with a missing id.
    let other = server.other_org().await;
    let missing = uuid::Uuid::now_v7().to_string();
    for operation in [
        update,
        rotate,
        "mutation($id: ID!) { removeWebhookEndpoint(input: {webhookEndpointId: $id}) { clientMutationId } }",
        DELIVERIES,
    ] {
        let foreign = server.graphql(Some(&other), operation, json!({"id": id})).await;
        let absent = server.graphql(Some(&other), operation, json!({"id": missing})).await;
        assert_eq!(error_code(&foreign).as_deref(), Some("NOT_FOUND"), "{foreign}");
        assert_eq!(foreign.to_string().replace(&id, "ID"), absent.to_string().replace(&missing, "ID"));
    }
    let theirs = gql(base, &other, "{ webhookEndpoints { edges { node { id } } } }", json!({})).await;
    assert_eq!(theirs["webhookEndpoints"]["edges"], json!([]));

    // Bounded and checked input.
    for (url, types) in [
        ("ftp://hooks.example.com/", json!(["AUTHENTICATION_CREATED"])),
        ("https://user:pw@hooks.example.com/", json!(["AUTHENTICATION_CREATED"])),
        ("https://hooks.example.com/", json!([])),
        (&*format!("https://hooks.example.com/{}", "x".repeat(2100)), json!(["AUTHENTICATION_CREATED"])),
    ] {
        let body = server.graphql(Some(master), CREATE_ENDPOINT, json!({"url": url, "types": types})).await;
        assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"), "{body}");
    }
    let unknown = server
        .graphql(
            Some(master),
            CREATE_ENDPOINT,
            json!({"url": "https://a.example/", "types": ["AUTHENTICATION_TOUCHED"]}),
        )
        .await;
    assert!(error_code(&unknown).is_some(), "{unknown}");
    for n in 1..20 {
        create_endpoint(base, master, &format!("http://127.0.0.1:9/{n}"), &["AUTHENTICATION_CREATED"]).await;
    }
    let over = server
        .graphql(
            Some(master),
            CREATE_ENDPOINT,
            json!({"url": "http://127.0.0.1:9/21", "types": ["AUTHENTICATION_CREATED"]}),
        )
        .await;
    assert_eq!(error_code(&over).as_deref(), Some("CONFLICT"), "{over}");

    gql(
        base,
        master,
        "mutation($id: ID!) { removeWebhookEndpoint(input: {webhookEndpointId: $id}) { clientMutationId } }",
        json!({"id": id}),
    )
    .await;
    let after = gql(base, master, "{ webhookEndpoints(first: 100) { edges { node { id } } } }", json!({})).await;
    assert!(!after.to_string().contains(&id));
    let audit =
        gql(base, master, "{ auditEvents(first: 100) { edges { node { action } } } }", json!({})).await.to_string();
    for action in [
        "webhook_endpoint.created",
        "webhook_endpoint.updated",
        "webhook_endpoint.secret_rotated",
        "webhook_endpoint.removed",
    ] {
        assert!(audit.contains(action), "{action} is audited");
    }
}

// ---------------------------------------------------------------------------------------
// Delivery

#[tokio::test]
async fn every_event_arrives_signed_in_order_through_retries_with_one_webhook_id() {
    let server = fast_server().await;
    let (base, master) = (server.base.as_str(), server.master.as_str());
    let receiver = Receiver::start(Script { fail_first: 2, ..Script::default() }).await;
    let (endpoint, secret) = create_endpoint(base, master, &receiver.url(), ALL_TYPES).await;
    receiver.trust(&secret);

    let (user, token) = end_user(base, master, "ann-1").await;
    let zendesk = zendesk(base, master).await;
    let solution = gql(
        base,
        master,
        "mutation($in: CreateSolutionInput!) { createSolution(input: $in) { solution { id } } }",
        json!({"in": {
            "title": "Sync", "workflows": [{"name": "Sync"}],
            "authSlots": [{"externalId": "zendesk", "title": "Zendesk", "serviceId": zendesk.0}],
            "configSlots": [{"externalId": "region", "title": "Region", "valueType": "STRING"}],
        }}),
    )
    .await["createSolution"]["solution"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    gql(
        base,
        master,
        "mutation($id: ID!) { publishSolution(input: {solutionId: $id}) { solution { id } } }",
        json!({"id": solution}),
    )
    .await;

    let authentication = import(base, &token, &zendesk, "Ann's Zendesk", "zd-token-0001").await;
    gql(base, &token, REPLACE, json!({"id": authentication, "token": "zd-token-0002"})).await;
    let instance = gql(base, &token, "mutation($s: ID!, $a: String!) { createSolutionInstance(input: {solutionId: $s, instanceName: \"Ann's sync\", authValues: [{externalId: \"zendesk\", authId: $a}]}) { solutionInstance { id } } }", json!({"s": solution, "a": authentication})).await["createSolutionInstance"]["solutionInstance"]["id"].as_str().unwrap().to_owned();
    let update = "mutation($in: UpdateSolutionInstanceInput!) { updateSolutionInstance(input: $in) { solutionInstance { id } } }";
    // Values and enabling in one change: two events, in this order.
    gql(base, &token, update, json!({"in": {"solutionInstanceId": instance, "configValues": [{"externalId": "region", "value": "\"eu\""}], "enabled": true}})).await;
    // A rename alone reports nothing.
    gql(base, &token, update, json!({"in": {"solutionInstanceId": instance, "instanceName": "Ann's renamed sync"}}))
        .await;
    gql(base, &token, update, json!({"in": {"solutionInstanceId": instance, "enabled": false}})).await;
    gql(
        base,
        &token,
        "mutation($id: ID!) { removeSolutionInstance(input: {solutionInstanceId: $id}) { clientMutationId } }",
        json!({"id": instance}),
    )
    .await;
    gql(
        base,
        &token,
        "mutation($id: ID!) { removeAuthentication(input: {authenticationId: $id}) { clientMutationId } }",
        json!({"id": authentication}),
    )
    .await;

    let receipts = receiver.wait_delivered(8).await;
    assert!(
        receipts.iter().all(|receipt| receipt.verified == [true]),
        "every request verifies: {:#?}",
        summary(&receipts)
    );
    let order = order_by_subject(&receipts);
    assert_eq!(order[&authentication], ["authentication.created", "authentication.updated", "authentication.removed"]);
    assert_eq!(
        order[&instance],
        [
            "solution_instance.created",
            "solution_instance.updated",
            "solution_instance.enabled",
            "solution_instance.disabled",
            "solution_instance.removed"
        ]
    );
    assert_eq!(order.len(), 2);
    // Each event: two refusals, then delivered, all under one id; nothing more.
    let mut by_id: HashMap<&str, Vec<&Receipt>> = HashMap::new();
    receipts.iter().for_each(|receipt| by_id.entry(&receipt.id).or_default().push(receipt));
    for (id, attempts) in &by_id {
        assert_eq!(attempts.iter().map(|r| r.status).collect::<Vec<_>>(), [500, 500, 200], "{id}");
        assert!(attempts.windows(2).all(|pair| pair[0].body == pair[1].body), "the same body on every retry");
        assert!(attempts.iter().all(|r| r.headers["content-type"] == "application/json"));
        let stamp: i64 = attempts[2].headers["webhook-timestamp"].to_str().unwrap().parse().unwrap();
        assert!((stamp - chrono::Utc::now().timestamp()).abs() < 120);
    }
    assert!(receiver.overlaps().is_empty(), "{:?}", receiver.overlaps());

    // Payloads: ids and names.
    let created = receipts.iter().find(|r| r.kind() == "authentication.created").unwrap();
    let data = &created.payload["data"];
    assert_eq!(data["authenticationId"], authentication.as_str());
    assert_eq!((data["userId"].as_str(), data["externalUserId"].as_str()), (Some(user.as_str()), Some("ann-1")));
    assert_eq!((data["serviceId"].as_str(), data["serviceName"].as_str()), (Some(zendesk.0.as_str()), Some("zendesk")));
    assert_eq!(data["serviceEnvironmentId"], zendesk.1.as_str());
    assert!(created.payload["timestamp"].as_str().unwrap().ends_with('Z'));
    let replaced = receipts.iter().find(|r| r.kind() == "authentication.updated").unwrap();
    assert_eq!(replaced.payload["data"]["cause"], "replaced");
    let updated = receipts.iter().find(|r| r.kind() == "solution_instance.updated").unwrap();
    assert_eq!(updated.payload["data"]["changed"], json!(["configValues"]));
    assert_eq!(updated.payload["data"]["solutionId"], solution.as_str());
    let enabled = receipts.iter().find(|r| r.kind() == "solution_instance.enabled").unwrap();
    assert_eq!(
        (enabled.payload["data"]["enabled"].as_bool(), enabled.payload["data"]["name"].as_str()),
        (Some(true), Some("Ann's sync"))
    );

    // The delivery log tells the same story.
    let log = settled_deliveries(base, master, &endpoint, 8).await;
    assert_eq!(log.len(), 8);
    for delivery in &log {
        assert_eq!(delivery["status"], "DELIVERED", "{delivery}");
        assert!(delivery["nextAttemptAt"].is_null() && delivery["deliveredAt"].is_string());
        let statuses: Vec<&Value> = delivery["attempts"].as_array().unwrap().iter().map(|a| &a["httpStatus"]).collect();
        assert_eq!(statuses, [&json!(500), &json!(500), &json!(200)], "{delivery}");
        let classes: Vec<&Value> = delivery["attempts"].as_array().unwrap().iter().map(|a| &a["errorClass"]).collect();
        assert_eq!(classes, [&json!("HTTP_STATUS"), &json!("HTTP_STATUS"), &Value::Null]);
        assert_eq!(delivery["attempts"][0]["responseExcerpt"], "thanks");
        let sent = by_id.get(delivery["eventId"].as_str().unwrap()).expect("the log's eventId is the webhook-id");
        assert_eq!(sent[0].body, delivery["payload"].as_str().unwrap());
    }
}

#[tokio::test]
async fn a_receiver_killed_mid_delivery_and_started_again_gets_every_event_in_order() {
    let server = fast_server().await;
    let (base, master) = (server.base.as_str(), server.master.as_str());
    let mut receiver = Receiver::start(Script { hang: true, ..Script::default() }).await;
    let (endpoint, secret) = create_endpoint(base, master, &receiver.url(), ALL_TYPES).await;
    receiver.trust(&secret);
    let (_, token) = end_user(base, master, "ann-1").await;
    let zendesk = zendesk(base, master).await;
    let first = import(base, &token, &zendesk, "first", "zd-token-0001").await;
    gql(base, &token, REPLACE, json!({"id": first, "token": "zd-token-0002"})).await;
    for n in 0..3 {
        import(base, &token, &zendesk, &format!("more-{n}"), "zd-token-0003").await;
    }

    receiver.wait_for("a request in flight", |receipts| !receipts.is_empty()).await;
    receiver.kill();
    receiver.script(|script| script.hang = false);
    // While it is down, attempts fail to connect and are retried.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    receiver.restart().await;

    let receipts = receiver.wait_delivered(5).await;
    let order = order_by_subject(&receipts);
    assert_eq!(order[&first], ["authentication.created", "authentication.updated"]);
    assert_eq!(order.len(), 4);
    assert!(receiver.overlaps().is_empty(), "{:?}", receiver.overlaps());
    let log = settled_deliveries(base, master, &endpoint, 5).await;
    assert!(log.iter().all(|delivery| delivery["status"] == "DELIVERED"), "{log:#?}");
    let classes: HashSet<String> = log
        .iter()
        .flat_map(|delivery| delivery["attempts"].as_array().unwrap().clone())
        .filter_map(|attempt| attempt["errorClass"].as_str().map(str::to_owned))
        .collect();
    assert!(classes.contains("CONNECT"), "the dropped and refused connections are logged: {classes:?}");
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_is_given_up_then_the_next_event_of_its_subject_follows_and_redelivery_works() {
    let server = server_with(|raw| raw.webhook_retry_schedule = Some("200ms,200ms".into())).await;
    let (base, master) = (server.base.as_str(), server.master.as_str());
    let fail_created = Script { fail_types: HashSet::from(["authentication.created".to_owned()]), ..Script::default() };
    let receiver = Receiver::start(fail_created).await;
    let (endpoint, secret) = create_endpoint(base, master, &receiver.url(), ALL_TYPES).await;
    receiver.trust(&secret);
    let (_, token) = end_user(base, master, "ann-1").await;
    let zendesk = zendesk(base, master).await;
    let authentication = import(base, &token, &zendesk, "zd", "zd-token-0001").await;
    gql(base, &token, REPLACE, json!({"id": authentication, "token": "zd-token-0002"})).await;

    let receipts = receiver.wait_delivered(1).await;
    let kinds: Vec<(&str, u16)> = receipts.iter().map(|r| (r.kind(), r.status)).collect();
    assert_eq!(
        kinds,
        [
            ("authentication.created", 500),
            ("authentication.created", 500),
            ("authentication.created", 500),
            ("authentication.updated", 200)
        ],
        "three attempts, given up, then the next event"
    );
    let log = deliveries(base, master, &endpoint).await;
    let failed = log.iter().find(|d| d["eventType"] == "authentication.created").unwrap().clone();
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["attempts"].as_array().unwrap().len(), 3);
    assert!(failed["nextAttemptAt"].is_null());

    // Redelivered, with the same webhook-id, once the receiver takes it.
    receiver.script(|script| script.fail_types.clear());
    let redeliver =
        "mutation($id: ID!) { redeliverWebhookEvent(input: {deliveryId: $id}) { delivery { id status eventId } } }";
    let other = server.other_org().await;
    let foreign = server.graphql(Some(&other), redeliver, json!({"id": failed["id"]})).await;
    assert_eq!(error_code(&foreign).as_deref(), Some("NOT_FOUND"), "{foreign}");
    let again =
        gql(base, master, redeliver, json!({"id": failed["id"]})).await["redeliverWebhookEvent"]["delivery"].clone();
    assert_eq!((again["status"].as_str(), again["eventId"].as_str()), (Some("PENDING"), failed["eventId"].as_str()));
    let receipts = receiver.wait_delivered(2).await;
    let last = receipts.last().unwrap();
    assert_eq!(
        (last.kind(), last.status, last.id.as_str()),
        ("authentication.created", 200, failed["eventId"].as_str().unwrap())
    );
    assert_eq!(
        deliveries(base, master, &endpoint).await.len(),
        3,
        "the failed delivery stays in the log beside the new one"
    );

    // A disabled endpoint gets no new events and refuses redelivery.
    let disable = "mutation($id: ID!) { updateWebhookEndpoint(input: {webhookEndpointId: $id, enabled: false}) { webhookEndpoint { enabled } } }";
    gql(base, master, disable, json!({"id": endpoint})).await;
    import(base, &token, &zendesk, "quiet", "zd-token-0003").await;
    assert_eq!(deliveries(base, master, &endpoint).await.len(), 3);
    let refused = server.graphql(Some(master), redeliver, json!({"id": failed["id"]})).await;
    assert_eq!(error_code(&refused).as_deref(), Some("CONFLICT"), "{refused}");
}

// ---------------------------------------------------------------------------------------
// Replicas: two processes on one database

/// Two `latchkey serve` processes on one database (SQLite file, or PostgreSQL with
/// `LATCHKEY_TEST_POSTGRES_URL`), changes made through both, a receiver that refuses
/// every event once and answers slowly: every event is delivered, in order per subject,
/// and no request is ever sent while another with its `webhook-id` is in flight.
#[tokio::test]
async fn two_processes_on_one_database_deliver_every_event_and_never_the_same_one_twice_at_once() {
    const SUBJECTS: usize = 12;
    let cluster = Cluster::new().await;
    let env = [("LATCHKEY_WEBHOOK_RETRY_SCHEDULE", "200ms,200ms,200ms,200ms")];
    let processes = [cluster.start(&env).await, cluster.start(&env).await];
    let receiver =
        Receiver::start(Script { fail_first: 1, delay: Duration::from_millis(150), ..Script::default() }).await;
    let master = cluster.master.as_str();
    let (_, secret) = create_endpoint(&processes[0].base, master, &receiver.url(), ALL_TYPES).await;
    receiver.trust(&secret);
    let (_, token) = end_user(&processes[1].base, master, "ann-1").await;
    let zendesk = zendesk(&processes[0].base, master).await;
    let mut ids = Vec::new();
    for n in 0..SUBJECTS {
        ids.push(import(&processes[n % 2].base, &token, &zendesk, &format!("zd-{n}"), "zd-token-0001").await);
    }
    for (n, id) in ids.iter().enumerate() {
        gql(&processes[(n + 1) % 2].base, &token, REPLACE, json!({"id": id, "token": "zd-token-0002"})).await;
    }

    let receipts = receiver.wait_delivered(2 * SUBJECTS).await;
    // Let any stray duplicate arrive before judging.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let receipts = if receiver.receipts().len() > receipts.len() { receiver.receipts() } else { receipts };
    assert!(receiver.overlaps().is_empty(), "sent twice at once: {:?}", receiver.overlaps());
    let mut by_id: HashMap<&str, Vec<u16>> = HashMap::new();
    receipts.iter().for_each(|receipt| by_id.entry(&receipt.id).or_default().push(receipt.status));
    assert_eq!(by_id.len(), 2 * SUBJECTS);
    for (id, statuses) in &by_id {
        assert_eq!(statuses, &[500, 200], "{id}: one refusal, one delivery, nothing twice");
    }
    let order = order_by_subject(&receipts);
    for id in &ids {
        assert_eq!(order[id], ["authentication.created", "authentication.updated"]);
    }
    assert!(receipts.iter().all(|receipt| receipt.verified == [true]));
}

/// A process killed while a request is in flight: its lease runs out and the other
/// process sends the event again, same `webhook-id`, and it is delivered.
#[tokio::test]
async fn a_process_killed_mid_delivery_loses_nothing_another_process_delivers_it_after_the_lease() {
    let cluster = Cluster::new().await;
    let env = [("LATCHKEY_WEBHOOK_RETRY_SCHEDULE", FAST_RETRIES)];
    let mut first = cluster.start(&env).await;
    let receiver = Receiver::start(Script { hang: true, ..Script::default() }).await;
    let master = cluster.master.as_str();
    let (endpoint, secret) = create_endpoint(&first.base, master, &receiver.url(), ALL_TYPES).await;
    receiver.trust(&secret);
    let (_, token) = end_user(&first.base, master, "ann-1").await;
    let zendesk = zendesk(&first.base, master).await;
    let authentication = import(&first.base, &token, &zendesk, "zd", "zd-token-0001").await;

    let hung = receiver.wait_for("the first request", |receipts| !receipts.is_empty()).await;
    let started = Instant::now();
    first.crash();
    receiver.script(|script| script.hang = false);
    receiver.release();
    let second = cluster.start(&env).await;
    let receipts = receiver.wait_delivered(1).await;
    let delivered = receipts.iter().find(|receipt| receipt.status == 200).unwrap();
    assert_eq!(delivered.id, hung[0].id, "the same event, the same webhook-id");
    assert_eq!(delivered.payload["data"]["authenticationId"], authentication.as_str());
    assert!(started.elapsed() < PATIENCE);
    assert!(receiver.overlaps().is_empty(), "{:?}", receiver.overlaps());
    let log = settled_deliveries(&second.base, master, &endpoint, 1).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], "DELIVERED");
}

// ---------------------------------------------------------------------------------------
// The outbox and the refresh hooks

/// The refresh work's hooks write their events in the caller's transaction: rolled back,
/// nothing is sent; committed, `authentication.refresh_failed` and `authentication.updated`
/// (cause `refreshed`) arrive. A failed change sends nothing either.
#[tokio::test]
async fn events_are_written_in_the_changes_transaction_and_a_rolled_back_change_sends_nothing() {
    let server = fast_server().await;
    let (base, master) = (server.base.as_str(), server.master.as_str());
    let receiver = Receiver::start(Script::default()).await;
    let (endpoint, secret) = create_endpoint(base, master, &receiver.url(), ALL_TYPES).await;
    receiver.trust(&secret);
    let (_, token) = end_user(base, master, "ann-1").await;
    let zendesk = zendesk(base, master).await;
    let authentication = import(base, &token, &zendesk, "zd", "zd-token-0001").await;
    receiver.wait_delivered(1).await;
    let events = || entity::webhook_event::Entity::find().count(&server.db);
    assert_eq!(events().await.unwrap(), 1);

    let row = authentication_row(&server, &authentication).await;
    let txn = latchkey::db::write(&server.db).await.unwrap();
    authentications::record_refresh_failed(&txn, &row, "invalid_grant").await.unwrap();
    authentications::record_refreshed(&txn, &row).await.unwrap();
    txn.rollback().await.unwrap();
    // A change refused by the API writes nothing either.
    let invalid = "mutation($id: ID!) { updateUserAuthentication(input: {authenticationId: $id, name: \"x\", data: {email: \"agent@acme.test\"}}) { authentication { id } } }";
    let refused = server.graphql(Some(&token), invalid, json!({"id": authentication})).await;
    assert_eq!(error_code(&refused).as_deref(), Some("BAD_USER_INPUT"), "{refused}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(events().await.unwrap(), 1, "the rolled back and refused changes wrote no event");
    assert_eq!(receiver.receipts().len(), 1);

    let txn = latchkey::db::write(&server.db).await.unwrap();
    authentications::record_refresh_failed(&txn, &row, "invalid_grant <b>\"x\"").await.unwrap();
    authentications::record_refreshed(&txn, &row).await.unwrap();
    txn.commit().await.unwrap();
    let receipts = receiver.wait_delivered(3).await;
    assert_eq!(receipts[1].kind(), "authentication.refresh_failed");
    assert_eq!(receipts[1].payload["data"]["reason"], "invalid_grantbx", "only the characters of an error code");
    assert_eq!(receipts[2].kind(), "authentication.updated");
    assert_eq!(receipts[2].payload["data"]["cause"], "refreshed");
    assert_eq!(deliveries(base, master, &endpoint).await.len(), 3);
    let audit = gql(base, master, "{ auditEvents(first: 100) { edges { node { action actorKind } } } }", json!({}))
        .await
        .to_string();
    assert!(audit.contains("authentication.refresh_failed") && audit.contains("authentication.refreshed"));
}

#[tokio::test]
async fn an_approaching_hard_expiry_is_reported_once_per_expiry_within_the_window() {
    let server = fast_server().await;
    let (base, master) = (server.base.as_str(), server.master.as_str());
    let receiver = Receiver::start(Script::default()).await;
    let (_, secret) = create_endpoint(base, master, &receiver.url(), &["AUTHENTICATION_EXPIRING"]).await;
    receiver.trust(&secret);
    let (_, token) = end_user(base, master, "ann-1").await;
    let zendesk = zendesk(base, master).await;
    let soon = import(base, &token, &zendesk, "soon", "zd-token-0001").await;
    let later = import(base, &token, &zendesk, "later", "zd-token-0002").await;
    let now = chrono::Utc::now();
    let week = Duration::from_secs(7 * 24 * 3600);
    let in_three_days = now + chrono::TimeDelta::days(3);
    authentications::set_hard_expiry(&server.db, &authentication_row(&server, &soon).await, Some(in_three_days))
        .await
        .unwrap();
    let in_a_month = Some(now + chrono::TimeDelta::days(30));
    authentications::set_hard_expiry(&server.db, &authentication_row(&server, &later).await, in_a_month).await.unwrap();

    assert_eq!(expiry::scan(&server.db, now, week).await.unwrap(), 1);
    assert_eq!(expiry::scan(&server.db, now, week).await.unwrap(), 0, "reported once");
    let receipts = receiver.wait_delivered(1).await;
    let data = &receipts[0].payload["data"];
    assert_eq!(
        (receipts[0].kind(), data["authenticationId"].as_str()),
        ("authentication.expiring", Some(soon.as_str()))
    );
    let reported = chrono::DateTime::parse_from_rfc3339(data["expiresAt"].as_str().unwrap()).unwrap();
    assert!((reported.timestamp_millis() - in_three_days.timestamp_millis()).abs() <= 1);

    // A new hard expiry is a new warning.
    let renewed = now + chrono::TimeDelta::days(5);
    authentications::set_hard_expiry(&server.db, &authentication_row(&server, &soon).await, Some(renewed))
        .await
        .unwrap();
    assert_eq!(expiry::scan(&server.db, now, week).await.unwrap(), 1);
    receiver.wait_delivered(2).await;
}

#[tokio::test]
async fn removing_an_end_user_reports_their_removals_and_purging_keeps_what_is_still_pending() {
    let server = TestServer::start().await;
    let (base, master) = (server.base.as_str(), server.master.as_str());
    let receiver = Receiver::start(Script::default()).await;
    let (endpoint, secret) = create_endpoint(base, master, &receiver.url(), ALL_TYPES).await;
    receiver.trust(&secret);
    let (user, token) = end_user(base, master, "ann-1").await;
    let zendesk = zendesk(base, master).await;
    let authentication = import(base, &token, &zendesk, "zd", "zd-token-0001").await;
    let solution = server.publish_solution(master, "Sync").await;
    let instance = server.create_instance(&token, &solution, "mine").await;
    receiver.wait_delivered(2).await;
    let remove = "mutation($u: ID!) { removeExternalUser(input: {userId: $u}) { clientMutationId } }";
    gql(base, master, remove, json!({"u": user})).await;
    let receipts = receiver.wait_delivered(4).await;
    let removals: HashSet<(&str, String)> = receipts[2..].iter().map(|r| (r.kind(), r.subject())).collect();
    assert_eq!(
        removals,
        HashSet::from([("solution_instance.removed", instance), ("authentication.removed", authentication)])
    );
    assert!(receipts[2..].iter().all(|r| r.payload["data"]["externalUserId"] == "ann-1"));

    // An endpoint that cannot be reached keeps its delivery pending (the next try is 10 s on).
    create_endpoint(base, master, "http://127.0.0.1:9/down", &["AUTHENTICATION_CREATED"]).await;
    let (_, token) = end_user(base, master, "bob-1").await;
    import(base, &token, &zendesk, "zd", "zd-token-0002").await;
    receiver.wait_delivered(5).await;
    settled_deliveries(base, master, &endpoint, 5).await;
    let purged =
        latchkey::domain::webhooks::deliveries::purge(&server.db, chrono::Utc::now() + chrono::TimeDelta::days(1))
            .await
            .unwrap();
    assert_eq!(purged, 5);
    assert_eq!(entity::webhook_delivery::Entity::find().count(&server.db).await.unwrap(), 1, "the pending one stays");
    assert_eq!(entity::webhook_event::Entity::find().count(&server.db).await.unwrap(), 1, "with its event");
}

// ---------------------------------------------------------------------------------------
// Secrets

#[tokio::test]
async fn no_payload_header_or_log_entry_carries_a_credential_or_a_secret() {
    const API_TOKEN: &str = "zd-SECRET-9f3a1c7e5b";
    const NEW_TOKEN: &str = "zd-SECRET-2e8d4f6a0c";
    let server = fast_server().await;
    let (base, master) = (server.base.as_str(), server.master.as_str());
    let receiver = Receiver::start(Script { fail_first: 1, ..Script::default() }).await;
    let (endpoint, secret) = create_endpoint(base, master, &receiver.url(), ALL_TYPES).await;
    receiver.trust(&secret);
    let (_, token) = end_user(base, master, "ann-1").await;
    let zendesk = zendesk(base, master).await;
    let id = import(base, &token, &zendesk, "zd", API_TOKEN).await;
    gql(base, &token, REPLACE, json!({"id": id, "token": NEW_TOKEN})).await;
    let row = authentication_row(&server, &id).await;
    authentications::record_refresh_failed(&server.db, &row, "invalid_grant").await.unwrap();
    gql(
        base,
        &token,
        "mutation($id: ID!) { removeAuthentication(input: {authenticationId: $id}) { clientMutationId } }",
        json!({"id": id}),
    )
    .await;

    let receipts = receiver.wait_delivered(4).await;
    let secret_key = secret.strip_prefix("whsec_").unwrap();
    let log = serde_json::to_string(&deliveries(base, master, &endpoint).await).unwrap();
    let forbidden = [API_TOKEN, NEW_TOKEN, secret_key, master, token.as_str(), "agent@acme.test"];
    for receipt in &receipts {
        let headers: String = receipt.headers.iter().map(|(name, value)| format!("{name}: {value:?}\n")).collect();
        for needle in forbidden {
            assert!(!receipt.body.contains(needle), "a payload holds {needle}: {}", receipt.body);
            assert!(!headers.contains(needle), "a header holds {needle}");
        }
    }
    for needle in forbidden {
        assert!(!log.contains(needle), "the delivery log holds {needle}");
    }
    let logs = crate::support::captured_logs();
    for needle in [secret_key, API_TOKEN, NEW_TOKEN] {
        assert!(!logs.contains(needle), "the logs hold {needle}");
    }
}

/// Key rotation re-seals signing secrets with every other sealed value, and deliveries
/// still verify with the secret the partner holds. Rotating the signing secret signs
/// with both for a day.
#[tokio::test]
async fn key_rotation_reseals_signing_secrets_and_a_rotated_signing_secret_overlaps_the_old_one() {
    let server = fast_server().await;
    let (base, master) = (server.base.as_str(), server.master.as_str());
    let receiver = Receiver::start(Script::default()).await;
    let (endpoint, old_secret) = create_endpoint(base, master, &receiver.url(), ALL_TYPES).await;
    receiver.trust(&old_secret);

    let key_file = server.storage.dir.path().join("encryption.keys");
    let old = Keyring::parse(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    let rotated =
        Keyring::from_keys(vec![EncryptionKey::generate(), EncryptionKey::from_bytes(*old.active().expose())]).unwrap();
    files::write_key_file(&key_file, &rotated).unwrap();
    fingerprint::verify_keyring(&server.db, &rotated).await.unwrap();
    assert_eq!(rotation::reseal_all(&server.db, &rotated, 10).await.unwrap(), 1, "the endpoint's row moved");
    assert_eq!(rotation::usage(&server.db).await.unwrap(), [(rotated.active().id().to_owned(), 1)]);
    let row = entity::webhook_endpoint::Entity::find_by_id(uuid::Uuid::parse_str(&endpoint).unwrap())
        .one(&server.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.key_id, rotated.active().id());

    let (_, token) = end_user(base, master, "ann-1").await;
    let zendesk = zendesk(base, master).await;
    import(base, &token, &zendesk, "after key rotation", "zd-token-0001").await;
    let receipts = receiver.wait_delivered(1).await;
    assert_eq!(receipts[0].verified, [true], "the partner's secret still verifies");

    let rotate =
        "mutation($id: ID!) { rotateWebhookEndpointSecret(input: {webhookEndpointId: $id}) { signingSecret } }";
    let new_secret =
        gql(base, master, rotate, json!({"id": endpoint})).await["rotateWebhookEndpointSecret"]["signingSecret"]
            .as_str()
            .unwrap()
            .to_owned();
    receiver.trust(&new_secret);
    import(base, &token, &zendesk, "after secret rotation", "zd-token-0002").await;
    let receipts = receiver.wait_delivered(2).await;
    assert_eq!(receipts[1].verified, [true, true], "old and new secrets both verify during the overlap");
    let signatures = receipts[1].headers["webhook-signature"].to_str().unwrap();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
}

// ---------------------------------------------------------------------------------------
// Outbound calls stay on public addresses unless allowed

/// Without `LATCHKEY_OUTBOUND_ALLOW_PRIVATE`, a loopback address literal is refused at
/// registration, `http` too, and a name that resolves to loopback is refused at delivery
/// time: the listener behind it never sees a connection.
#[tokio::test]
async fn webhooks_never_reach_loopback_unless_private_addresses_are_allowed() {
    let server = server_with(|raw| {
        raw.outbound_allow_private = Some("false".into());
        raw.webhook_retry_schedule = Some("200ms".into());
    })
    .await;
    let (base, master) = (server.base.as_str(), server.master.as_str());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let accepting = tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });

    for url in [
        format!("http://127.0.0.1:{port}/in"),
        format!("https://127.0.0.1:{port}/in"),
        format!("https://[::1]:{port}/in"),
        "https://169.254.169.254/latest".to_owned(),
        "http://hooks.example.com/in".to_owned(),
    ] {
        let body = server
            .graphql(Some(master), CREATE_ENDPOINT, json!({"url": url, "types": ["AUTHENTICATION_CREATED"]}))
            .await;
        assert_eq!(error_code(&body).as_deref(), Some("BAD_USER_INPUT"), "{url}: {body}");
    }
    let (endpoint, _) =
        create_endpoint(base, master, &format!("https://localhost:{port}/in"), &["AUTHENTICATION_CREATED"]).await;
    let update = "mutation($id: ID!, $url: String) { updateWebhookEndpoint(input: {webhookEndpointId: $id, url: $url}) { webhookEndpoint { url } } }";
    let moved = server
        .graphql(Some(master), update, json!({"id": endpoint, "url": format!("https://127.0.0.1:{port}/in")}))
        .await;
    assert_eq!(error_code(&moved).as_deref(), Some("BAD_USER_INPUT"), "{moved}");

    let (_, token) = end_user(base, master, "ann-1").await;
    import(base, &token, &zendesk(base, master).await, "zd", "zd-token-0001").await;
    let started = Instant::now();
    let log = loop {
        let log = deliveries(base, master, &endpoint).await;
        if log.first().is_some_and(|delivery| delivery["status"] == "FAILED") {
            break log;
        }
        assert!(started.elapsed() < PATIENCE, "{log:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let attempts = log[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts.iter().all(|attempt| attempt["errorClass"] == "REFUSED_ADDRESS" && attempt["httpStatus"].is_null()),
        "{attempts:?}"
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing connected to loopback");
    accepting.abort();
}

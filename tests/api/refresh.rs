//! Keeping authentications alive, against a real authorization server (oidc-provider on
//! loopback, `tests/oauth-server`) with access tokens of seconds and rotating refresh
//! tokens: the lazy refresh of the full read, the background job, exactly one refresh per
//! expiry (in one process and across two on one database), a revocation, an outage, client
//! credentials, forced refreshes, the hard expiry the expiring notice warns of, the
//! webhooks a refresh and a refusal send, and a process killed mid-refresh.
//!
//! The provider's tokens are obtained by driving its authorization code flow (PKCE) from
//! the test and imported with `createUserAuthentication` into an environment whose OAuth
//! app is the provider's test client, as a partner moving its tokens to latchkey would.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use latchkey::{
    domain::webhooks::expiry,
    oauth::{self, OAuthClient},
    outbound::{AddressPolicy, Outbound},
};
use reqwest::{Method, StatusCode};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, sea_query::Expr};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::{
    oauth::{CLIENT_ID, CLIENT_SECRET, Provider, browser, oauth_environment, sign_in},
    process::Cluster,
    support::{Api, Storage, TestServer, captured_logs},
    webhooks::{Receipt, Receiver, Script, create_endpoint},
};

/// The test client's redirect URI: the test takes the code from it; nothing listens there.
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const SCOPES: &[&str] = &["openid", "offline_access", "contacts.read"];

/// An end user with a user token and an environment whose OAuth app is the provider's
/// test client, on a latchkey reached at `api`.
struct Scene {
    api: Api,
    master: String,
    user_token: String,
    service: String,
    environment: String,
    provider: Provider,
}

impl Scene {
    /// `None` (the test is skipped, saying why) where Node or the provider's packages are
    /// missing outside CI.
    async fn new(test: &str, api: Api, master: &str, ttl_secs: u64, kind: &str) -> Option<Self> {
        let ttl = ttl_secs.to_string();
        let provider = Provider::start_with(test, REDIRECT, &[("ACCESS_TOKEN_TTL", &ttl)]).await?;
        let service = api.create_custom_service(master, "acme-crm").await;
        let environment =
            oauth_environment(&api, master, &service, kind, &provider.issuer, CLIENT_ID, CLIENT_SECRET).await;
        let user = api.create_user(master, "alice").await;
        let user_token = api.user_token(master, &user).await;
        Some(Self { api, master: master.to_owned(), user_token, service, environment, provider })
    }

    /// Imports `data` as the end user's; returns the authentication's id.
    async fn import(&self, data: Value, scopes: &[&str]) -> String {
        import(&self.api, &self.user_token, (&self.service, &self.environment), data, scopes).await
    }

    /// Tokens the provider issued to `alice`, imported with a field of latchkey's own
    /// (`team`) that no token answer restates.
    async fn connect(&self) -> String {
        let mut tokens = provider_tokens(&self.provider).await;
        tokens["team"] = json!("t-1");
        self.import(tokens, &[]).await
    }

    /// The REST full read: metadata (`status`, `expiresAt`) and the credentials.
    async fn full_at(&self, api: &Api, id: &str) -> Value {
        let (status, body) =
            api.rest(Method::GET, &format!("/authentications/{id}/full"), Some(&self.user_token), None).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn full(&self, id: &str) -> Value {
        self.full_at(&self.api, id).await
    }

    /// The GraphQL metadata read.
    async fn metadata(&self, id: &str) -> Value {
        let data = self
            .api
            .ok(
                &self.user_token,
                "query($id: ID!) { authentication(id: $id) { status expiresAt updated } }",
                json!({"id": id}),
            )
            .await;
        data["authentication"].clone()
    }

    async fn force(&self, token: &str, id: &str) -> Value {
        let data = self
            .api
            .ok(
                token,
                "mutation($id: ID!) { refreshAuthentication(input: {authenticationId: $id}) { outcome error authentication { status expiresAt } } }",
                json!({"id": id}),
            )
            .await;
        data["refreshAuthentication"].clone()
    }

    /// The same REST call as the end user, `times` at once.
    async fn at_once(&self, method: Method, path: &str, times: usize) -> Vec<(u16, Value)> {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..times {
            let (api, token, method, path) =
                (self.api.clone(), self.user_token.clone(), method.clone(), path.to_owned());
            calls.spawn(async move { api.rest(method, &path, Some(&token), None).await });
        }
        calls.join_all().await
    }

    async fn refreshes(&self) -> u64 {
        self.provider.grants("refresh_token").await
    }

    /// Waits up to `limit` for the metadata's status to read `status`.
    async fn await_status(&self, id: &str, status: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let metadata = self.metadata(id).await;
            if metadata["status"] == status {
                return metadata;
            }
            assert!(started.elapsed() < limit, "status {status} within {limit:?}; now {metadata}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether the provider takes `access_token` (its userinfo endpoint).
    async fn works(&self, access_token: &Value) -> bool {
        let response = reqwest::Client::new()
            .get(format!("{}/me", self.provider.issuer))
            .bearer_auth(access_token.as_str().unwrap())
            .send()
            .await
            .unwrap();
        response.status() == StatusCode::OK
    }
}

/// Imports `data` into an environment with `token` (a user's, or the master token for the
/// organization's own); returns the authentication's id.
async fn import(api: &Api, token: &str, (service, environment): (&str, &str), data: Value, scopes: &[&str]) -> String {
    let data = api
        .ok(
            token,
            "mutation($svc: String!, $e: String!, $d: Json!, $s: [String!]) { createUserAuthentication(input: {name: \"Acme\", serviceId: $svc, serviceEnvironmentId: $e, data: $d, scopes: $s}) { authenticationId } }",
            json!({"svc": service, "e": environment, "d": data, "s": scopes}),
        )
        .await;
    data["createUserAuthentication"]["authenticationId"].as_str().unwrap().to_owned()
}

fn outbound() -> Outbound {
    Outbound::new(AddressPolicy::AllowPrivate)
}

/// Tokens for `alice` from the provider's authorization code flow with PKCE, as the
/// token answer's fields.
async fn provider_tokens(provider: &Provider) -> Value {
    let client = OAuthClient {
        client_id: CLIENT_ID.into(),
        client_secret: Some(CLIENT_SECRET.to_owned().into()),
        authorize_url: Some(format!("{}/auth", provider.issuer)),
        token_url: format!("{}/token", provider.issuer),
    };
    let scopes: Vec<String> = SCOPES.iter().map(|scope| (*scope).to_owned()).collect();
    let start = oauth::authorization_url(&client, REDIRECT, &scopes, "state-of-the-test").unwrap();
    let back = sign_in(&browser(), start.url, REDIRECT, true).await;
    let code = back.query_pairs().find(|(key, _)| key == "code").expect("a code").1.into_owned();
    let tokens = oauth::exchange_code(&outbound(), &client, REDIRECT, &code, &start.pkce_verifier).await.unwrap();
    json!({
        "access_token": tokens.access_token.expose_secret(),
        "refresh_token": tokens.refresh_token.expect("a refresh token").expose_secret(),
        "token_type": tokens.token_type,
        "expires_in": tokens.expires_in,
    })
}

/// An in-process server with the refresh settings given (`None` leaves the default), and
/// full reads on.
async fn server(settings: &[(&str, &str)]) -> TestServer {
    let settings: HashMap<String, String> =
        settings.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
    let server = TestServer::start_on(Storage::new().await, |raw| {
        let get = |key: &str| settings.get(key).cloned();
        raw.refresh_interval = get("interval");
        raw.refresh_backoff = get("backoff");
    })
    .await;
    server.enable_full_reads(&server.master).await;
    server
}

async fn row(db: &DatabaseConnection, id: &str) -> entity::authentication::Model {
    entity::authentication::Entity::find_by_id(uuid::Uuid::parse_str(id).unwrap()).one(db).await.unwrap().unwrap()
}

/// The row once a refresh newer than `before` is stored, waiting up to `limit`. The
/// provider counts a grant before latchkey stores its answer, so a test that saw the
/// grant waits for the row.
async fn stored_after(
    db: &DatabaseConnection,
    before: &entity::authentication::Model,
    limit: Duration,
) -> entity::authentication::Model {
    let started = Instant::now();
    loop {
        let now = row(db, &before.id.to_string()).await;
        if now.credentials_version != before.credentials_version {
            return now;
        }
        assert!(started.elapsed() < limit, "a refresh stored within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many times `action` was audited for the authentication `id`: each refresh, refusal
/// and expiry notice is audited in the transaction that sends its webhook.
async fn audited(db: &DatabaseConnection, action: &str, id: &str) -> u64 {
    entity::audit_event::Entity::find()
        .filter(entity::audit_event::Column::Action.eq(action))
        .filter(entity::audit_event::Column::TargetId.eq(uuid::Uuid::parse_str(id).unwrap()))
        .count(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_full_read_refreshes_a_token_due_for_it_and_keeps_what_the_provider_does_not_resend() {
    let test = "a_full_read_refreshes_a_token_due_for_it_and_keeps_what_the_provider_does_not_resend";
    let server = server(&[("interval", "0")]).await;
    let Some(s) = Scene::new(test, server.api(), &server.master, 4, "oauth2").await else { return };
    let id = s.connect().await;

    let first = s.full(&id).await;
    assert_eq!(first["status"], "ACTIVE");
    assert!(first["expiresAt"].is_string(), "the expiry from expires_in: {first}");
    assert_eq!(s.refreshes().await, 0, "not due yet: nothing refreshed");

    // Due half-way through the token's 4 s life.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = s.full(&id).await;
    let (before, after) = (&first["credentials"], &second["credentials"]);
    assert_eq!(s.refreshes().await, 1);
    assert_ne!(after["access_token"], before["access_token"]);
    assert_ne!(after["refresh_token"], before["refresh_token"], "the rotated refresh token is kept");
    assert_eq!(after["team"], "t-1", "what the answer does not restate stays");
    assert!(after.get("expires_in").is_none() && after["expires_at"].is_string(), "{after}");
    assert_eq!(second["status"], "ACTIVE");
    assert!(second["expiresAt"].as_str() > first["expiresAt"].as_str(), "{first} then {second}");
    assert!(s.works(&after["access_token"]).await);

    let third = s.full(&id).await;
    assert_eq!(third["credentials"]["access_token"], after["access_token"], "fresh: no second refresh");
    assert_eq!(s.refreshes().await, 1);
    let metadata = s.metadata(&id).await;
    assert_eq!(metadata["status"], "ACTIVE");
    assert_eq!(metadata["expiresAt"], second["expiresAt"]);
    assert!(!metadata.to_string().contains(after["access_token"].as_str().unwrap()), "no secret in metadata");
    assert!(!captured_logs().contains(after["refresh_token"].as_str().unwrap()), "no token in the logs");
}

/// Security bar 36: a refresh happens once per expiry. Without the claim, each of these
/// reads would refresh, and the rotated refresh tokens would undo each other.
#[tokio::test]
async fn concurrent_reads_of_a_due_token_refresh_it_once_and_share_the_result() {
    let test = "concurrent_reads_of_a_due_token_refresh_it_once_and_share_the_result";
    let server = server(&[("interval", "0")]).await;
    let Some(s) = Scene::new(test, server.api(), &server.master, 4, "oauth2").await else { return };
    let id = s.connect().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let mut tokens = HashSet::new();
    for (status, body) in s.at_once(Method::GET, &format!("/authentications/{id}/full"), 20).await {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "ACTIVE", "{body}");
        tokens.insert(body["credentials"]["access_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(s.refreshes().await, 1, "one refresh for one expiry");
    assert_eq!(tokens.len(), 1, "every read got the one fresh token: {tokens:?}");
    assert!(s.works(&json!(tokens.iter().next().unwrap())).await);
}

#[tokio::test]
async fn the_background_job_refreshes_tokens_nearing_expiry_without_any_read() {
    let test = "the_background_job_refreshes_tokens_nearing_expiry_without_any_read";
    let server = server(&[("interval", "1")]).await;
    let Some(s) = Scene::new(test, server.api(), &server.master, 6, "oauth2").await else { return };
    let id = s.connect().await;
    let imported = row(&server.db, &id).await;
    // Due 3 s after the import; the job looks every second.
    let refreshed = stored_after(&server.db, &imported, Duration::from_secs(30)).await;
    assert_eq!(s.refreshes().await, 1, "refreshed once, by the job");
    assert_eq!(refreshed.credentials_version, imported.credentials_version + 1);
    assert!(refreshed.expires_at > imported.expires_at);
    assert!(refreshed.refresh_lease_owner.is_none(), "the lease is released");
    let read = s.full(&id).await;
    assert_eq!(s.refreshes().await, 1, "the read found it fresh");
    assert!(s.works(&read["credentials"]["access_token"]).await);
}

#[tokio::test]
async fn a_provider_revocation_sets_refresh_failed_once_and_stops_every_attempt() {
    let test = "a_provider_revocation_sets_refresh_failed_once_and_stops_every_attempt";
    let server = server(&[("interval", "1"), ("backoff", "1")]).await;
    let Some(s) = Scene::new(test, server.api(), &server.master, 4, "oauth2").await else { return };
    let id = s.connect().await;
    let imported = s.full(&id).await;
    s.provider.revoke().await;

    let failed = s.await_status(&id, "REFRESH_FAILED", Duration::from_secs(10)).await;
    assert!(failed["expiresAt"].is_string());
    assert_eq!(audited(&server.db, "authentication.refresh_failed", &id).await, 1, "the partner is told once");
    assert_eq!(row(&server.db, &id).await.refresh_error.as_deref(), Some("invalid_grant"));

    // Neither the job nor reads ask the provider again.
    let asked = s.provider.token_requests().await;
    for _ in 0..3 {
        let read = s.full(&id).await;
        assert_eq!(read["status"], "REFRESH_FAILED");
        assert_eq!(read["credentials"], imported["credentials"], "the credential is left as it was");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(s.provider.token_requests().await, asked, "no attempt after the refusal");
    assert_eq!(audited(&server.db, "authentication.refresh_failed", &id).await, 1);

    // Reconnected: a replacement with new tokens makes it active and refreshed again.
    let tokens = provider_tokens(&s.provider).await;
    s.api
        .ok(
            &s.user_token,
            "mutation($id: ID!, $d: Json!) { updateUserAuthentication(input: {authenticationId: $id, name: \"Acme\", data: $d}) { authentication { status } } }",
            json!({"id": id, "d": tokens}),
        )
        .await;
    assert_eq!(s.metadata(&id).await["status"], "ACTIVE");
    let forced = s.force(&s.user_token, &id).await;
    assert_eq!(forced["outcome"], "REFRESHED", "{forced}");
}

#[tokio::test]
async fn an_outage_is_retried_with_backoff_and_the_credential_is_kept_until_the_provider_is_back() {
    let test = "an_outage_is_retried_with_backoff_and_the_credential_is_kept_until_the_provider_is_back";
    let server = server(&[("interval", "1"), ("backoff", "1")]).await;
    let Some(s) = Scene::new(test, server.api(), &server.master, 4, "oauth2").await else { return };
    let id = s.connect().await;
    let imported = s.full(&id).await;
    s.provider.outage(true).await;

    // Due at 2 s, expired at 4 s: retried meanwhile, never refused.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    let during = row(&server.db, &id).await;
    assert!(during.refresh_attempts >= 2, "retried: {} attempts", during.refresh_attempts);
    assert_eq!(during.refresh_error.as_deref(), Some("unavailable"));
    assert_eq!(during.status, "ACTIVE", "an outage is no refusal");
    let read = s.full(&id).await;
    assert_eq!(read["credentials"]["access_token"], imported["credentials"]["access_token"], "the credential is kept");
    assert_eq!(read["status"], "EXPIRED", "expired while it cannot be renewed");
    assert_eq!(s.refreshes().await, 0);
    assert_eq!(audited(&server.db, "authentication.refresh_failed", &id).await, 0);

    s.provider.outage(false).await;
    s.await_status(&id, "ACTIVE", Duration::from_secs(20)).await;
    assert_eq!(s.refreshes().await, 1, "one refresh once the provider answers");
    let after = row(&server.db, &id).await;
    assert_eq!((after.refresh_attempts, after.refresh_error), (0, None));
    let read = s.full(&id).await;
    assert!(s.works(&read["credentials"]["access_token"]).await);
}

#[tokio::test]
async fn client_credentials_tokens_are_minted_when_needed_and_kept_until_they_expire() {
    let test = "client_credentials_tokens_are_minted_when_needed_and_kept_until_they_expire";
    let server = server(&[("interval", "0")]).await;
    let Some(s) = Scene::new(test, server.api(), &server.master, 4, "oauth2client_credentials").await else {
        return;
    };
    let minted = || s.provider.grants("client_credentials");
    let id = s.import(json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}), &["contacts.read"]).await;
    assert_eq!(s.metadata(&id).await["expiresAt"], Value::Null, "no token yet");
    assert_eq!(minted().await, 0, "nothing minted before it is needed");

    let first = s.full(&id).await;
    assert_eq!(minted().await, 1);
    let credentials = &first["credentials"];
    assert_eq!((&credentials["client_id"], &credentials["client_secret"]), (&json!(CLIENT_ID), &json!(CLIENT_SECRET)));
    assert!(credentials["access_token"].is_string() && first["expiresAt"].is_string(), "{first}");
    assert_eq!(credentials["scope"], "contacts.read");
    let again = s.full(&id).await;
    assert_eq!(again["credentials"]["access_token"], credentials["access_token"], "kept while fresh");
    assert_eq!(minted().await, 1);

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let renewed = s.full(&id).await;
    assert_eq!(minted().await, 2);
    assert_ne!(renewed["credentials"]["access_token"], credentials["access_token"]);
    assert_eq!(renewed["status"], "ACTIVE");

    // A client the provider refuses is revoked, told once, and never asked again.
    let refused = s.import(json!({"client_id": CLIENT_ID, "client_secret": "not-the-secret"}), &[]).await;
    let read = s.full(&refused).await;
    assert_eq!(read["status"], "REVOKED", "{read}");
    let asked = s.provider.token_requests().await;
    assert_eq!(s.full(&refused).await["status"], "REVOKED");
    assert_eq!(s.provider.token_requests().await, asked);
    assert_eq!(audited(&server.db, "authentication.refresh_failed", &refused).await, 1);
}

#[tokio::test]
async fn a_forced_refresh_renews_at_once_for_the_owner_and_the_master_token_once_for_concurrent_calls() {
    let test = "a_forced_refresh_renews_at_once_for_the_owner_and_the_master_token_once_for_concurrent_calls";
    let server = server(&[("interval", "0")]).await;
    let Some(s) = Scene::new(test, server.api(), &server.master, 3600, "oauth2").await else { return };
    let id = s.connect().await;
    let before = s.metadata(&id).await;

    let by_owner = s.force(&s.user_token, &id).await;
    assert_eq!((&by_owner["outcome"], &by_owner["error"]), (&json!("REFRESHED"), &Value::Null));
    assert_eq!(by_owner["authentication"]["status"], "ACTIVE");
    assert!(by_owner["authentication"]["expiresAt"].as_str() >= before["expiresAt"].as_str());
    assert_eq!(s.refreshes().await, 1);
    assert_eq!(s.force(&s.master, &id).await["outcome"], "REFRESHED", "the master token may too");
    assert_eq!(s.refreshes().await, 2);
    let (status, body) =
        s.api.rest(Method::POST, &format!("/authentications/{id}/refresh"), Some(&s.user_token), None).await;
    assert_eq!((status, &body["outcome"], &body["status"]), (200, &json!("REFRESHED"), &json!("ACTIVE")), "{body}");
    assert!(body["expiresAt"].is_string() && body.get("credentials").is_none(), "{body}");
    assert_eq!(s.refreshes().await, 3);

    // Five at once, while the provider holds the one refresh they share: each reports it.
    // (A call that arrives after a refresh has finished asks for a new one, rightly.)
    s.provider.delay(Duration::from_secs(2)).await;
    for (status, body) in s.at_once(Method::POST, &format!("/authentications/{id}/refresh"), 5).await {
        assert_eq!((status, &body["outcome"]), (200, &json!("REFRESHED")), "{body}");
    }
    s.provider.delay(Duration::ZERO).await;
    assert_eq!(s.refreshes().await, 4, "one refresh for five concurrent calls");
    let read = s.full(&id).await;
    assert!(s.works(&read["credentials"]["access_token"]).await);

    // An authentication with nothing to refresh with is left alone.
    let plain = s.import(json!({"access_token": "at-imported"}), &[]).await;
    let forced = s.force(&s.user_token, &plain).await;
    assert_eq!(forced["outcome"], "NOT_REFRESHABLE", "{forced}");
    assert_eq!(s.provider.token_requests().await, 5);
}

/// The expiry a refresh cannot move is the one `authentication.expiring` warns of: the
/// webhook worker's scan (hourly on every replica; run here directly) reports it once.
#[tokio::test]
async fn a_hard_expiry_ahead_is_announced_once_per_expiry() {
    let server = server(&[("interval", "0")]).await;
    let api = server.api();
    let service = api.create_custom_service(&server.master, "acme-crm").await;
    // No provider is called: without a refresh token, the token's own expiry is hard.
    let environment =
        oauth_environment(&api, &server.master, &service, "oauth2", "http://127.0.0.1:9", CLIENT_ID, CLIENT_SECRET)
            .await;
    let token = |expires_in: u64| json!({"access_token": "at-1", "expires_in": expires_in});
    let soon = import(&api, &server.master, (&service, &environment), token(2 * 24 * 3600), &[]).await;
    let later = import(&api, &server.master, (&service, &environment), token(30 * 24 * 3600), &[]).await;
    let week = Duration::from_secs(7 * 24 * 3600);
    assert!(row(&server.db, &soon).await.hard_expires_at.is_some(), "the import sets the hard expiry");
    assert_eq!(expiry::scan(&server.db, chrono::Utc::now(), week).await.unwrap(), 1);
    assert_eq!(expiry::scan(&server.db, chrono::Utc::now(), week).await.unwrap(), 0, "announced once");
    assert_eq!(audited(&server.db, "authentication.expiring", &soon).await, 1, "within 7 days");
    assert_eq!(audited(&server.db, "authentication.expiring", &later).await, 0, "30 days ahead: not yet");

    // A new credential with a new hard expiry is announced again.
    let data = json!({"access_token": "at-2", "expires_in": 3 * 24 * 3600});
    api.ok(
        &server.master,
        "mutation($id: ID!, $d: Json!) { updateUserAuthentication(input: {authenticationId: $id, name: \"Acme\", data: $d}) { authentication { id } } }",
        json!({"id": soon, "d": data}),
    )
    .await;
    assert_eq!(expiry::scan(&server.db, chrono::Utc::now(), week).await.unwrap(), 1);
    assert_eq!(audited(&server.db, "authentication.expiring", &soon).await, 2);
}

/// What a partner hears of the keep-alive: a lazy refresh is `authentication.updated`
/// with `cause: "refreshed"`, and a grant the provider revoked is
/// `authentication.refresh_failed` with its error code, each delivered signed, in order.
#[tokio::test]
async fn a_refresh_and_a_revoked_grant_reach_the_partners_webhook_endpoint() {
    let test = "a_refresh_and_a_revoked_grant_reach_the_partners_webhook_endpoint";
    let server = server(&[("interval", "0")]).await;
    let Some(s) = Scene::new(test, server.api(), &server.master, 4, "oauth2").await else { return };
    let receiver = Receiver::start(Script::default()).await;
    let types = ["AUTHENTICATION_UPDATED", "AUTHENTICATION_REFRESH_FAILED"];
    let (_, secret) = create_endpoint(&server.base, &server.master, &receiver.url(), &types).await;
    receiver.trust(&secret);
    let id = s.connect().await;
    let first = s.full(&id).await;

    // Due half-way through the token's 4 s life: the read refreshes it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let refreshed = s.full(&id).await;
    assert_eq!(s.refreshes().await, 1);
    assert_ne!(refreshed["credentials"]["access_token"], first["credentials"]["access_token"]);
    let of_id = |receipts: &[Receipt]| -> Vec<Receipt> {
        receipts.iter().filter(|r| r.payload["data"]["authenticationId"] == id.as_str()).cloned().collect()
    };
    let updated = receiver.wait_for("authentication.updated", |receipts| !of_id(receipts).is_empty()).await;
    let updated = of_id(&updated);
    assert_eq!(updated[0].kind(), "authentication.updated");
    assert_eq!(updated[0].payload["data"]["cause"], "refreshed", "{}", updated[0].payload);
    assert_eq!(updated[0].verified, vec![true], "signed with the endpoint's secret");

    // The end user disconnects the app at the provider: the next refresh is refused.
    s.provider.revoke().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(s.full(&id).await["status"], "REFRESH_FAILED");
    let receipts = receiver
        .wait_for("authentication.refresh_failed", |receipts| {
            of_id(receipts).iter().any(|r| r.kind() == "authentication.refresh_failed")
        })
        .await;
    let receipts = of_id(&receipts);
    let kinds: Vec<&str> = receipts.iter().map(Receipt::kind).collect();
    assert_eq!(kinds, ["authentication.updated", "authentication.refresh_failed"], "one each, in order");
    let failed = &receipts[1];
    assert_eq!(failed.payload["data"]["reason"], "invalid_grant", "{}", failed.payload);
    assert_eq!(failed.verified, vec![true]);
    for receipt in &receipts {
        for secret in [&first["credentials"]["refresh_token"], &refreshed["credentials"]["access_token"]] {
            assert!(!receipt.body.contains(secret.as_str().unwrap()), "no credential in a payload");
        }
    }
}

// Two processes on one database (SQLite file by default, PostgreSQL with
// LATCHKEY_TEST_POSTGRES_URL).

async fn enable_full_reads(db: &DatabaseConnection) {
    entity::organization::Entity::update_many()
        .col_expr(entity::organization::Column::FullReadsEnabled, Expr::value(true))
        .filter(entity::organization::Column::Name.eq("default"))
        .exec(db)
        .await
        .unwrap();
}

#[tokio::test]
async fn two_processes_reading_the_same_expiring_tokens_under_load_refresh_each_expiry_once() {
    let test = "two_processes_reading_the_same_expiring_tokens_under_load_refresh_each_expiry_once";
    let cluster = Cluster::new().await;
    let settings = [("LATCHKEY_REFRESH_INTERVAL", "1")];
    let (a, b) = (cluster.start(&settings).await, cluster.start(&settings).await);
    let (mut a, mut b) = (a, b);
    let Some(s) = Scene::new(test, Api::at(&a.base), &cluster.master, 4, "oauth2").await else { return };
    enable_full_reads(&cluster.db().await).await;
    let ids = [s.connect().await, s.connect().await];

    // Readers on both processes, both tokens, for seven of the tokens' half-lives.
    let until = Instant::now() + Duration::from_secs(14);
    let mut readers = tokio::task::JoinSet::new();
    for reader in 0..6 {
        let api = Api::at(if reader % 2 == 0 { &a.base } else { &b.base });
        let (token, id) = (s.user_token.clone(), ids[(reader / 2) % 2].clone());
        readers.spawn(async move {
            let mut seen = Vec::new();
            while Instant::now() < until {
                let (status, body) =
                    api.rest(Method::GET, &format!("/authentications/{id}/full"), Some(&token), None).await;
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["status"], "ACTIVE", "never a failed refresh: {body}");
                seen.push((id.clone(), body["credentials"]["access_token"].as_str().unwrap().to_owned()));
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            seen
        });
    }
    let mut tokens: HashMap<String, HashSet<String>> = HashMap::new();
    while let Some(seen) = readers.join_next().await {
        for (id, token) in seen.unwrap() {
            tokens.entry(id).or_default().insert(token);
        }
    }
    a.crash();
    b.crash();
    let refreshes = s.refreshes().await;
    let used: u64 = tokens.values().map(|seen| seen.len() as u64 - 1).sum();
    // Every refresh gave a token the readers saw, but at most one per token right at the end.
    assert!(used <= refreshes && refreshes <= used + 2, "{refreshes} refreshes, {used} new tokens seen");
    assert!(used >= 8, "each token was refreshed several times: {used}");
    // Each refresh is recorded once, in the transaction that stored it (with its webhook).
    let db = cluster.db().await;
    let mut recorded = 0;
    for id in &ids {
        recorded += audited(&db, "authentication.refreshed", id).await;
    }
    // (A process crashed right after the provider answered leaves a refresh unrecorded.)
    assert!(used <= recorded && recorded <= refreshes, "{recorded} recorded, {refreshes} refreshes, {used} seen");
}

#[tokio::test]
async fn a_process_killed_mid_refresh_leaves_a_lease_that_lapses_and_the_next_claimant_refreshes() {
    let test = "a_process_killed_mid_refresh_leaves_a_lease_that_lapses_and_the_next_claimant_refreshes";
    let cluster = Cluster::new().await;
    let mut a = cluster.start(&[("LATCHKEY_REFRESH_INTERVAL", "0"), ("LATCHKEY_REFRESH_LEASE", "20")]).await;
    let Some(s) = Scene::new(test, Api::at(&a.base), &cluster.master, 20, "oauth2").await else { return };
    let db = cluster.db().await;
    enable_full_reads(&db).await;
    let id = s.connect().await;
    let imported = row(&db, &id).await;

    // A forced refresh on A reaches the provider, which holds it; A dies meanwhile.
    s.provider.delay(Duration::from_secs(10)).await;
    let forced = {
        let (api, token, path) = (s.api.clone(), s.user_token.clone(), format!("/authentications/{id}/refresh"));
        tokio::spawn(
            async move { api.client.post(format!("{}/core/v1{path}", api.base)).bearer_auth(token).send().await },
        )
    };
    let started = Instant::now();
    while s.provider.stats().await["held"] != 1 {
        assert!(started.elapsed() < Duration::from_secs(10), "the refresh reached the provider");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let claimed = row(&db, &id).await;
    assert!(claimed.refresh_lease_owner.is_some() && claimed.refresh_lease_until.is_some(), "A holds the lease");
    a.crash();
    assert!(forced.await.unwrap().is_err(), "A never answered");
    s.provider.delay(Duration::ZERO).await;

    // B finds the lease held, waits for it to lapse, then refreshes, once.
    let b = cluster.start(&[("LATCHKEY_REFRESH_INTERVAL", "1"), ("LATCHKEY_REFRESH_LEASE", "20")]).await;
    let api_b = Api::at(&b.base);
    let stored = stored_after(&db, &imported, Duration::from_secs(45)).await;
    assert!(stored.updated_at >= claimed.refresh_lease_until.unwrap(), "nobody refreshed while A's lease held");
    let read = s.full_at(&api_b, &id).await;
    assert_eq!(read["status"], "ACTIVE");
    assert_eq!(s.refreshes().await, 1, "exactly one refresh");
    let credentials = &read["credentials"];
    assert!(s.works(&credentials["access_token"]).await, "nothing lost: the new token works");
    assert_eq!(credentials["team"], "t-1");
    let after = row(&db, &id).await;
    assert_eq!(after.credentials_version, imported.credentials_version + 1);
    assert!(after.refresh_lease_owner.is_none());
    // The rotated refresh token is the live one: it refreshes again.
    let (status, body) =
        api_b.rest(Method::POST, &format!("/authentications/{id}/refresh"), Some(&s.user_token), None).await;
    assert_eq!((status, &body["outcome"]), (200, &json!("REFRESHED")), "{body}");
    assert_eq!(s.refreshes().await, 2);
}

//! OAuth 2.0 in the hosted pages, over HTTP against a real authorization server
//! (oidc-provider on loopback, `tests/oauth-server`): the authorization code flow with
//! PKCE and a session-bound `state`, the provider's refusals, the client-credentials
//! check, and the refresh the keep-alive builds on. A reqwest client with a cookie store
//! plays the browser, sign-in and consent included.

use std::{process::Stdio, time::Duration};

use reqwest::{StatusCode, Url, header, redirect};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

use crate::support::{Api, Storage, TestServer, captured_logs, repo_path, require_tool};

pub(crate) const CLIENT_ID: &str = "latchkey-test";
pub(crate) const CLIENT_SECRET: &str = "latchkey-test-secret-0123456789abcdef";
pub(crate) const CALLBACK_PATH: &str = "/external/auth/oauth/callback";

/// The authorization server of `tests/oauth-server`, stopped when dropped.
pub(crate) struct Provider {
    pub(crate) issuer: String,
    _child: Child,
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl Provider {
    /// Starts the server with `redirect_uri` as its test client's one redirect URI; `None`
    /// (the test is skipped, saying why) where Node or the npm packages are missing
    /// outside CI.
    pub(crate) async fn start(test: &str, redirect_uri: &str) -> Option<Self> {
        Self::start_with(test, redirect_uri, &[]).await
    }

    /// [`Provider::start`] with more of the server's settings (`ACCESS_TOKEN_TTL`, ...).
    pub(crate) async fn start_with(test: &str, redirect_uri: &str, env: &[(&str, &str)]) -> Option<Self> {
        let dir = repo_path("tests/oauth-server");
        let node = std::process::Command::new("node").arg("--version").output().is_ok_and(|out| out.status.success());
        require_tool(test, node, "Node.js (node) on PATH")?;
        let installed = dir.join("node_modules/oidc-provider").exists();
        require_tool(test, installed, "the OAuth test server's packages (`npm ci --prefix tests/oauth-server`)")?;
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(&dir)
            .env("PORT", "0")
            .env("REDIRECT_URIS", redirect_uri)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .expect("the OAuth server starts within 30 s")
            .unwrap()
            .expect("the OAuth server prints its address");
        let started: Value = serde_json::from_str(&line).unwrap();
        Some(Self { issuer: started["issuer"].as_str().unwrap().to_owned(), _child: child, _stdout: stdout })
    }

    pub(crate) async fn stats(&self) -> Value {
        reqwest::get(format!("{}/_test/stats", self.issuer)).await.unwrap().json().await.unwrap()
    }

    /// How many grants of `kind` the provider has made.
    pub(crate) async fn grants(&self, kind: &str) -> u64 {
        self.stats().await["grants"][kind].as_u64().unwrap()
    }

    /// Calls to the token endpoint, refused ones included.
    pub(crate) async fn token_requests(&self) -> u64 {
        self.stats().await["token_requests"].as_u64().unwrap()
    }

    /// The account the provider's userinfo endpoint gives for `access_token`, or `None`
    /// where it refuses the token: proof that a stored token is the provider's own.
    pub(crate) async fn account(&self, access_token: &str) -> Option<String> {
        let answer =
            reqwest::Client::new().get(format!("{}/me", self.issuer)).bearer_auth(access_token).send().await.unwrap();
        if answer.status() != StatusCode::OK {
            return None;
        }
        answer.json::<Value>().await.unwrap()["sub"].as_str().map(str::to_owned)
    }

    async fn hook(&self, path: &str, body: String) {
        let client = reqwest::Client::new();
        let response = client.post(format!("{}/_test/{path}", self.issuer)).body(body).send().await.unwrap();
        assert!(response.status().is_success());
    }

    pub(crate) async fn outage(&self, on: bool) {
        self.hook("outage", if on { "on" } else { "off" }.to_owned()).await;
    }

    /// Revokes every grant, as an end user disconnecting the app at the provider would.
    pub(crate) async fn revoke(&self) {
        self.hook("revoke", String::new()).await;
    }

    /// Holds every call to the token endpoint this long before handling it.
    pub(crate) async fn delay(&self, delay: Duration) {
        self.hook("delay", delay.as_millis().to_string()).await;
    }
}

/// The dialog's "Connect to …" link, as its `href` says (relative).
fn connect_link(page: &str) -> String {
    let at = page.find("_action=connect").unwrap_or_else(|| panic!("a connect link in {page}"));
    let start = page[..at].rfind("href=\"").unwrap() + "href=\"".len();
    page[start..start + page[start..].find('"').unwrap()].replace("&amp;", "&")
}

/// Follows `url` through latchkey's redirects (the code's redemption) to its page.
async fn show(browser: &reqwest::Client, url: Url) -> (Url, String) {
    let mut url = url;
    for _ in 0..3 {
        let response = browser.get(url.clone()).send().await.unwrap();
        if response.status().is_redirection() {
            url = location(&response);
            continue;
        }
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        return (url, response.text().await.unwrap());
    }
    panic!("too many redirects from {url}");
}

/// A browser: keeps cookies, follows no redirect on its own.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(redirect::Policy::none()).build().unwrap()
}

pub(crate) fn location(response: &reqwest::Response) -> Url {
    assert!(response.status().is_redirection(), "a redirect, not {}", response.status());
    let location = response.headers()[header::LOCATION].to_str().unwrap();
    response.url().join(location).unwrap()
}

/// The window message a page posts, and its value (`authId` or `error`).
fn popup(body: &str) -> (String, String) {
    let start = body.find("id=\"lk-popup\"").unwrap_or_else(|| panic!("no popup element in {body}"));
    let element = &body[start..start + body[start..].find('>').unwrap()];
    let attribute = |name: &str| {
        let at = element.find(&format!("{name}=\""))? + name.len() + 2;
        Some(element[at..at + element[at..].find('"')?].to_owned())
    };
    let message = attribute("data-message").unwrap_or_default();
    let value = attribute("data-value").unwrap_or_default();
    (message, value)
}

/// An organization with an OAuth app for a custom service, an end user, and a browser.
struct Connect {
    server: TestServer,
    provider: Provider,
    user_token: String,
    service: String,
    environment: String,
    browser: reqwest::Client,
    user: String,
}

impl Connect {
    async fn new(test: &str) -> Option<Self> {
        Self::on(test, TestServer::start_public(Storage::new().await, |_| {}).await).await
    }

    async fn on(test: &str, server: TestServer) -> Option<Self> {
        let provider = Provider::start(test, &format!("{}{CALLBACK_PATH}", server.base)).await?;
        let service = server.create_custom_service(&server.master, "acme-crm").await;
        let environment = oauth_environment(
            &server.api(),
            &server.master,
            &service,
            "oauth2",
            &provider.issuer,
            CLIENT_ID,
            CLIENT_SECRET,
        )
        .await;
        let user = server.create_user(&server.master, "oauth-user").await;
        let user_token = server.user_token(&server.master, &user).await;
        Some(Self { server, provider, user_token, service, environment, browser: browser(), user })
    }

    /// A client-credentials environment of the service: the end user brings the client,
    /// and the environment's app only names the provider's token URL.
    async fn client_credentials_environment(&self) -> String {
        let (api, master) = (self.server.api(), &self.server.master);
        let kind = "oauth2client_credentials";
        oauth_environment(&api, master, &self.service, kind, &self.provider.issuer, "unused", "unused").await
    }

    fn callback(&self) -> String {
        format!("{}{CALLBACK_PATH}", self.server.base)
    }

    /// Opens the auth dialog with a fresh code and returns its page.
    async fn open(&self, browser: &reqwest::Client, scopes: &[&str]) -> String {
        open_dialog(&self.server, browser, &self.user, (&self.service, &self.environment), scopes).await.1
    }

    /// Opens the page at `path` (a dialog's or the wizard's) with a fresh code: its URL
    /// without the code, and the page.
    async fn open_page(&self, path: &str) -> (Url, String) {
        let code = self.server.authorization_code(&self.server.master, &self.user).await;
        let mut url = Url::parse(&format!("{}{path}", self.server.base)).unwrap();
        url.query_pairs_mut().append_pair("code", &code);
        show(&self.browser, url).await
    }

    /// The whole flow from a page with a connect link, as an end user who allows access:
    /// latchkey's answer to the provider's return.
    async fn connect_from(&self, page: &str) -> reqwest::Response {
        let authorize = self.to_provider(&self.browser, page).await;
        let callback = self.sign_in(&self.browser, authorize, true).await;
        self.browser.get(callback).send().await.unwrap()
    }

    /// Follows the dialog's "Connect to …" link to the provider's authorization URL.
    async fn to_provider(&self, browser: &reqwest::Client, page: &str) -> Url {
        let started = browser.get(format!("{}{}", self.server.base, connect_link(page))).send().await.unwrap();
        assert_eq!(started.status(), StatusCode::SEE_OTHER);
        let authorize = location(&started);
        assert!(authorize.as_str().starts_with(&format!("{}/auth?", self.provider.issuer)), "{authorize}");
        authorize
    }

    /// Signs in at the provider and allows access (or declines); returns the URL the
    /// provider sends the browser back to.
    async fn sign_in(&self, browser: &reqwest::Client, authorize: Url, allow: bool) -> Url {
        sign_in(browser, authorize, &self.callback(), allow).await
    }

    /// Takes the provider's answer back to latchkey: the page's status and body.
    async fn back(&self, browser: &reqwest::Client, callback: &Url) -> (StatusCode, String) {
        let response = browser.get(callback.clone()).send().await.unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
    }

    /// The whole flow, as an end user who allows access.
    async fn connect(&self, scopes: &[&str]) -> (Url, StatusCode, String) {
        let page = self.open(&self.browser, scopes).await;
        let authorize = self.to_provider(&self.browser, &page).await;
        let callback = self.sign_in(&self.browser, authorize, true).await;
        let (status, body) = self.back(&self.browser, &callback).await;
        (callback, status, body)
    }

    async fn authentications(&self) -> Vec<Value> {
        let data = self
            .server
            .ok(&self.user_token, "{ viewer { authentications { edges { node { id name scopes } } } } }", json!({}))
            .await;
        data["viewer"]["authentications"]["edges"].as_array().unwrap().iter().map(|edge| edge["node"].clone()).collect()
    }

    /// The full read's credentials and user data.
    async fn full_read(&self, id: &str) -> (Value, Value) {
        self.server.enable_full_reads(&self.server.master).await;
        let data = self
            .server
            .ok(
                &self.user_token,
                "query($id: ID!) { authenticationCredentials(id: $id) { data formData } }",
                json!({"id": id}),
            )
            .await;
        let read = &data["authenticationCredentials"];
        (serde_json::from_str(read["data"].as_str().unwrap()).unwrap(), read["formData"].clone())
    }
}

/// Signs in at the provider as `alice` and allows access (or declines), following the
/// provider's pages until it sends the browser to `callback`; returns that URL.
pub(crate) async fn sign_in(browser: &reqwest::Client, authorize: Url, callback: &str, allow: bool) -> Url {
    let mut url = authorize;
    for _ in 0..12 {
        if url.as_str().starts_with(callback) {
            return url;
        }
        let response = browser.get(url.clone()).send().await.unwrap();
        if response.status().is_redirection() {
            url = location(&response);
            continue;
        }
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let page = response.text().await.unwrap();
        let next = if page.contains("name=\"prompt\" value=\"login\"") {
            browser.post(url.clone()).form(&[("prompt", "login"), ("login", "alice"), ("password", "pw")])
        } else if page.contains("name=\"prompt\" value=\"consent\"") && allow {
            browser.post(url.clone()).form(&[("prompt", "consent")])
        } else if page.contains("name=\"prompt\" value=\"consent\"") {
            browser.get(format!("{url}/abort"))
        } else {
            panic!("an unexpected page at the provider: {page}");
        };
        url = location(&next.send().await.unwrap());
    }
    panic!("the provider never sent the browser back");
}

/// Adds an environment of `kind` with an OAuth app at `issuer` to a service; returns its id.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn oauth_environment(
    api: &Api,
    master: &str,
    service: &str,
    kind: &str,
    issuer: &str,
    client_id: &str,
    client_secret: &str,
) -> String {
    let data = api
        .ok(
            master,
            &format!(
                "mutation($s: ID!, $app: OauthAppInput!) {{ createServiceEnvironment(input: {{serviceId: $s, title: \"Own app\", authenticationType: {kind}, \
                 scopes: [{{scope: \"openid\"}}, {{scope: \"offline_access\"}}, {{scope: \"contacts.read\", description: \"Read your contacts\"}}, {{scope: \"contacts.write\"}}], \
                 oauthApp: $app}}) {{ serviceEnvironment {{ id }} }} }}"
            ),
            json!({"s": service, "app": {
                "clientId": client_id, "clientSecret": client_secret,
                "authorizeUrl": format!("{issuer}/auth"), "tokenUrl": format!("{issuer}/token"),
            }}),
        )
        .await;
    data["createServiceEnvironment"]["serviceEnvironment"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn connecting_an_oauth_service_stores_the_providers_tokens_sealed() {
    let Some(c) = Connect::new("connecting_an_oauth_service_stores_the_providers_tokens_sealed").await else { return };
    let page = c.open(&c.browser, &["openid", "offline_access", "contacts.read"]).await;
    assert!(page.contains("Connect to Acme CRM") && page.contains("Read your contacts"), "{page}");

    // PKCE (S256), a state and the exact redirect URI go to the provider; no secret does.
    let authorize = c.to_provider(&c.browser, &page).await;
    let query: std::collections::HashMap<String, String> = authorize.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert_eq!(query["redirect_uri"], c.callback());
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["scope"], "contacts.read offline_access openid");
    assert!(query["state"].len() >= 43);
    assert!(!authorize.as_str().contains(CLIENT_SECRET));

    let callback = c.sign_in(&c.browser, authorize, true).await;
    let (status, body) = c.back(&c.browser, &callback).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (message, id) = popup(&body);
    assert_eq!(message, "tray.authpopup.finish");
    assert!(body.contains("Acme CRM is connected"), "{body}");
    assert_eq!(c.provider.grants("authorization_code").await, 1, "one code exchanged, with its PKCE verifier");

    // Metadata: the authentication, its granted scopes, and no secret.
    let listed = c.authentications().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["name"], "Acme CRM");
    let metadata = c
        .server
        .ok(
            &c.user_token,
            "query($id: ID!) { authentication(id: $id) { id name scopes customFields } }",
            json!({"id": id}),
        )
        .await;

    // The full read: the provider's tokens, mapped.
    let (credentials, _) = c.full_read(&id).await;
    let access_token = credentials["access_token"].as_str().unwrap().to_owned();
    let refresh_token = credentials["refresh_token"].as_str().unwrap().to_owned();
    assert!(credentials["token_type"].as_str().unwrap().eq_ignore_ascii_case("bearer"));
    assert!(credentials["scope"].as_str().unwrap().contains("openid"), "{}", credentials["scope"]);
    assert!(credentials["id_token"].as_str().is_some_and(|token| token.split('.').count() == 3), "extras are kept");
    let expires_at = chrono::DateTime::parse_from_rfc3339(credentials["expires_at"].as_str().unwrap()).unwrap();
    let lifetime = expires_at.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!((3500..=3600).contains(&lifetime), "expires_at from expires_in (3600 s): {lifetime}");
    assert!(credentials.get("expires_in").is_none());
    // The access token is the provider's own: its userinfo endpoint takes it.
    assert_eq!(c.provider.account(&access_token).await.as_deref(), Some("alice"));

    for secret in [&access_token, &refresh_token] {
        assert!(!metadata.to_string().contains(secret.as_str()), "metadata holds no token");
        assert!(!body.contains(secret.as_str()), "the finished page holds no token");
        assert!(!captured_logs().contains(secret.as_str()), "no token in the logs");
    }
    let code = callback.query_pairs().find(|(key, _)| key == "code").unwrap().1.into_owned();
    assert!(!captured_logs().contains(&code), "no code in the logs");

    // Sealed at rest: the row holds neither token in the clear.
    use sea_orm::EntityTrait;
    let row = entity::authentication::Entity::find_by_id(uuid::Uuid::parse_str(&id).unwrap())
        .one(&c.server.db)
        .await
        .unwrap()
        .unwrap();
    for column in [&row.credentials, &row.user_data] {
        let text = String::from_utf8_lossy(column);
        assert!(!text.contains(&access_token) && !text.contains(&refresh_token));
    }
}

#[tokio::test]
async fn a_state_is_used_once_and_only_by_the_session_that_started_it() {
    let Some(c) = Connect::new("a_state_is_used_once_and_only_by_the_session_that_started_it").await else { return };

    // Another browser, with a live session of its own, brings back this browser's answer.
    let page = c.open(&c.browser, &["contacts.read"]).await;
    let authorize = c.to_provider(&c.browser, &page).await;
    let callback = c.sign_in(&c.browser, authorize, true).await;
    let other = browser();
    c.open(&other, &["contacts.read"]).await;
    let (status, body) = c.back(&other, &callback).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("This sign-in belongs to another window"), "{body}");
    assert_eq!(popup(&body).0, "tray.authPopup.error");
    assert_eq!(c.provider.grants("authorization_code").await, 0, "no code exchanged");
    assert!(c.authentications().await.is_empty());

    // The browser that started it still can, once.
    let (status, body) = c.back(&c.browser, &callback).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = c.back(&c.browser, &callback).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("This sign-in was already used"), "{body}");
    assert_eq!(popup(&body).0, "tray.authPopup.error");
    assert_eq!(c.provider.grants("authorization_code").await, 1);
    assert_eq!(c.authentications().await.len(), 1, "a replayed answer stores nothing more");

    // A state latchkey never issued: the page speaks for the session the browser holds.
    let mut forged = callback.clone();
    forged.set_query(Some("code=made-up&state=made-up"));
    let (status, body) = c.back(&c.browser, &forged).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("This sign-in cannot be completed"), "{body}");
    assert_eq!(popup(&body).0, "tray.authPopup.error");
    assert_eq!(c.authentications().await.len(), 1);
}

#[tokio::test]
async fn a_user_who_declines_at_the_provider_gets_a_readable_page_and_nothing_is_stored() {
    let Some(c) = Connect::new("a_user_who_declines_at_the_provider_gets_a_readable_page_and_nothing_is_stored").await
    else {
        return;
    };
    let page = c.open(&c.browser, &["contacts.read"]).await;
    let authorize = c.to_provider(&c.browser, &page).await;
    let callback = c.sign_in(&c.browser, authorize, false).await;
    assert!(callback.query_pairs().any(|(key, value)| key == "error" && value == "access_denied"), "{callback}");
    let (status, body) = c.back(&c.browser, &callback).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("Access was not allowed"), "{body}");
    let (message, error) = popup(&body);
    assert_eq!(message, "tray.authPopup.error");
    assert!(error.contains("access was not allowed"), "{error}");
    assert!(c.authentications().await.is_empty());
    assert_eq!(c.provider.grants("authorization_code").await, 0);
}

#[tokio::test]
async fn a_token_url_on_a_refused_address_is_not_called() {
    let test = "a_token_url_on_a_refused_address_is_not_called";
    let server =
        TestServer::start_public(Storage::new().await, |raw| raw.outbound_allow_private = Some("false".into())).await;
    let Some(c) = Connect::on(test, server).await else { return };
    let (_, status, body) = c.connect(&["contacts.read"]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("The connection could not be completed"), "{body}");
    assert_eq!(popup(&body).0, "tray.authPopup.error");
    assert_eq!(c.provider.grants("authorization_code").await, 0, "the token URL was never called");
    assert!(c.authentications().await.is_empty());
}

#[tokio::test]
async fn client_credentials_are_checked_with_the_provider_before_they_are_saved() {
    let test = "client_credentials_are_checked_with_the_provider_before_they_are_saved";
    let Some(c) = Connect::new(test).await else { return };
    // The end user brings the client; the environment's app only names the token URL.
    let environment = c.client_credentials_environment().await;
    let c = Connect { environment, ..c };
    let (url, page) =
        open_dialog(&c.server, &c.browser, &c.user, (&c.service, &c.environment), &["contacts.read"]).await;
    assert!(page.contains("name=\"credentials.client_id\"") && page.contains("name=\"credentials.client_secret\""));
    let post = client_credentials_post(&c.browser, &url, &page);

    let refused = post("wrong-secret").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = refused.text().await.unwrap();
    assert!(body.contains("refused this client ID and secret (invalid_client)"), "{body}");
    assert!(!body.contains("wrong-secret"), "a secret never goes back into the page");
    assert!(c.authentications().await.is_empty(), "nothing saved");
    assert_eq!(c.provider.grants("client_credentials").await, 0);

    let saved = post(CLIENT_SECRET).send().await.unwrap();
    assert_eq!(saved.status(), StatusCode::OK);
    let body = saved.text().await.unwrap();
    let (message, id) = popup(&body);
    assert_eq!(message, "tray.authpopup.finish", "{body}");
    assert_eq!(c.provider.grants("client_credentials").await, 1);
    let (credentials, _) = c.full_read(&id).await;
    assert_eq!(credentials["client_id"], CLIENT_ID);
    assert_eq!(credentials["client_secret"], CLIENT_SECRET);
    assert!(credentials["access_token"].as_str().is_some_and(|token| !token.is_empty()));
    assert!(chrono::DateTime::parse_from_rfc3339(credentials["expires_at"].as_str().unwrap()).is_ok());
    assert!(!body.contains(credentials["access_token"].as_str().unwrap()));
}

/// A post of the client-credentials form of `page` at `url`, with the test client's id and
/// `secret`.
fn client_credentials_post<'a>(
    browser: &'a reqwest::Client,
    url: &'a Url,
    page: &str,
) -> impl Fn(&str) -> reqwest::RequestBuilder + 'a {
    let csrf = {
        let start = page.find("name=\"_csrf\" value=\"").unwrap() + "name=\"_csrf\" value=\"".len();
        page[start..start + page[start..].find('"').unwrap()].to_owned()
    };
    move |secret: &str| {
        browser.post(url.clone()).form(&[
            ("_csrf", csrf.as_str()),
            ("name", "Acme CRM"),
            ("scopes", "contacts.read"),
            ("credentials.client_id", CLIENT_ID),
            ("credentials.client_secret", secret),
        ])
    }
}

#[tokio::test]
async fn a_refresh_at_the_provider_rotates_the_refresh_token_and_tells_refusals_from_outages() {
    use latchkey::oauth::{self, OAuthClient, Previous};
    let test = "a_refresh_at_the_provider_rotates_the_refresh_token_and_tells_refusals_from_outages";
    let Some(c) = Connect::new(test).await else { return };
    let (_, status, body) = c.connect(&["openid", "offline_access", "contacts.read"]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = popup(&body).1;
    let (credentials, user_data) = c.full_read(&id).await;
    let first: secrecy::SecretString = credentials["refresh_token"].as_str().unwrap().to_owned().into();

    let outbound = latchkey::outbound::Outbound::new(latchkey::outbound::AddressPolicy::AllowPrivate);
    let client = OAuthClient {
        client_id: CLIENT_ID.into(),
        client_secret: Some(CLIENT_SECRET.to_owned().into()),
        authorize_url: None,
        token_url: format!("{}/token", c.provider.issuer),
    };
    let refreshed = oauth::refresh(&outbound, &client, &first, &[]).await.expect("a refresh");
    assert_eq!(c.provider.grants("refresh_token").await, 1);
    let environment = {
        use latchkey::domain::catalog::{AuthenticationType, Environment};
        Environment {
            id: latchkey::ids::EnvironmentId::parse(&c.environment).unwrap(),
            service_id: latchkey::ids::ServiceId::parse(&c.service).unwrap(),
            title: "Own app".into(),
            authentication_type: AuthenticationType::Oauth2,
            credentials_schema: json!({}),
            user_data_schema: json!({}),
            scopes: Vec::new(),
            oauth_app: None,
            builtin: false,
        }
    };
    // A field of the first answer's that the refresh answer does not send again.
    let mut before = credentials.clone();
    before["team"] = json!("t-1");
    let mapped =
        oauth::map(&refreshed, &environment, &[], Some(Previous { credentials: &before, user_data: &user_data }));
    let kept = mapped.credentials.expose();
    use secrecy::ExposeSecret;
    assert_ne!(kept["refresh_token"], first.expose_secret(), "the rotated refresh token is kept");
    assert_ne!(kept["access_token"], credentials["access_token"]);
    assert_eq!(kept["team"], "t-1", "what the refresh does not restate stays");
    assert!(kept["id_token"].as_str().is_some_and(|token| token.split('.').count() == 3));

    // An outage is transient, and says so; the refresh token in hand stays good.
    c.provider.outage(true).await;
    let second: secrecy::SecretString = kept["refresh_token"].as_str().unwrap().to_owned().into();
    let down = oauth::refresh(&outbound, &client, &second, &[]).await.expect_err("the provider is down");
    assert!(down.is_transient() && down.refusal().is_none(), "{down}");
    c.provider.outage(false).await;
    oauth::refresh(&outbound, &client, &second, &[]).await.expect("the current refresh token survived the outage");
    assert_eq!(c.provider.grants("refresh_token").await, 2);

    // The first refresh token was retired by the rotation: a definitive refusal.
    let refused = oauth::refresh(&outbound, &client, &first, &[]).await.expect_err("a retired refresh token");
    assert_eq!(refused.refusal(), Some("invalid_grant"), "{refused}");
    assert!(!refused.is_transient());
}

// Without the authorization server: what the dialog does before any call to it.

/// A server with an OAuth environment whose app points at an address nothing listens on.
async fn offline() -> (TestServer, String, String, String) {
    let server = TestServer::start_public(Storage::new().await, |_| {}).await;
    let service = server.create_custom_service(&server.master, "acme-crm").await;
    let environment = oauth_environment(
        &server.api(),
        &server.master,
        &service,
        "oauth2",
        "http://127.0.0.1:9",
        CLIENT_ID,
        CLIENT_SECRET,
    )
    .await;
    let user = server.create_user(&server.master, "oauth-user").await;
    (server, service, environment, user)
}

/// Opens the auth dialog of a (service, environment) for an end user with a fresh code, in
/// `browser`, and returns its page.
async fn open_dialog(
    server: &TestServer,
    browser: &reqwest::Client,
    user: &str,
    (service, environment): (&str, &str),
    scopes: &[&str],
) -> (Url, String) {
    let code = server.authorization_code(&server.master, user).await;
    let mut url = Url::parse(&format!("{}/external/auth/create/default", server.base)).unwrap();
    url.query_pairs_mut().append_pair("serviceId", service).append_pair("serviceEnvironmentId", environment);
    for scope in scopes {
        url.query_pairs_mut().append_pair("scopes[]", scope);
    }
    url.query_pairs_mut().append_pair("code", &code);
    show(browser, url).await
}

#[tokio::test]
async fn the_connect_link_needs_the_sessions_csrf_token() {
    let (server, service, environment, user) = offline().await;
    let browser = browser();
    let (_, page) = open_dialog(&server, &browser, &user, (&service, &environment), &["contacts.read", "admin"]).await;
    let link = connect_link(&page);
    assert!(link.starts_with("/external/auth/create/default?"), "the dialog's own URL: {link}");
    assert!(link.contains("_csrf=") && !link.contains("lk_page_"), "{link}");

    let forged = link.replace("&_csrf=", "&_csrf=forged");
    let refused = browser.get(format!("{}{forged}", server.base)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(popup(&refused.text().await.unwrap()).0, "tray.authPopup.error");
    // Without the session's cookie, the link is worth nothing either.
    let cookieless = reqwest::Client::builder().redirect(redirect::Policy::none()).build().unwrap();
    assert_eq!(cookieless.get(format!("{}{link}", server.base)).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    use sea_orm::{EntityTrait, PaginatorTrait};
    assert_eq!(entity::oauth_flow::Entity::find().count(&server.db).await.unwrap(), 0, "no flow started");

    // Scopes the environment does not declare are not asked for, from the page's URL or
    // added to the link.
    let link = format!("{link}&scopes[]=contacts.write.all");
    let started = browser.get(format!("{}{link}", server.base)).send().await.unwrap();
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let authorize = location(&started);
    assert!(authorize.as_str().starts_with("http://127.0.0.1:9/auth?"), "{authorize}");
    let scope = authorize.query_pairs().find(|(key, _)| key == "scope").unwrap().1.into_owned();
    assert_eq!(scope, "contacts.read");
    let row = entity::oauth_flow::Entity::find().one(&server.db).await.unwrap().unwrap();
    let state = authorize.query_pairs().find(|(key, _)| key == "state").unwrap().1.into_owned();
    assert_eq!(row.state_hash, latchkey::crypto::sha256_hex(state.as_bytes()), "only the state's hash is stored");
    let verifier_in_clear = String::from_utf8_lossy(&row.pkce_verifier).into_owned();
    let challenge = authorize.query_pairs().find(|(key, _)| key == "code_challenge").unwrap().1.into_owned();
    assert!(!verifier_in_clear.contains(&challenge) && row.pkce_verifier.len() > 43, "the verifier is sealed");
}

#[tokio::test]
async fn an_oauth_environment_without_an_app_says_the_organization_must_set_one_up() {
    let server = TestServer::start().await;
    let (service, environment) = server.builtin_environment("slack").await;
    let user = server.create_user(&server.master, "oauth-user").await;
    let browser = browser();
    let (_, page) = open_dialog(&server, &browser, &user, (&service, &environment), &["contacts.read"]).await;
    assert!(page.contains("has not set up its OAuth app for Slack yet"), "{page}");
    assert!(!page.contains("_action=connect"), "no link to a flow that cannot work");
    assert_eq!(popup(&page).0, "tray.authPopup.error");
}

// Every auth dialog connects OAuth services, saving through the same once-per-session save
// as its form.

const CREATE_SOLUTION: &str = "mutation($in: CreateSolutionInput!) { createSolution(input: $in) { solution { id } } }";
const PUBLISH: &str = "mutation($id: ID!) { publishSolution(input: {solutionId: $id}) { solution { version } } }";
const AUTH_VALUES: &str = "query($c: SolutionInstanceSearchCriteria) { viewer { solutionInstances(criteria: $c) { edges { node { authValues { externalId authId } } } } } }";

impl Connect {
    /// An instance of a published solution with one required auth slot, `crm`, for the
    /// OAuth environment.
    async fn instance(&self) -> String {
        let input = json!({"in": {
            "title": "CRM sync",
            "authSlots": [{"externalId": "crm", "title": "CRM", "serviceId": self.service,
                "serviceEnvironmentId": self.environment, "scopes": ["openid", "offline_access", "contacts.read"],
                "required": true}],
            "workflows": [{"name": "Sync"}]}});
        let data = self.server.ok(&self.server.master, CREATE_SOLUTION, input).await;
        let solution = data["createSolution"]["solution"]["id"].as_str().unwrap().to_owned();
        self.server.ok(&self.server.master, PUBLISH, json!({"id": solution})).await;
        self.server.create_instance(&self.user_token, &solution, "Mine").await
    }

    /// The authentication in the instance's `crm` slot, if any.
    async fn slot_value(&self, instance: &str) -> Option<String> {
        let data = self.server.ok(&self.user_token, AUTH_VALUES, json!({"c": {"id": instance}})).await;
        let values = data["viewer"]["solutionInstances"]["edges"][0]["node"]["authValues"].as_array().unwrap().clone();
        values
            .iter()
            .find(|value| value["externalId"] == "crm")
            .map(|value| value["authId"].as_str().unwrap().to_owned())
    }

    async fn flows(&self) -> u64 {
        use sea_orm::{EntityTrait, PaginatorTrait};
        entity::oauth_flow::Entity::find().count(&self.server.db).await.unwrap()
    }
}

/// The value of the `name` attribute after `marker` in `page`.
fn attribute_after(page: &str, marker: &str, name: &str) -> String {
    let from = page.find(marker).unwrap_or_else(|| panic!("{marker} in {page}"));
    let at = from + page[from..].find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    page[at..at + page[at..].find('"').unwrap()].replace("&amp;", "&")
}

#[tokio::test]
async fn connecting_through_the_slot_dialog_sets_the_new_authentication_on_the_instance() {
    let test = "connecting_through_the_slot_dialog_sets_the_new_authentication_on_the_instance";
    let Some(c) = Connect::new(test).await else { return };
    let instance = c.instance().await;
    let (_, page) = c.open_page(&format!("/external/auth/create/default/{instance}/crm")).await;
    assert!(page.contains("Connect to Acme CRM") && page.contains("Read your contacts"), "{page}");

    let back = c.connect_from(&page).await;
    assert_eq!(back.status(), StatusCode::OK);
    let body = back.text().await.unwrap();
    let (message, id) = popup(&body);
    assert_eq!(message, "tray.authpopup.finish", "{body}");
    assert_eq!(c.slot_value(&instance).await.as_deref(), Some(id.as_str()), "the slot holds the new authentication");
    let listed = c.authentications().await;
    assert_eq!(listed.len(), 1);
    assert!(listed[0]["scopes"].as_array().unwrap().contains(&json!("contacts.read")), "the slot's scopes: {listed:?}");
    let (credentials, _) = c.full_read(&id).await;
    assert!(credentials["refresh_token"].as_str().is_some_and(|token| !token.is_empty()));

    // The dialog saved: its link, followed again, starts nothing and answers the same.
    let flows = c.flows().await;
    let again = c.browser.get(format!("{}{}", c.server.base, connect_link(&page))).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(popup(&again.text().await.unwrap()), ("tray.authpopup.finish".to_owned(), id));
    assert_eq!(c.flows().await, flows, "no flow started");
    assert_eq!(c.authentications().await.len(), 1);
    assert_eq!(c.provider.grants("authorization_code").await, 1);
}

#[tokio::test]
async fn connecting_in_the_wizard_comes_back_picked_and_finishing_sets_it_on_the_instance() {
    let test = "connecting_in_the_wizard_comes_back_picked_and_finishing_sets_it_on_the_instance";
    let Some(c) = Connect::new(test).await else { return };
    let instance = c.instance().await;
    let wizard = format!("/external/solutions/default/configure/{instance}");
    let (_, step) = c.open_page(&wizard).await;
    let create = format!("{wizard}/auth/crm");
    assert!(step.contains(&format!("href=\"{create}\"")), "a link to create a connection: {step}");

    let (_, page) = show(&c.browser, Url::parse(&format!("{}{create}", c.server.base)).unwrap()).await;
    assert!(connect_link(&page).starts_with(&format!("{create}?")), "{page}");
    assert!(page.contains(&format!("href=\"{wizard}?step=0\"")), "Back to the wizard: {page}");
    assert_eq!(popup(&page).0, "", "the wizard's forms tell the opener nothing");

    let back = c.connect_from(&page).await;
    assert_eq!(location(&back).path(), wizard, "back to the wizard");
    assert_eq!(location(&back).query(), Some("step=0"));
    let listed = c.authentications().await;
    assert_eq!(listed.len(), 1);
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(c.slot_value(&instance).await, None, "set when the wizard finishes");
    let (url, step) = show(&c.browser, location(&back)).await;
    assert!(step.contains(&format!("value=\"{id}\" checked")), "the new connection is picked: {step}");

    // Next, then Finish.
    let csrf = attribute_after(&step, "name=\"_csrf\"", "value");
    let next = c
        .browser
        .post(url)
        .form(&[("_csrf", csrf.as_str()), ("auth.crm", id.as_str()), ("_action", "next")])
        .send()
        .await
        .unwrap();
    let (url, settings) = show(&c.browser, location(&next)).await;
    let csrf = attribute_after(&settings, "name=\"_csrf\"", "value");
    let finished = c.browser.post(url).form(&[("_csrf", csrf.as_str()), ("_action", "finish")]).send().await.unwrap();
    assert_eq!(finished.status(), StatusCode::OK);
    let body = finished.text().await.unwrap();
    assert_eq!(popup(&body), ("tray.configPopup.finish".to_owned(), instance.clone()), "{body}");
    assert_eq!(c.slot_value(&instance).await, Some(id));
    assert_eq!(c.authentications().await.len(), 1);
}

#[tokio::test]
async fn reconnecting_in_the_edit_dialog_replaces_the_tokens_and_keeps_the_authentication() {
    let test = "reconnecting_in_the_edit_dialog_replaces_the_tokens_and_keeps_the_authentication";
    let Some(c) = Connect::new(test).await else { return };
    let (_, status, body) = c.connect(&["openid", "offline_access", "contacts.read"]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = popup(&body).1;
    let (before, user_data) = c.full_read(&id).await;
    let listed = c.authentications().await;

    let (_, page) = c.open_page(&format!("/external/auth/edit/default/{id}")).await;
    assert!(page.contains("Reconnect your Acme CRM connection"), "{page}");
    let back = c.connect_from(&page).await;
    assert_eq!(back.status(), StatusCode::OK);
    let body = back.text().await.unwrap();
    assert_eq!(popup(&body), ("tray.authpopup.finish".to_owned(), id.clone()), "the same authentication");
    assert_eq!(c.provider.grants("authorization_code").await, 2);

    let (after, user_data_after) = c.full_read(&id).await;
    for token in ["access_token", "refresh_token"] {
        assert!(after[token].as_str().is_some_and(|new| !new.is_empty() && before[token] != new), "a new {token}");
    }
    assert_eq!(user_data_after, user_data);
    // Its id, name and owner (the end user still lists it and reads it in full) stay.
    assert_eq!(c.authentications().await, listed);
    // The new access token is the provider's own.
    assert_eq!(c.provider.account(after["access_token"].as_str().unwrap()).await.as_deref(), Some("alice"));
}

#[tokio::test]
async fn client_credentials_sent_twice_save_one_authentication() {
    let test = "client_credentials_sent_twice_save_one_authentication";
    let Some(c) = Connect::new(test).await else { return };
    let environment = c.client_credentials_environment().await;
    let (url, page) = open_dialog(&c.server, &c.browser, &c.user, (&c.service, &environment), &[]).await;
    let post = client_credentials_post(&c.browser, &url, &page);

    let (first, second) = tokio::join!(post(CLIENT_SECRET).send(), post(CLIENT_SECRET).send());
    let mut ids = Vec::new();
    for answer in [first.unwrap(), second.unwrap()] {
        assert_eq!(answer.status(), StatusCode::OK);
        let (message, id) = popup(&answer.text().await.unwrap());
        assert_eq!(message, "tray.authpopup.finish");
        ids.push(id);
    }
    assert_eq!(ids[0], ids[1], "both answer the one authentication");
    assert_eq!(c.authentications().await.len(), 1);

    // Sent again later: the provider is not asked again, and nothing more is saved.
    let grants = c.provider.grants("client_credentials").await;
    let again = post(CLIENT_SECRET).send().await.unwrap();
    assert_eq!(popup(&again.text().await.unwrap()).1, ids[0]);
    assert_eq!(c.provider.grants("client_credentials").await, grants);
    assert_eq!(c.authentications().await.len(), 1);
}

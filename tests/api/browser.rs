//! The hosted pages end to end in a real browser: Debian's Chromium, driven by
//! playwright-core from `tests/browser/`. latchkey serves HTTPS; a partner page on another
//! site opens each page in a popup as the public API's sample apps do, and a scenario of
//! `tests/browser/scenarios.mjs` fills it in. The runner checks the window messages, the
//! Content-Security-Policy, accessibility (axe-core, WCAG A/AA) and the 500x700 fit; the
//! test then checks the outcome through the API.
//!
//! Without `/usr/bin/chromium` or `npm ci --prefix tests/browser`, a plain `cargo test`
//! skips these tests and says so; in CI they fail instead.

use std::{process::Command, time::Duration};

use reqwest::{StatusCode, redirect::Policy};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::{
    oauth::{CALLBACK_PATH, CLIENT_ID, CLIENT_SECRET, Provider, oauth_environment},
    support::{SelfSigned, TestServer, repo_path, require_tool},
};

const CHROMIUM: &str = "/usr/bin/chromium";

/// One browser at a time: the tests run in parallel, on few cores.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A scenario's whole run, browser start included; the runner bounds each step itself.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// What the end user types into the Zendesk dialog, by control name.
fn zendesk_values() -> Value {
    json!({
        "name": "Support desk",
        "credentials.email": "agent@acme.test",
        "credentials.api_token": "zd-browser-secret-0001",
        "userData.subdomain": "acme",
    })
}

/// Chromium, Node.js and the runner's npm packages, or a SKIPPED line (a failure in CI).
fn tools(test: &str) -> Option<()> {
    let chromium = std::path::Path::new(CHROMIUM).exists();
    require_tool(test, chromium, "Chromium at /usr/bin/chromium (Debian's `chromium` package)")?;
    let node = Command::new("node").arg("--version").output().is_ok_and(|out| out.status.success());
    require_tool(test, node, "Node.js (node) on PATH")?;
    let modules = repo_path("tests/browser/node_modules");
    let installed = modules.join("playwright-core").exists() && modules.join("axe-core").exists();
    require_tool(test, installed, "the browser runner's packages (`npm ci --prefix tests/browser`)")
}

/// The partner's front end: `tests/browser/partner.html` on its own port, reached by the
/// browser as `partner.test` (another site than latchkey's 127.0.0.1).
struct PartnerSite {
    url: String,
    origin: String,
    task: tokio::task::JoinHandle<()>,
}

impl PartnerSite {
    async fn start() -> Self {
        let page = std::fs::read_to_string(repo_path("tests/browser/partner.html")).unwrap();
        let router =
            axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(page) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://partner.test:{}", listener.local_addr().unwrap().port());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url: format!("{origin}/"), origin, task }
    }
}

impl Drop for PartnerSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// latchkey over HTTPS (its public URL the port it serves on, as the OAuth callback needs)
/// with a branded organization whose allowed origin is the partner site's, an end user,
/// and the partner site.
struct E2e {
    server: TestServer,
    certificate: SelfSigned,
    user: String,
    partner: PartnerSite,
}

impl E2e {
    /// `None` where the browser tools are missing (outside CI).
    async fn start(test: &str) -> Option<Self> {
        tools(test)?;
        let (server, certificate) = TestServer::start_https_public(|_| {}).await;
        let partner = PartnerSite::start().await;
        server
            .ok(
                &server.master,
                "mutation($o: [String!]) { updateOrganizationSettings(input: {displayName: \"Acme Support\", accentColor: \"#0b6e4f\", allowedOrigins: $o}) { clientMutationId } }",
                json!({"o": [partner.origin]}),
            )
            .await;
        let user = server.create_user(&server.master, "browser-user").await;
        Some(Self { server, certificate, user, partner })
    }

    /// The URL of the hosted page at `path` (with its query, if any) with a fresh code for
    /// the end user, as the partner's backend hands it to its front end.
    async fn page_url(&self, path: &str) -> String {
        let code = self.server.authorization_code(&self.server.master, &self.user).await;
        let separator = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{separator}code={code}", self.server.base)
    }

    /// The token-style auth dialog for Zendesk's production environment, with a fresh code.
    async fn zendesk_dialog(&self) -> String {
        let (service, environment) = self.server.builtin_environment("zendesk").await;
        self.page_url(&format!("/external/auth/create/default?serviceId={service}&serviceEnvironmentId={environment}"))
            .await
    }

    /// Runs `scenario` on the page at `popup_url` with `input` (`values`, `screenshot`…),
    /// and returns the messages the partner page received. Panics with the runner's
    /// report unless the scenario passed.
    async fn run(&self, scenario: &str, popup_url: &str, mut input: Value) -> Vec<Value> {
        input["scenario"] = json!(scenario);
        input["partnerUrl"] = json!(self.partner.url);
        input["popupUrl"] = json!(popup_url);
        let _one_browser = BROWSER.lock().await;
        let run = tokio::process::Command::new("node")
            .arg("run.mjs")
            .arg(input.to_string())
            .current_dir(repo_path("tests/browser"))
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(RUN_TIMEOUT, run)
            .await
            .unwrap_or_else(|_| panic!("{scenario} ran over {RUN_TIMEOUT:?}"))
            .expect("node runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let report: Value = stdout
            .lines()
            .last()
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or_else(|| panic!("{scenario}: no report from run.mjs\nstdout: {stdout}\nstderr: {stderr}"));
        let problems: Vec<&str> = report["problems"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(
            output.status.success() && report["ok"] == true,
            "{scenario} failed:\n- {}\nstderr: {stderr}",
            problems.join("\n- ")
        );
        report["messages"].as_array().unwrap().clone()
    }

    async fn user_token(&self) -> String {
        self.server.user_token(&self.server.master, &self.user).await
    }

    /// The end user's authentications, as `{id, name}`.
    async fn authentications(&self) -> Vec<Value> {
        let token = self.user_token().await;
        let data =
            self.server.ok(&token, "{ viewer { authentications { edges { node { id name } } } } }", json!({})).await;
        data["viewer"]["authentications"]["edges"].as_array().unwrap().iter().map(|edge| edge["node"].clone()).collect()
    }

    /// The authentication `id` holds what `values` says, read back through the API, and
    /// the database holds its secret sealed only.
    async fn assert_saved(&self, id: &str, values: &Value) {
        let saved = self.authentications().await;
        assert_eq!(saved.len(), 1, "{saved:?}");
        assert_eq!(saved[0]["id"], id);
        assert_eq!(saved[0]["name"], values["name"]);
        self.server.enable_full_reads(&self.server.master).await;
        let token = self.user_token().await;
        let read = self
            .server
            .ok(&token, "query($id: ID!) { authenticationCredentials(id: $id) { data formData } }", json!({"id": id}))
            .await;
        // The `Json` scalar arrives as JSON text.
        let document = |field: &str| -> Value {
            serde_json::from_str(read["authenticationCredentials"][field].as_str().unwrap()).unwrap()
        };
        assert_eq!(
            document("data"),
            json!({"email": values["credentials.email"], "api_token": values["credentials.api_token"]})
        );
        assert_eq!(document("formData"), json!({"subdomain": values["userData.subdomain"]}));
        let row = entity::authentication::Entity::find_by_id(uuid::Uuid::parse_str(id).unwrap())
            .one(&self.server.db)
            .await
            .unwrap()
            .unwrap();
        let secret = values["credentials.api_token"].as_str().unwrap().as_bytes();
        assert!(!row.credentials.windows(secret.len()).any(|w| w == secret), "the secret is stored in the clear");
    }
}

fn auth_id(messages: &[Value]) -> String {
    messages[0]["authId"].as_str().expect("a finish message with the authentication id").to_owned()
}

/// Goes through the Zendesk dialog by `scenario`, which ends connected, and checks what
/// was saved; `input` adds to the values typed. `None` when skipped.
async fn connects(test: &str, scenario: &str, mut input: Value) -> Option<()> {
    let e2e = E2e::start(test).await?;
    let values = zendesk_values();
    input["values"] = values.clone();
    let messages = e2e.run(scenario, &e2e.zendesk_dialog().await, input).await;
    e2e.assert_saved(&auth_id(&messages), &values).await;
    Some(())
}

#[tokio::test]
async fn an_end_user_connects_a_token_service_from_a_partner_page() {
    // The README's picture of the dialog, taken as the end user has filled it in.
    let screenshot = repo_path("docs/images/auth-dialog.png");
    let started = std::time::SystemTime::now();
    let test = "an_end_user_connects_a_token_service_from_a_partner_page";
    let input = json!({"screenshot": screenshot.display().to_string()});
    if connects(test, "auth-dialog/finish", input).await.is_some() {
        let taken = std::fs::metadata(&screenshot).and_then(|file| file.modified()).unwrap();
        assert!(taken >= started, "no new picture at {}", screenshot.display());
        assert!(std::fs::read(&screenshot).unwrap().starts_with(b"\x89PNG"));
    }
}

#[tokio::test]
async fn a_refused_value_is_shown_on_its_field_and_the_end_user_can_fix_it() {
    let test = "a_refused_value_is_shown_on_its_field_and_the_end_user_can_fix_it";
    connects(test, "auth-dialog/fix-an-error", json!({})).await;
}

#[tokio::test]
async fn the_dialog_can_be_completed_with_the_keyboard_alone() {
    connects("the_dialog_can_be_completed_with_the_keyboard_alone", "auth-dialog/keyboard-only", json!({})).await;
}

#[tokio::test]
async fn cancel_tells_the_opener_and_saves_nothing() {
    let Some(e2e) = E2e::start("cancel_tells_the_opener_and_saves_nothing").await else {
        return;
    };
    e2e.run("auth-dialog/cancel", &e2e.zendesk_dialog().await, json!({})).await;
    assert!(e2e.authentications().await.is_empty());
}

#[tokio::test]
async fn a_used_code_shows_an_error_page_and_tells_the_opener() {
    let Some(e2e) = E2e::start("a_used_code_shows_an_error_page_and_tells_the_opener").await else {
        return;
    };
    let url = e2e.zendesk_dialog().await;
    // Someone else opened the link first.
    let first = e2e.certificate.client(reqwest::Client::builder().redirect(Policy::none())).get(&url).send().await;
    assert_eq!(first.unwrap().status(), StatusCode::SEE_OTHER);
    e2e.run("auth-dialog/used-code", &url, json!({})).await;
    assert!(e2e.authentications().await.is_empty());
}

// ---------------------------------------------------------------------------------------
// The config wizard

const INSTANCE: &str = "query($c: SolutionInstanceSearchCriteria) { viewer { solutionInstances(criteria: $c) { edges { node { enabled authValues { externalId authId } configValues { externalId value } } } } } }";

/// What the end user types into the wizard's settings, by control name: one of each type.
fn settings() -> Value {
    json!({
        "config.batch_size": "75",
        "config.region": "us",
        "config.notify": true,
        "config.filters": "{\"status\": \"open\"}",
        "config.tags": "[\"vip\", \"billing\"]",
        "config.label": "Support",
    })
}

/// The settings as the opener and the API see them (the hidden slot keeps its default).
fn settings_saved() -> Value {
    json!({"batch_size": 75, "region": "us", "notify": true, "filters": {"status": "open"},
        "tags": ["vip", "billing"], "label": "Support"})
}

/// The whole browser set-up plus an OAuth provider, and a published solution that needs
/// two connections (`zendesk`, a token service; `crm`, an optional OAuth 2.0 service
/// whose OAuth app is the provider) and settings of every type, with an instance of it
/// for the end user.
struct Activation {
    e2e: E2e,
    provider: Provider,
    instance: String,
    /// The instance as created (its config values: the defaults).
    created: (bool, Value, Value),
}

impl Activation {
    async fn start(test: &str) -> Option<Self> {
        let e2e = E2e::start(test).await?;
        let server = &e2e.server;
        let provider = Provider::start(test, &format!("{}{CALLBACK_PATH}", server.base)).await?;
        let crm = server.create_custom_service(&server.master, "acme-crm").await;
        let crm_environment = oauth_environment(
            &server.api(),
            &server.master,
            &crm,
            "oauth2",
            &provider.issuer,
            CLIENT_ID,
            CLIENT_SECRET,
        )
        .await;
        let (zendesk, zendesk_environment) = server.builtin_environment("zendesk").await;
        let input = json!({"in": {
            "title": "Ticket sync",
            "authSlots": [
                {"externalId": "zendesk", "title": "Help desk", "serviceId": zendesk,
                    "serviceEnvironmentId": zendesk_environment, "required": true},
                {"externalId": "crm", "title": "CRM", "serviceId": crm, "serviceEnvironmentId": crm_environment,
                    "scopes": ["openid", "offline_access", "contacts.read"]},
            ],
            "configSlots": crate::wizard::config_slots(),
            "workflows": [{"name": "Sync"}]}});
        let create = "mutation($in: CreateSolutionInput!) { createSolution(input: $in) { solution { id } } }";
        let data = server.ok(&server.master, create, input).await;
        let solution = data["createSolution"]["solution"]["id"].as_str().unwrap().to_owned();
        let publish = "mutation($id: ID!) { publishSolution(input: {solutionId: $id}) { solution { version } } }";
        server.ok(&server.master, publish, json!({"id": solution})).await;
        let instance = server.create_instance(&e2e.user_token().await, &solution, "Tickets").await;
        let mut activation = Self { e2e, provider, instance, created: (false, json!({}), json!({})) };
        activation.created = activation.instance().await;
        assert!(!activation.created.0);
        Some(activation)
    }

    /// The wizard's URL with a fresh code, as the partner's backend hands it over.
    async fn wizard(&self) -> String {
        self.e2e.page_url(&format!("/external/solutions/default/configure/{}", self.instance)).await
    }

    /// A Zendesk connection the end user already has, named `name`.
    async fn existing(&self, name: &str) -> String {
        let server = &self.e2e.server;
        let (_, environment) = server.builtin_environment("zendesk").await;
        server.import_zendesk(&self.e2e.user_token().await, &environment, name).await
    }

    /// The instance as the API shows it: enabled, its auth values and its config values,
    /// by slot.
    async fn instance(&self) -> (bool, Value, Value) {
        let token = self.e2e.user_token().await;
        let data = self.e2e.server.ok(&token, INSTANCE, json!({"c": {"id": self.instance}})).await;
        let node = &data["viewer"]["solutionInstances"]["edges"][0]["node"];
        let by_slot = |list: &Value, value: &dyn Fn(&Value) -> Value| -> Value {
            let pairs =
                list.as_array().unwrap().iter().map(|v| (v["externalId"].as_str().unwrap().to_owned(), value(v)));
            Value::Object(pairs.collect())
        };
        let auth = by_slot(&node["authValues"], &|v| v["authId"].clone());
        let config = by_slot(&node["configValues"], &|v| serde_json::from_str(v["value"].as_str().unwrap()).unwrap());
        (node["enabled"].as_bool().unwrap(), auth, config)
    }

    /// The instance is as created, and the end user has only `connections`.
    async fn assert_untouched(&self, connections: usize) {
        assert_eq!(self.instance().await, self.created);
        assert_eq!(self.created.1, json!({}));
        assert_eq!(self.e2e.authentications().await.len(), connections);
    }

    /// The full read of an authentication: its credentials and user data.
    async fn full_read(&self, id: &str) -> (Value, Value) {
        self.e2e.server.enable_full_reads(&self.e2e.server.master).await;
        let token = self.e2e.user_token().await;
        let query = "query($id: ID!) { authenticationCredentials(id: $id) { data formData } }";
        let read = self.e2e.server.ok(&token, query, json!({"id": id})).await;
        let document = |field: &str| -> Value {
            serde_json::from_str(read["authenticationCredentials"][field].as_str().unwrap()).unwrap()
        };
        (document("data"), document("formData"))
    }
}

/// A picture for the README at `docs/images/{name}`, taken by the test that runs now.
fn assert_new_picture(path: &std::path::Path, started: std::time::SystemTime) {
    let taken = std::fs::metadata(path).and_then(|file| file.modified()).unwrap();
    assert!(taken >= started, "no new picture at {}", path.display());
    assert!(std::fs::read(path).unwrap().starts_with(b"\x89PNG"));
}

#[tokio::test]
async fn an_end_user_activates_a_solution_in_the_wizard_is_enabled_by_the_partner_and_later_edits_a_connection() {
    let test = "an_end_user_activates_a_solution_in_the_wizard_is_enabled_by_the_partner_and_later_edits_a_connection";
    let Some(a) = Activation::start(test).await else { return };
    let started = std::time::SystemTime::now();
    let (connect_picture, settings_picture) =
        (repo_path("docs/images/wizard-oauth-connect.png"), repo_path("docs/images/wizard-settings.png"));
    let token = zendesk_values();
    let input = json!({
        "instanceId": a.instance,
        "token": token,
        "settings": settings(),
        "screenshots": {"connect": connect_picture.display().to_string(), "settings": settings_picture.display().to_string()},
    });
    let messages = a.e2e.run("wizard/activate", &a.wizard().await, input).await;
    assert_new_picture(&connect_picture, started);
    assert_new_picture(&settings_picture, started);

    // The opener was asked to check the settings, as the API will read them.
    let asked = &messages[0]["data"];
    assert_eq!(asked["configValues"], settings_saved());
    assert_eq!(asked["slotValues"], settings_saved());
    let visible: Vec<&str> = asked["visibleValues"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(visible, ["batch_size", "region", "notify", "filters", "tags", "label"]);

    // Two new connections, one of each kind, both set on the instance with the settings.
    let saved = a.e2e.authentications().await;
    assert_eq!(saved.len(), 2, "{saved:?}");
    let id_of = |name: &str| saved.iter().find(|auth| auth["name"] == name).unwrap()["id"].as_str().unwrap().to_owned();
    let (desk, crm) = (id_of("Support desk"), id_of("Acme CRM"));
    let (enabled, auth, config) = a.instance().await;
    assert!(!enabled, "the wizard does not enable the instance");
    assert_eq!(auth, json!({"zendesk": desk, "crm": crm}));
    let mut expected = settings_saved();
    expected["internal"] = json!("kept");
    assert_eq!(config, expected);

    // The partner enables it.
    let enable = "mutation($id: ID!) { updateSolutionInstance(input: {solutionInstanceId: $id, enabled: true}) { solutionInstance { enabled } } }";
    let data = a.e2e.server.ok(&a.e2e.user_token().await, enable, json!({"id": a.instance})).await;
    assert_eq!(data["updateSolutionInstance"]["solutionInstance"]["enabled"], true);
    let (enabled, auth_after, config_after) = a.instance().await;
    assert!(enabled);
    assert_eq!(auth_after, auth);
    assert_eq!(config_after, config);

    // The token connection holds what was typed; the OAuth one the provider's own tokens.
    let (credentials, user_data) = a.full_read(&desk).await;
    assert_eq!(credentials, json!({"email": token["credentials.email"], "api_token": token["credentials.api_token"]}));
    assert_eq!(user_data, json!({"subdomain": token["userData.subdomain"]}));
    let (oauth, _) = a.full_read(&crm).await;
    assert_eq!(a.provider.grants("authorization_code").await, 1);
    assert!(oauth["refresh_token"].as_str().is_some_and(|token| !token.is_empty()), "{oauth}");
    let account = a.provider.account(oauth["access_token"].as_str().unwrap()).await;
    assert_eq!(account.as_deref(), Some("alice"), "the provider takes the stored access token");

    // Later, the end user renames the token connection; its secret, left blank, stays.
    let edit = a.e2e.page_url(&format!("/external/auth/edit/default/{desk}")).await;
    let input = json!({"authId": desk, "values": {"name": "Support desk (EU)"}});
    a.e2e.run("auth-dialog/edit", &edit, input).await;
    let names: Vec<Value> = a.e2e.authentications().await.iter().map(|auth| auth["name"].clone()).collect();
    assert!(names.contains(&json!("Support desk (EU)")) && names.len() == 2, "{names:?}");
    assert_eq!(a.full_read(&desk).await, (credentials, user_data), "the blank secret kept its value");
    assert_eq!(a.instance().await.1, auth, "the instance keeps its connections");
}

#[tokio::test]
async fn cancelling_the_wizard_tells_the_opener_and_changes_nothing() {
    let Some(a) = Activation::start("cancelling_the_wizard_tells_the_opener_and_changes_nothing").await else {
        return;
    };
    a.e2e.run("wizard/cancel", &a.wizard().await, json!({"instanceId": a.instance})).await;
    a.assert_untouched(0).await;
}

#[tokio::test]
async fn declining_at_the_provider_in_the_wizard_shows_why_tells_the_opener_and_stores_nothing() {
    let test = "declining_at_the_provider_in_the_wizard_shows_why_tells_the_opener_and_stores_nothing";
    let Some(a) = Activation::start(test).await else { return };
    a.existing("Desk").await;
    a.e2e.run("wizard/oauth-declined", &a.wizard().await, json!({"existing": "Desk"})).await;
    assert_eq!(a.provider.grants("authorization_code").await, 0);
    a.assert_untouched(1).await;
}

#[tokio::test]
async fn a_used_wizard_code_shows_an_error_page_and_tells_the_opener() {
    let Some(a) = Activation::start("a_used_wizard_code_shows_an_error_page_and_tells_the_opener").await else {
        return;
    };
    let url = a.wizard().await;
    let first = a.e2e.certificate.client(reqwest::Client::builder().redirect(Policy::none())).get(&url).send().await;
    assert_eq!(first.unwrap().status(), StatusCode::SEE_OTHER);
    a.e2e.run("wizard/used-code", &url, json!({})).await;
    a.assert_untouched(0).await;
}

#[tokio::test]
async fn an_error_from_the_opener_stops_the_finish_until_the_setting_is_changed() {
    let test = "an_error_from_the_opener_stops_the_finish_until_the_setting_is_changed";
    let Some(a) = Activation::start(test).await else { return };
    let desk = a.existing("Desk").await;
    let input = json!({
        "instanceId": a.instance,
        "existing": "Desk",
        "settings": settings(),
        "openerErrors": {"label": "Acme already has a sync labelled Support."},
        "fixed": {"config.label": "Support EU"},
    });
    let messages = a.e2e.run("wizard/opener-validation", &a.wizard().await, input).await;
    assert_eq!(messages[0]["data"]["configValues"]["label"], "Support");
    assert_eq!(messages[1]["data"]["configValues"]["label"], "Support EU");
    let (_, auth, config) = a.instance().await;
    assert_eq!(auth, json!({"zendesk": desk}));
    let mut expected = settings_saved();
    expected["label"] = json!("Support EU");
    expected["internal"] = json!("kept");
    assert_eq!(config, expected);
}

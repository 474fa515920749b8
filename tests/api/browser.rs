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

use crate::support::{SelfSigned, TestServer, repo_path, require_tool};

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

/// latchkey over HTTPS with a branded organization whose allowed origin is the partner
/// site's, an end user, and the partner site.
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
        let (server, certificate) = TestServer::start_https(|_| {}).await;
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

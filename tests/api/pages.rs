//! Hosted pages over HTTP, without a browser: every security rule of the pages checked
//! on the wire (sessions from authorization codes, cookies, headers, escaping).

use reqwest::{StatusCode, header};
use serde_json::json;

use crate::support::TestServer;

/// A page client: no redirects followed, no cookies kept, so each test sees both.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub(crate) struct Pages {
    pub(crate) server: TestServer,
    pub(crate) user: String,
    pub(crate) service: String,
    pub(crate) environment: String,
    pub(crate) browser: reqwest::Client,
}

impl Pages {
    pub(crate) async fn new() -> Self {
        Self::on(TestServer::start().await).await
    }

    async fn on(server: TestServer) -> Self {
        let user = server.create_user(&server.master, "page-user").await;
        let (service, environment) = server.builtin_environment("zendesk").await;
        Self { server, user, service, environment, browser: browser() }
    }

    pub(crate) async fn code(&self, master: &str, user: &str) -> String {
        self.server.authorization_code(master, user).await
    }

    fn create_path(&self, partner: &str, service: &str, environment: &str) -> String {
        format!(
            "/external/auth/create/{partner}?serviceId={service}&serviceEnvironmentId={environment}&scopes%5B%5D=read&scopes%5B%5D=write"
        )
    }

    pub(crate) async fn get(&self, path_and_query: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut request = self.browser.get(format!("{}{path_and_query}", self.server.base));
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        request.send().await.unwrap()
    }

    /// Opens the auth dialog with a fresh code and returns (the page's URL, the cookie).
    async fn open(&self) -> (String, String) {
        let code = self.code(&self.server.master, &self.user).await;
        let path = self.create_path("default", &self.service, &self.environment);
        let response = self.get(&format!("{path}&code={code}"), None).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let location = response.headers()[header::LOCATION].to_str().unwrap().to_owned();
        let cookie = set_cookie(&response).split(';').next().unwrap().to_owned();
        (location, cookie)
    }
}

pub(crate) fn set_cookie(response: &reqwest::Response) -> String {
    response.headers().get(header::SET_COOKIE).expect("a session cookie").to_str().unwrap().to_owned()
}

pub(crate) async fn html(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn a_fresh_code_opens_a_session_and_redirects_to_the_page_without_the_code() {
    let pages = Pages::new().await;
    let code = pages.code(&pages.server.master, &pages.user).await;
    let path = pages.create_path("default", &pages.service, &pages.environment);
    let response = pages.get(&format!("{path}&code={code}"), None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert!(!location.contains("code"), "{location}");
    assert!(location.contains(&pages.environment) && location.contains("scopes%5B%5D=write"), "{location}");
    let cookie = set_cookie(&response);
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/external", "Max-Age=1800"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "no Secure over plain http: {cookie}");

    let (status, body) = html(pages.get(&location, Some(cookie.split(';').next().unwrap())).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Connect Zendesk"), "{body}");
}

#[tokio::test]
async fn the_session_cookie_is_secure_under_an_https_public_url() {
    let storage = crate::support::Storage::new().await;
    let server = TestServer::start_on(storage, |raw| raw.public_url = Some("https://keys.example.com".into())).await;
    let pages = Pages::on(server).await;
    let code = pages.code(&pages.server.master, &pages.user).await;
    let path = pages.create_path("default", &pages.service, &pages.environment);
    let response = pages.get(&format!("{path}&code={code}"), None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(&response).contains("; Secure"), "{}", set_cookie(&response));
}

#[tokio::test]
async fn a_reused_code_gets_an_error_page_and_no_session() {
    let pages = Pages::new().await;
    let code = pages.code(&pages.server.master, &pages.user).await;
    let url = format!("{}&code={code}", pages.create_path("default", &pages.service, &pages.environment));
    assert_eq!(pages.get(&url, None).await.status(), StatusCode::SEE_OTHER);
    let again = pages.get(&url, None).await;
    assert!(again.headers().get(header::SET_COOKIE).is_none());
    let (status, body) = html(again).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("This link can no longer be used"), "{body}");
}

#[tokio::test]
async fn a_refused_page_tells_the_opener_at_the_organizations_allowed_origins_only() {
    let pages = Pages::new().await;
    pages
        .server
        .ok(
            &pages.server.master,
            "mutation { updateOrganizationSettings(input: {displayName: \"Acme\", allowedOrigins: [\"https://app.acme.example\"]}) { clientMutationId } }",
            json!({}),
        )
        .await;
    let path = pages.create_path("default", &pages.service, &pages.environment);
    let (status, body) = html(pages.get(&format!("{path}&code=lk_code_made-up"), None).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("Acme"), "the partner's brand: {body}");
    assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-message"), "tray.authPopup.error");
    assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-origins"), "[&quot;https://app.acme.example&quot;]");

    // No organization by that name: nobody to tell.
    let unknown = pages.create_path("nobody", &pages.service, &pages.environment);
    let (status, body) = html(pages.get(&format!("{unknown}&code=lk_code_made-up"), None).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body.contains("lk-popup"), "{body}");
}

#[tokio::test]
async fn an_expired_code_gets_an_error_page_and_no_session() {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
    let pages = Pages::new().await;
    let code = pages.code(&pages.server.master, &pages.user).await;
    let row = entity::authorization_code::Entity::find().one(&pages.server.db).await.unwrap().unwrap();
    let mut row: entity::authorization_code::ActiveModel = row.into();
    row.expires_at = Set(chrono::Utc::now() - chrono::Duration::seconds(1));
    row.update(&pages.server.db).await.unwrap();
    let response = pages
        .get(&format!("{}&code={code}", pages.create_path("default", &pages.service, &pages.environment)), None)
        .await;
    assert!(response.headers().get(header::SET_COOKIE).is_none());
    assert_eq!(html(response).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn another_organizations_code_is_refused_and_stays_usable_there() {
    let pages = Pages::new().await;
    let master_b = pages.server.other_org().await;
    let user_b = pages.server.create_user(&master_b, "b-user").await;
    let code_b = pages.code(&master_b, &user_b).await;
    let path_a = pages.create_path("default", &pages.service, &pages.environment);
    let refused = pages.get(&format!("{path_a}&code={code_b}"), None).await;
    assert!(refused.headers().get(header::SET_COOKIE).is_none());
    assert_eq!(html(refused).await.0, StatusCode::FORBIDDEN);

    let org_b = pages.server.org_of(&master_b).await;
    let path_b = pages.create_path(&org_b.to_string(), &pages.service, &pages.environment);
    assert_eq!(pages.get(&format!("{path_b}&code={code_b}"), None).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_foreign_environment_answers_like_a_missing_one_and_leaves_the_code_unused() {
    let pages = Pages::new().await;
    let master_b = pages.server.other_org().await;
    let service_b = pages.server.create_custom_service(&master_b, "b-crm").await;
    let data = pages
        .server
        .ok(&master_b, "mutation($s: ID!) { createServiceEnvironment(input: {serviceId: $s, title: \"Own\", authenticationType: token}) { serviceEnvironment { id } } }", json!({"s": service_b}))
        .await;
    let environment_b = data["createServiceEnvironment"]["serviceEnvironment"]["id"].as_str().unwrap().to_owned();
    let code = pages.code(&pages.server.master, &pages.user).await;

    let foreign =
        pages.get(&format!("{}&code={code}", pages.create_path("default", &service_b, &environment_b)), None).await;
    let missing_id = uuid::Uuid::now_v7().to_string();
    let missing =
        pages.get(&format!("{}&code={code}", pages.create_path("default", &service_b, &missing_id)), None).await;
    let (foreign_status, foreign_body) = html(foreign).await;
    let (missing_status, missing_body) = html(missing).await;
    assert_eq!(foreign_status, StatusCode::NOT_FOUND);
    assert_eq!((foreign_status, foreign_body), (missing_status, missing_body));

    let path = pages.create_path("default", &pages.service, &pages.environment);
    assert_eq!(pages.get(&format!("{path}&code={code}"), None).await.status(), StatusCode::SEE_OTHER, "code unused");
}

#[tokio::test]
async fn a_page_without_its_session_cookie_is_refused() {
    let pages = Pages::new().await;
    let (location, _) = pages.open().await;
    let (status, body) = html(pages.get(&location, None).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!body.contains("Connect Zendesk"));
}

#[tokio::test]
async fn revoking_a_users_tokens_or_removing_the_user_ends_their_page_sessions() {
    let pages = Pages::new().await;
    let (location, cookie) = pages.open().await;
    assert_eq!(pages.get(&location, Some(&cookie)).await.status(), StatusCode::OK);
    pages
        .server
        .ok(
            &pages.server.master,
            "mutation($u: ID!) { revokeUserTokens(input: {userId: $u}) { clientMutationId } }",
            json!({"u": pages.user}),
        )
        .await;
    assert_eq!(html(pages.get(&location, Some(&cookie)).await).await.0, StatusCode::FORBIDDEN);

    let (location, cookie) = pages.open().await;
    pages
        .server
        .ok(
            &pages.server.master,
            "mutation($u: ID!) { removeExternalUser(input: {userId: $u}) { clientMutationId } }",
            json!({"u": pages.user}),
        )
        .await;
    assert_eq!(html(pages.get(&location, Some(&cookie)).await).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_session_opens_only_the_page_it_was_opened_for() {
    let pages = Pages::new().await;
    let (_, cookie) = pages.open().await;
    let token = cookie.split_once('=').unwrap().1;
    let (jira_service, jira_environment) = pages.server.builtin_environment("jira").await;
    let other = pages.create_path("default", &jira_service, &jira_environment);
    // The token under the other page's cookie name: still not that page's session.
    let key = format!("auth.create/{jira_service}/{jira_environment}");
    let name = format!("lk_page_{}", &latchkey::crypto::sha256_hex(key.as_bytes())[..16]);
    let (status, _) = html(pages.get(&other, Some(&format!("{name}={token}"))).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_page_answers_with_a_strict_content_security_policy() {
    let pages = Pages::new().await;
    let (location, cookie) = pages.open().await;
    let missing = uuid::Uuid::now_v7().to_string();
    let responses = [
        pages.get(&location, Some(&cookie)).await,
        pages.get(&location, None).await,
        pages.get(&format!("{}&code=lk_code_nope", pages.create_path("default", &missing, &missing)), None).await,
        pages.get("/external/auth/create/default", None).await,
    ];
    for response in responses {
        let headers = response.headers();
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("base-uri 'none'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        let body = response.text().await.unwrap();
        assert!(!body.contains("<script>") && !body.contains(" style="), "no inline script or style: {body}");
    }
}

#[tokio::test]
async fn a_hostile_display_name_and_service_title_are_escaped() {
    let pages = Pages::new().await;
    let master = pages.server.master.clone();
    pages
        .server
        .ok(&master, "mutation { updateOrganizationSettings(input: {displayName: \"<script>alert('org')</script>\"}) { clientMutationId } }", json!({}))
        .await;
    let data = pages
        .server
        .ok(&master, "mutation { createService(input: {name: \"hostile\", title: \"<img src=x onerror=alert(1)>\"}) { service { id } } }", json!({}))
        .await;
    let service = data["createService"]["service"]["id"].as_str().unwrap().to_owned();
    let data = pages
        .server
        .ok(&master, "mutation($s: ID!) { createServiceEnvironment(input: {serviceId: $s, title: \"\\\"><b>env</b>\", authenticationType: token}) { serviceEnvironment { id } } }", json!({"s": service}))
        .await;
    let environment = data["createServiceEnvironment"]["serviceEnvironment"]["id"].as_str().unwrap().to_owned();
    let code = pages.code(&master, &pages.user).await;
    let response =
        pages.get(&format!("{}&code={code}", pages.create_path("default", &service, &environment)), None).await;
    let location = response.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let cookie = set_cookie(&response).split(';').next().unwrap().to_owned();
    let (status, body) = html(pages.get(&location, Some(&cookie)).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for raw in ["<script>alert", "<img src=x", "<b>env</b>"] {
        assert!(!body.contains(raw), "{raw} reached the page unescaped: {body}");
    }
    assert!(
        body.contains("&lt;script&gt;alert(&#39;org&#39;)&lt;/script&gt;")
            || body.contains("&lt;script&gt;alert('org')&lt;/script&gt;"),
        "{body}"
    );
    assert!(body.contains("&lt;img src=x onerror=alert(1)&gt;"), "{body}");
}

#[tokio::test]
async fn the_stylesheets_are_served_from_the_binary() {
    let pages = Pages::new().await;
    let css = pages.get("/external/assets/page.css", None).await;
    assert_eq!(css.status(), StatusCode::OK);
    assert!(css.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/css"));
    let accent = pages.get("/external/assets/accent/0A66C2.css", None).await.text().await.unwrap();
    assert!(accent.contains("--accent: #0a66c2"), "{accent}");
    assert_eq!(pages.get("/external/assets/accent/red.css", None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(pages.get("/external/assets/nope.js", None).await.status(), StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------------------
// The auth dialog's form

/// The value of the first `attribute="…"` after `marker` in `body`.
pub(crate) fn attribute_after(body: &str, marker: &str, attribute: &str) -> String {
    let rest = &body[body.find(marker).unwrap_or_else(|| panic!("{marker} in {body}"))..];
    let start = rest.find(&format!("{attribute}=\"")).unwrap() + attribute.len() + 2;
    rest[start..start + rest[start..].find('"').unwrap()].to_owned()
}

impl Pages {
    /// Opens the dialog and returns (its URL, the cookie, its CSRF token).
    async fn form(&self) -> (String, String, String) {
        let (location, cookie) = self.open().await;
        let (status, body) = html(self.get(&location, Some(&cookie)).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let csrf = attribute_after(&body, "name=\"_csrf\"", "value");
        (location, cookie, csrf)
    }

    pub(crate) async fn post(&self, location: &str, cookie: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.browser
            .post(format!("{}{location}", self.server.base))
            .header(header::COOKIE, cookie)
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn authentications(&self) -> Vec<serde_json::Value> {
        let token = self.server.user_token(&self.server.master, &self.user).await;
        let data =
            self.server.ok(&token, "{ viewer { authentications { edges { node { id name } } } } }", json!({})).await;
        data["viewer"]["authentications"]["edges"].as_array().unwrap().clone()
    }
}

pub(crate) const VALID: &[(&str, &str)] = &[
    ("name", "Support desk"),
    ("credentials.email", "agent@acme.test"),
    ("credentials.api_token", "zd-secret-token-0001"),
    ("userData.subdomain", "acme"),
];

pub(crate) fn with_csrf<'a>(csrf: &'a str, fields: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![("_csrf", csrf)];
    all.extend_from_slice(fields);
    all
}

#[tokio::test]
async fn the_dialog_has_a_labelled_field_per_schema_property_typed_by_its_schema() {
    let pages = Pages::new().await;
    let (location, cookie) = pages.open().await;
    let (_, body) = html(pages.get(&location, Some(&cookie)).await).await;
    for expected in [
        r#"<label for="f-credentials.email">"#,
        r#"type="email" id="f-credentials.email" name="credentials.email""#,
        r#"type="password" id="f-credentials.api_token" name="credentials.api_token""#,
        r#"type="text" id="f-userData.subdomain" name="userData.subdomain""#,
        "Zendesk account subdomain",
        r#"class="required""#,
        r#"<script src="/external/assets/popup.js">"#,
    ] {
        assert!(body.contains(expected), "{expected} in {body}");
    }
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_is_refused_and_saves_nothing() {
    let pages = Pages::new().await;
    let (location, cookie, _) = pages.form().await;
    let (other_location, other_cookie, other_csrf) = pages.form().await;
    assert_eq!(location, other_location);
    for csrf in [None, Some("forged"), Some(other_csrf.as_str())] {
        let fields = match csrf {
            Some(csrf) => with_csrf(csrf, VALID),
            None => VALID.to_vec(),
        };
        let (status, body) = html(pages.post(&location, &cookie, &fields).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{csrf:?}: {body}");
    }
    // Without the session cookie, even the right token does nothing.
    let (status, _) = html(pages.post(&location, "", &with_csrf(&other_csrf, VALID)).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(pages.authentications().await.is_empty());
    drop(other_cookie);
}

#[tokio::test]
async fn schema_errors_are_shown_on_their_fields_and_a_secret_is_never_sent_back() {
    let pages = Pages::new().await;
    let (location, cookie, csrf) = pages.form().await;
    let fields = with_csrf(
        &csrf,
        &[
            ("name", "Support desk"),
            ("credentials.email", "not-an-email"),
            ("credentials.api_token", "zd-secret-token-0002"),
            ("userData.subdomain", "bad domain"),
        ],
    );
    let (status, body) = html(pages.post(&location, &cookie, &fields).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains(r#"<p id="e-credentials.email" class="field-error">is not a valid email</p>"#), "{body}");
    assert!(body.contains(r#"<p id="e-userData.subdomain" class="field-error">does not match the pattern"#), "{body}");
    assert!(body.contains(r#"role="alert""#));
    assert!(body.contains(r#"value="bad domain""#), "non-secret values are kept: {body}");
    assert!(!body.contains("zd-secret-token-0002"), "the secret came back: {body}");
    assert!(pages.authentications().await.is_empty());

    let missing = with_csrf(&csrf, &[("name", "Support desk"), ("userData.subdomain", "acme")]);
    let (status, body) = html(pages.post(&location, &cookie, &missing).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains(r#"id="e-credentials.api_token" class="field-error">required property"#), "{body}");
}

#[tokio::test]
async fn a_valid_post_saves_the_authentication_and_tells_only_the_allowed_origins() {
    let pages = Pages::new().await;
    pages
        .server
        .ok(
            &pages.server.master,
            "mutation { updateOrganizationSettings(input: {allowedOrigins: [\"https://app.acme.example\"]}) { clientMutationId } }",
            json!({}),
        )
        .await;
    let (location, cookie, csrf) = pages.form().await;
    let (status, body) = html(pages.post(&location, &cookie, &with_csrf(&csrf, VALID)).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let saved = pages.authentications().await;
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0]["node"]["name"], "Support desk");
    let id = saved[0]["node"]["id"].as_str().unwrap();
    assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-message"), "tray.authpopup.finish");
    assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-value"), id);
    assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-origins"), "[&quot;https://app.acme.example&quot;]");
    assert!(!body.contains("zd-secret-token-0001"));
}

#[tokio::test]
async fn a_form_sent_twice_saves_one_authentication() {
    let pages = Pages::new().await;
    let (location, cookie, csrf) = pages.form().await;
    let fields = with_csrf(&csrf, VALID);
    let (first, second) =
        tokio::join!(pages.post(&location, &cookie, &fields), pages.post(&location, &cookie, &fields));
    let (first, second) = (html(first).await, html(second).await);
    assert_eq!((first.0, second.0), (StatusCode::OK, StatusCode::OK));
    let saved = pages.authentications().await;
    assert_eq!(saved.len(), 1, "{saved:?}");
    let id = saved[0]["node"]["id"].as_str().unwrap();
    for (_, body) in [first, second] {
        assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-value"), id);
    }
}

#[tokio::test]
async fn the_popup_script_is_embedded_and_posts_only_to_the_origins_it_is_given() {
    let pages = Pages::new().await;
    let response = pages.get("/external/assets/popup.js", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/javascript"));
    let script = response.text().await.unwrap();
    assert!(script.contains("window.opener.postMessage(message, origin)"));
    assert!(!script.contains("\"*\"") && !script.contains("'*'"), "never a wildcard target origin");
}

#[tokio::test]
async fn expired_page_sessions_are_removed_as_new_ones_start() {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
    let pages = Pages::new().await;
    let (location, cookie) = pages.open().await;
    let row = entity::page_session::Entity::find().one(&pages.server.db).await.unwrap().unwrap();
    let expired_id = row.id;
    let mut row: entity::page_session::ActiveModel = row.into();
    row.expires_at = Set(chrono::Utc::now() - chrono::Duration::seconds(1));
    row.update(&pages.server.db).await.unwrap();
    assert_eq!(html(pages.get(&location, Some(&cookie)).await).await.0, StatusCode::FORBIDDEN, "expired");

    pages.open().await;
    let left = entity::page_session::Entity::find().all(&pages.server.db).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_ne!(left[0].id, expired_id);
}

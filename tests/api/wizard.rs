//! The auth dialog for an instance's slot, the edit dialog and the config wizard, over
//! HTTP without a browser: what each saves (read back through the API), and every rule
//! of the pages (CSRF, codes, foreign ids, escaping, one result per double submit).

use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::pages::{Pages, VALID, attribute_after, html, set_cookie, with_csrf};

const CREATE_SOLUTION: &str =
    "mutation($in: CreateSolutionInput!) { createSolution(input: $in) { solution { id version } } }";
const PUBLISH: &str = "mutation($id: ID!) { publishSolution(input: {solutionId: $id}) { solution { version } } }";
const INSTANCE: &str = "query($c: SolutionInstanceSearchCriteria) { viewer { solutionInstances(criteria: $c) { edges { node { id solutionVersion authValues { externalId authId } configValues { externalId value } } } } } }";

fn config_slots() -> Value {
    json!([
        {"externalId": "batch_size", "title": "Batch size", "valueType": "NUMBER", "required": true, "defaultValue": "50"},
        {"externalId": "region", "title": "Region", "valueType": "CHOICE", "choices": ["\"eu\"", "\"us\""], "defaultValue": "\"eu\""},
        {"externalId": "notify", "title": "Notify", "valueType": "BOOLEAN"},
        {"externalId": "filters", "title": "Filters", "valueType": "OBJECT"},
        {"externalId": "tags", "title": "Tags", "valueType": "ARRAY"},
        {"externalId": "label", "title": "Label", "valueType": "STRING", "required": true},
        {"externalId": "internal", "title": "Internal", "valueType": "STRING", "hidden": true, "defaultValue": "\"kept\""}
    ])
}

/// An end user with an instance of a published solution: a Zendesk auth slot (its
/// environment fixed, scope `read`) and config slots of every type, one of them hidden.
struct Flow {
    pages: Pages,
    token: String,
    solution: String,
    instance: String,
}

impl Flow {
    async fn new() -> Self {
        let pages = Pages::new().await;
        let server = &pages.server;
        let input = json!({"in": {
            "title": "Ticket sync",
            "authSlots": [{"externalId": "zendesk_auth", "title": "Zendesk", "serviceId": pages.service,
                "serviceEnvironmentId": pages.environment, "scopes": ["read"], "required": true}],
            "configSlots": config_slots(),
            "workflows": [{"name": "Sync"}]}});
        let data = server.ok(&server.master, CREATE_SOLUTION, input).await;
        let solution = data["createSolution"]["solution"]["id"].as_str().unwrap().to_owned();
        server.ok(&server.master, PUBLISH, json!({"id": solution})).await;
        let token = server.user_token(&server.master, &pages.user).await;
        let instance = server.create_instance(&token, &solution, "Mine").await;
        Self { pages, token, solution, instance }
    }

    fn slot_path(&self) -> String {
        format!("/external/auth/create/default/{}/zendesk_auth", self.instance)
    }

    fn wizard_path(&self) -> String {
        format!("/external/solutions/default/configure/{}", self.instance)
    }

    /// Opens `path` with a fresh code: (the page's URL, the cookie).
    async fn open(&self, path: &str) -> (String, String) {
        let code = self.pages.code(&self.pages.server.master, &self.pages.user).await;
        let response = self.pages.get(&format!("{path}?code={code}"), None).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        let location = response.headers()[header::LOCATION].to_str().unwrap().to_owned();
        assert_eq!(location, path, "the same page, without the code");
        (location, set_cookie(&response).split(';').next().unwrap().to_owned())
    }

    async fn show(&self, url: &str, cookie: &str) -> (StatusCode, String) {
        html(self.pages.get(url, Some(cookie)).await).await
    }

    /// Opens `path` and reads its form: (URL, cookie, CSRF token, page).
    async fn form(&self, path: &str) -> (String, String, String, String) {
        let (location, cookie) = self.open(path).await;
        let (status, body) = self.show(&location, &cookie).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let csrf = attribute_after(&body, "name=\"_csrf\"", "value");
        (location, cookie, csrf, body)
    }

    async fn post(&self, url: &str, cookie: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        html(self.pages.post(url, cookie, fields).await).await
    }

    /// The instance as the API shows it: version, auth values and config values (parsed).
    async fn instance(&self) -> (i64, Value, Value) {
        let data = self.pages.server.ok(&self.token, INSTANCE, json!({"c": {"id": self.instance}})).await;
        let node = &data["viewer"]["solutionInstances"]["edges"][0]["node"];
        let auth: serde_json::Map<String, Value> = node["authValues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["externalId"].as_str().unwrap().to_owned(), v["authId"].clone()))
            .collect();
        let config: serde_json::Map<String, Value> = node["configValues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let text = v["value"].as_str().unwrap();
                (v["externalId"].as_str().unwrap().to_owned(), serde_json::from_str(text).unwrap_or(json!(text)))
            })
            .collect();
        (node["solutionVersion"].as_i64().unwrap(), Value::Object(auth), Value::Object(config))
    }

    /// Opens the edit dialog of `id` and sends it these Zendesk fields.
    async fn edit(&self, id: &str, email: &str, api_token: &str, subdomain: &str) -> (StatusCode, String) {
        let (url, cookie, csrf, _) = self.form(&format!("/external/auth/edit/default/{id}")).await;
        let fields = [
            ("name", "Renamed"),
            ("credentials.email", email),
            ("credentials.api_token", api_token),
            ("userData.subdomain", subdomain),
        ];
        self.post(&url, &cookie, &with_csrf(&csrf, &fields)).await
    }

    /// Imports a connection, opens the wizard and picks it in the auth step: (the settings
    /// step's URL, the cookie, the CSRF token, the connection's id).
    async fn to_settings(&self) -> (String, String, String, String) {
        let existing = self.import("Desk").await;
        let (url, cookie, csrf, _) = self.form(&self.wizard_path()).await;
        let pick = [("_action", "next"), ("auth.zendesk_auth", existing.as_str())];
        assert_eq!(self.pages.post(&url, &cookie, &with_csrf(&csrf, &pick)).await.status(), StatusCode::SEE_OTHER);
        (format!("{}?step=1", self.wizard_path()), cookie, csrf, existing)
    }

    async fn import(&self, name: &str) -> String {
        self.pages.server.import_zendesk(&self.token, &self.pages.environment, name).await
    }

    /// The credentials and user data, read through the one audited full read.
    async fn full(&self, id: &str) -> (Value, Value) {
        let query = "query($id: ID!) { authenticationCredentials(id: $id) { data formData } }";
        let data = self.pages.server.ok(&self.token, query, json!({"id": id})).await;
        let parse = |value: &Value| match value {
            Value::String(text) => serde_json::from_str(text).unwrap(),
            other => other.clone(),
        };
        let full = &data["authenticationCredentials"];
        (parse(&full["data"]), parse(&full["formData"]))
    }

    async fn audit_count(&self, action: &str, target: &str) -> usize {
        let data = self
            .pages
            .server
            .ok(
                &self.pages.server.master,
                "{ auditEvents(last: 100) { edges { node { action targetId } } } }",
                json!({}),
            )
            .await;
        data["auditEvents"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|edge| edge["node"]["action"] == action && edge["node"]["targetId"] == target)
            .count()
    }
}

// ---------------------------------------------------------------------------------------
// The auth dialog for one slot of an instance

#[tokio::test]
async fn the_slot_dialog_saves_an_authentication_and_sets_it_on_the_instance() {
    let flow = Flow::new().await;
    let (url, cookie, csrf, body) = flow.form(&flow.slot_path()).await;
    assert!(body.contains("Connect Zendesk"), "{body}");
    // Zendesk lists no scopes: the slot's go in the free field.
    assert!(body.contains(r#"name="extraScopes" value="read""#), "the slot's scopes are pre-filled: {body}");
    let (status, body) = flow.post(&url, &cookie, &with_csrf(&csrf, VALID)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let saved = flow.pages.authentications().await;
    assert_eq!(saved.len(), 1);
    let id = saved[0]["node"]["id"].as_str().unwrap();
    assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-message"), "tray.authpopup.finish");
    assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-value"), id);
    let (_, auth, _) = flow.instance().await;
    assert_eq!(auth, json!({"zendesk_auth": id}));
}

#[tokio::test]
async fn the_slot_dialog_sent_twice_at_once_saves_one_authentication_in_the_slot() {
    let flow = Flow::new().await;
    let (url, cookie, csrf, _) = flow.form(&flow.slot_path()).await;
    let fields = with_csrf(&csrf, VALID);
    let (first, second) = tokio::join!(flow.post(&url, &cookie, &fields), flow.post(&url, &cookie, &fields));
    assert_eq!((first.0, second.0), (StatusCode::OK, StatusCode::OK), "{} {}", first.1, second.1);
    let saved = flow.pages.authentications().await;
    assert_eq!(saved.len(), 1, "{saved:?}");
    let id = saved[0]["node"]["id"].as_str().unwrap();
    for (_, body) in [first, second] {
        assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-value"), id);
    }
    assert_eq!(flow.instance().await.1, json!({"zendesk_auth": id}));
    assert_eq!(flow.audit_count("solution_instance.updated", &flow.instance).await, 1);
}

#[tokio::test]
async fn an_oauth_slot_without_the_organizations_app_says_so_and_saves_nothing() {
    let flow = Flow::new().await;
    let server = &flow.pages.server;
    let (slack, _) = server.builtin_environment("slack").await;
    let input = json!({"in": {"title": "Slack", "authSlots": [{"externalId": "slack", "title": "Slack", "serviceId": slack}], "workflows": [{"name": "Post"}]}});
    let data = server.ok(&server.master, CREATE_SOLUTION, input).await;
    let solution = data["createSolution"]["solution"]["id"].as_str().unwrap().to_owned();
    server.ok(&server.master, PUBLISH, json!({"id": solution})).await;
    let instance = server.create_instance(&flow.token, &solution, "Slack").await;
    let (url, cookie) = flow.open(&format!("/external/auth/create/default/{instance}/slack")).await;
    let (status, body) = flow.show(&url, &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("has not set up its OAuth app for Slack yet"), "{body}");
    assert!(!body.contains("name=\"_csrf\"") && !body.contains("_action=connect"), "no form, no link: {body}");
    // Even a post with the session's CSRF token saves nothing here.
    let token = secrecy::SecretString::from(cookie.split_once('=').unwrap().1.to_owned());
    let csrf = latchkey::auth::page_sessions::csrf_token(&token);
    let (status, body) =
        flow.post(&url, &cookie, &with_csrf(&csrf, &[("name", "x"), ("credentials.token", "t")])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("has not set up its OAuth app for Slack yet"), "{body}");
    assert!(flow.pages.authentications().await.is_empty());
}

// ---------------------------------------------------------------------------------------
// Editing an authentication

#[tokio::test]
async fn editing_shows_no_secret_and_a_blank_secret_keeps_its_stored_value() {
    let flow = Flow::new().await;
    flow.pages.server.enable_full_reads(&flow.pages.server.master).await;
    let id = flow.import("Desk").await;
    let (_, _, _, body) = flow.form(&format!("/external/auth/edit/default/{id}")).await;
    assert!(body.contains("Update your Zendesk connection"), "{body}");
    assert!(body.contains(r#"value="Desk""#) && body.contains(r#"value="agent@acme.test""#), "{body}");
    assert!(body.contains(r#"value="acme""#), "{body}");
    assert!(!body.contains("zd-secret-token-0001"), "a stored secret reached the page: {body}");
    assert!(body.contains("Leave blank to keep it"), "{body}");

    let (status, body) = flow.edit(&id, "new@acme.test", "", "acme2").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-message"), "tray.authpopup.finish");
    assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-value"), id);
    let (credentials, user_data) = flow.full(&id).await;
    assert_eq!(credentials, json!({"email": "new@acme.test", "api_token": "zd-secret-token-0001"}));
    assert_eq!(user_data, json!({"subdomain": "acme2"}));
    let saved = flow.pages.authentications().await;
    assert_eq!((saved.len(), saved[0]["node"]["name"].as_str()), (1, Some("Renamed")));

    // A secret that is given replaces the stored one.
    assert_eq!(flow.edit(&id, "new@acme.test", "zd-secret-token-0002", "acme2").await.0, StatusCode::OK);
    assert_eq!(flow.full(&id).await.0["api_token"], "zd-secret-token-0002");
}

#[tokio::test]
async fn an_edit_the_schema_refuses_is_shown_on_its_field_and_changes_nothing() {
    let flow = Flow::new().await;
    flow.pages.server.enable_full_reads(&flow.pages.server.master).await;
    let id = flow.import("Desk").await;
    let (status, body) = flow.edit(&id, "not-an-email", "zd-secret-token-0003", "acme").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains(r#"<p id="e-credentials.email" class="field-error">is not a valid email</p>"#), "{body}");
    assert!(!body.contains("zd-secret-token-0003") && !body.contains("zd-secret-token-0001"), "{body}");
    assert_eq!(flow.full(&id).await.0, json!({"email": "agent@acme.test", "api_token": "zd-secret-token-0001"}));
    assert_eq!(flow.pages.authentications().await[0]["node"]["name"], "Desk");
}

// ---------------------------------------------------------------------------------------
// Rules every page keeps

#[tokio::test]
async fn a_post_without_the_csrf_token_saves_nothing_on_any_page() {
    let flow = Flow::new().await;
    let existing = flow.import("Desk").await;
    let edit = format!("/external/auth/edit/default/{existing}");
    let wizard_create = format!("{}/auth/zendesk_auth", flow.wizard_path());
    for path in [flow.slot_path(), edit, flow.wizard_path()] {
        let (url, cookie, _, _) = flow.form(&path).await;
        let (_, other_cookie, other_csrf, _) = flow.form(&path).await;
        let mut fields = VALID.to_vec();
        fields.extend([("_action", "next"), ("auth.zendesk_auth", existing.as_str()), ("_form", "k1")]);
        for csrf in [None, Some("forged"), Some(other_csrf.as_str())] {
            let fields = csrf.map_or_else(|| fields.clone(), |csrf| with_csrf(csrf, &fields));
            assert_eq!(flow.post(&url, &cookie, &fields).await.0, StatusCode::FORBIDDEN, "{path} {csrf:?}");
        }
        if path == flow.wizard_path() {
            let sub = format!("{wizard_create}?x=1");
            let fields = with_csrf("forged", &fields);
            assert_eq!(flow.post(&sub, &cookie, &fields).await.0, StatusCode::FORBIDDEN);
        }
        drop(other_cookie);
    }
    let saved = flow.pages.authentications().await;
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0]["node"]["name"], "Desk");
    assert_eq!(flow.instance().await.1, json!({}));
}

#[tokio::test]
async fn a_reused_or_expired_code_opens_none_of_the_pages() {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, QueryOrder};
    let flow = Flow::new().await;
    let existing = flow.import("Desk").await;
    for path in [flow.slot_path(), format!("/external/auth/edit/default/{existing}"), flow.wizard_path()] {
        let code = flow.pages.code(&flow.pages.server.master, &flow.pages.user).await;
        let url = format!("{path}?code={code}");
        assert_eq!(flow.pages.get(&url, None).await.status(), StatusCode::SEE_OTHER);
        let again = flow.pages.get(&url, None).await;
        assert!(again.headers().get(header::SET_COOKIE).is_none());
        let (status, body) = html(again).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(body.contains("This link can no longer be used"), "{body}");

        let code = flow.pages.code(&flow.pages.server.master, &flow.pages.user).await;
        let row = entity::authorization_code::Entity::find()
            .order_by_desc(entity::authorization_code::Column::CreatedAt)
            .one(&flow.pages.server.db)
            .await
            .unwrap()
            .unwrap();
        let mut row: entity::authorization_code::ActiveModel = row.into();
        row.expires_at = Set(chrono::Utc::now() - chrono::Duration::seconds(1));
        row.update(&flow.pages.server.db).await.unwrap();
        let expired = flow.pages.get(&format!("{path}?code={code}"), None).await;
        assert!(expired.headers().get(header::SET_COOKIE).is_none());
        assert_eq!(html(expired).await.0, StatusCode::FORBIDDEN, "{path}");
    }
}

#[tokio::test]
async fn foreign_or_missing_ids_answer_alike_and_leave_the_code_unused() {
    let flow = Flow::new().await;
    let server = &flow.pages.server;
    // Another end user of the same organization, with their own instance and authentication.
    let other = server.create_user(&server.master, "other-user").await;
    let other_token = server.user_token(&server.master, &other).await;
    let their_instance = server.create_instance(&other_token, &flow.solution, "Theirs").await;
    let their_auth = server.import_zendesk(&other_token, &flow.pages.environment, "Theirs").await;
    let missing = uuid::Uuid::now_v7().to_string();
    let pairs = [
        (
            format!("/external/auth/create/default/{their_instance}/zendesk_auth"),
            format!("/external/auth/create/default/{missing}/zendesk_auth"),
        ),
        (
            format!("/external/auth/create/default/{}/no_such_slot", flow.instance),
            format!("/external/auth/create/default/{missing}/no_such_slot"),
        ),
        (format!("/external/auth/edit/default/{their_auth}"), format!("/external/auth/edit/default/{missing}")),
        (
            format!("/external/solutions/default/configure/{their_instance}"),
            format!("/external/solutions/default/configure/{missing}"),
        ),
    ];
    let code = flow.pages.code(&server.master, &flow.pages.user).await;
    for (foreign, absent) in pairs {
        let foreign = html(flow.pages.get(&format!("{foreign}?code={code}"), None).await).await;
        let absent = html(flow.pages.get(&format!("{absent}?code={code}"), None).await).await;
        assert_eq!(foreign.0, StatusCode::NOT_FOUND, "{}", foreign.1);
        assert_eq!(foreign, absent);
    }
    let response = flow.pages.get(&format!("{}?code={code}", flow.wizard_path()), None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "the code is still unused");
}

#[tokio::test]
async fn hostile_titles_of_solution_slots_and_service_are_escaped() {
    let flow = Flow::new().await;
    let server = &flow.pages.server;
    let master = &server.master;
    let data = server
        .ok(master, "mutation { createService(input: {name: \"hostile\", title: \"<img src=x onerror=alert(1)>\"}) { service { id } } }", json!({}))
        .await;
    let service = data["createService"]["service"]["id"].as_str().unwrap().to_owned();
    server
        .ok(master, "mutation($s: ID!) { createServiceEnvironment(input: {serviceId: $s, title: \"Own\", authenticationType: token}) { serviceEnvironment { id } } }", json!({"s": service}))
        .await;
    let input = json!({"in": {
        "title": "<script>alert('solution')</script>",
        "authSlots": [{"externalId": "hostile", "title": "\"><svg onload=alert(2)>", "serviceId": service}],
        "configSlots": [{"externalId": "label", "title": "<b>bold</b>", "valueType": "CHOICE", "choices": ["\"<i>x</i>\""]}],
        "workflows": [{"name": "Sync"}]}});
    let data = server.ok(master, CREATE_SOLUTION, input).await;
    let solution = data["createSolution"]["solution"]["id"].as_str().unwrap().to_owned();
    server.ok(master, PUBLISH, json!({"id": solution})).await;
    let instance = server.create_instance(&flow.token, &solution, "Hostile").await;
    let wizard = format!("/external/solutions/default/configure/{instance}");
    let (url, cookie) = flow.open(&wizard).await;
    let mut bodies = vec![flow.show(&url, &cookie).await, flow.show(&format!("{url}?step=1"), &cookie).await];
    bodies.push(flow.show(&format!("{wizard}/auth/hostile"), &cookie).await);
    let (slot_url, slot_cookie) = flow.open(&format!("/external/auth/create/default/{instance}/hostile")).await;
    bodies.push(flow.show(&slot_url, &slot_cookie).await);
    for (status, body) in bodies {
        assert_eq!(status, StatusCode::OK, "{body}");
        for raw in ["<script>alert", "<img src=x", "<svg onload", "<b>bold", "<i>x"] {
            assert!(!body.contains(raw), "{raw} reached the page unescaped: {body}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The config wizard

/// The settings step's fields, all valid.
const SETTINGS: &[(&str, &str)] = &[
    ("config.batch_size", "75"),
    ("config.region", "us"),
    ("config.notify", "on"),
    ("config.filters", "{\"status\": \"open\"}"),
    ("config.tags", "[\"a\", \"b\"]"),
    ("config.label", "Support"),
];

#[tokio::test]
async fn the_wizard_walks_its_steps_and_finishes_through_the_instance_update() {
    let flow = Flow::new().await;
    flow.pages
        .server
        .ok(
            &flow.pages.server.master,
            "mutation { updateOrganizationSettings(input: {allowedOrigins: [\"https://app.acme.example\"]}) { clientMutationId } }",
            json!({}),
        )
        .await;
    let existing = flow.import("Desk").await;
    let (url, cookie, csrf, body) = flow.form(&flow.wizard_path()).await;
    assert!(body.contains("Step 1 of 2") && body.contains("Desk"), "{body}");
    assert!(body.contains(&format!("href=\"{}/auth/zendesk_auth\"", flow.wizard_path())), "{body}");
    assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-cancel"), "tray.configPopup.cancel");
    assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-cancel-value"), flow.instance);

    // Without a pick, the required slot stops the step.
    let (status, body) = flow.post(&url, &cookie, &with_csrf(&csrf, &[("_action", "next")])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("id=\"e-auth.zendesk_auth\""), "{body}");
    let pick = [("_action", "next"), ("auth.zendesk_auth", existing.as_str())];
    let response = flow.pages.post(&url, &cookie, &with_csrf(&csrf, &pick)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let next = response.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(next, format!("{}?step=1", flow.wizard_path()));

    // The settings: defaults pre-filled, the hidden slot left out; Back keeps what was typed.
    let (_, body) = flow.show(&next, &cookie).await;
    assert!(body.contains(r#"name="config.batch_size" value="50""#), "{body}");
    assert!(body.contains(r#"<option value="eu" selected>"#), "{body}");
    assert!(!body.contains("config.internal"), "{body}");
    assert_eq!(attribute_after(&body, "<form", "data-finish"), "true");
    let mut back = vec![("_action", "back")];
    back.extend_from_slice(SETTINGS);
    let response = flow.pages.post(&next, &cookie, &with_csrf(&csrf, &back)).await;
    assert_eq!(response.headers()[header::LOCATION], format!("{}?step=0", flow.wizard_path()).as_str());
    let (_, body) = flow.show(&url, &cookie).await;
    assert!(body.contains(&format!(r#"value="{existing}" checked"#)), "the pick is kept: {body}");
    let (_, body) = flow.show(&next, &cookie).await;
    assert!(body.contains(r#"name="config.batch_size" value="75""#), "{body}");
    assert_eq!(flow.instance().await.1, json!({}), "nothing is saved before the finish");

    let mut finish = vec![("_action", "finish")];
    finish.extend_from_slice(SETTINGS);
    let (status, body) = flow.post(&next, &cookie, &with_csrf(&csrf, &finish)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-message"), "tray.configPopup.finish");
    assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-value"), flow.instance);
    assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-origins"), "[&quot;https://app.acme.example&quot;]");
    let (version, auth, config) = flow.instance().await;
    assert_eq!(version, 1);
    assert_eq!(auth, json!({"zendesk_auth": existing}));
    assert_eq!(
        config,
        json!({"batch_size": 75, "region": "us", "notify": true, "filters": {"status": "open"}, "tags": ["a", "b"],
            "label": "Support", "internal": "kept"})
    );
    // A reload shows it finished; nothing is saved again.
    let (status, body) = flow.show(&next, &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-message"), "tray.configPopup.finish");
    assert_eq!(flow.audit_count("solution_instance.updated", &flow.instance).await, 1);
}

#[tokio::test]
async fn a_connection_made_in_the_wizard_comes_back_picked_and_is_made_once() {
    let flow = Flow::new().await;
    let (url, cookie) = flow.open(&flow.wizard_path()).await;
    let create = format!("{}/auth/zendesk_auth", flow.wizard_path());
    let (status, body) = flow.show(&create, &cookie).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Connect Zendesk"), "{body}");
    let csrf = attribute_after(&body, "name=\"_csrf\"", "value");
    let key = attribute_after(&body, "name=\"_form\"", "value");
    let mut fields = with_csrf(&csrf, VALID);
    fields.push(("_form", &key));
    let (first, second) =
        tokio::join!(flow.pages.post(&create, &cookie, &fields), flow.pages.post(&create, &cookie, &fields));
    for response in [first, second] {
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[header::LOCATION], format!("{}?step=0", flow.wizard_path()).as_str());
    }
    let saved = flow.pages.authentications().await;
    assert_eq!(saved.len(), 1, "{saved:?}");
    let id = saved[0]["node"]["id"].as_str().unwrap();
    let (_, body) = flow.show(&url, &cookie).await;
    assert!(body.contains(&format!(r#"value="{id}" checked"#)), "{body}");
    assert_eq!(flow.instance().await.1, json!({}), "set on the instance only when the wizard finishes");
}

#[tokio::test]
async fn a_config_value_of_the_wrong_type_is_shown_on_its_field_and_nothing_is_saved() {
    let flow = Flow::new().await;
    let (settings, cookie, csrf, _) = flow.to_settings().await;
    let before = flow.instance().await;
    let finish = [
        ("_action", "finish"),
        ("config.batch_size", "many"),
        ("config.region", "mars"),
        ("config.filters", "[1, 2]"),
        ("config.tags", "{not json"),
        ("config.label", ""),
    ];
    let (status, body) = flow.post(&settings, &cookie, &with_csrf(&csrf, &finish)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    for (control, message) in [
        ("config.batch_size", "must be a number"),
        ("config.region", "must be one of the choices"),
        ("config.filters", "must be a JSON object"),
        ("config.tags", "must be valid JSON"),
        ("config.label", "is required"),
    ] {
        let expected = format!(r#"<p id="e-{control}" class="field-error">{message}</p>"#);
        assert!(body.contains(&expected), "{expected} in {body}");
    }
    assert!(body.contains(r#"aria-invalid="true""#));
    assert_eq!(flow.instance().await, before);
    assert_eq!(flow.audit_count("solution_instance.updated", &flow.instance).await, 0);
}

#[tokio::test]
async fn finishing_the_wizard_upgrades_to_a_newer_version_that_needs_input() {
    let flow = Flow::new().await;
    let server = &flow.pages.server;
    let mut slots = config_slots();
    slots
        .as_array_mut()
        .unwrap()
        .push(json!({"externalId": "channel", "title": "Channel", "valueType": "STRING", "required": true}));
    let update = "mutation($id: ID!, $slots: [ConfigSlotInput!]) { updateSolution(input: {solutionId: $id, configSlots: $slots}) { solution { id } } }";
    server.ok(&server.master, update, json!({"id": flow.solution, "slots": slots})).await;
    server.ok(&server.master, PUBLISH, json!({"id": flow.solution})).await;

    let (settings, cookie, csrf, existing) = flow.to_settings().await;
    let (_, body) = flow.show(&settings, &cookie).await;
    assert!(body.contains(r#"name="config.channel""#), "the new version's slot is asked for: {body}");
    let mut finish = vec![("_action", "finish"), ("config.channel", "#support")];
    finish.extend_from_slice(SETTINGS);
    let (status, body) = flow.post(&settings, &cookie, &with_csrf(&csrf, &finish)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (version, auth, config) = flow.instance().await;
    assert_eq!(version, 2);
    assert_eq!(auth, json!({"zendesk_auth": existing}));
    assert_eq!(config["channel"], "#support");
    assert_eq!(flow.audit_count("solution_instance.upgraded", &flow.instance).await, 1);
}

#[tokio::test]
async fn two_finishes_at_once_save_once() {
    let flow = Flow::new().await;
    let (settings, cookie, csrf, _) = flow.to_settings().await;
    let mut finish = vec![("_action", "finish")];
    finish.extend_from_slice(SETTINGS);
    let fields = with_csrf(&csrf, &finish);
    let (first, second) = tokio::join!(flow.post(&settings, &cookie, &fields), flow.post(&settings, &cookie, &fields));
    for (status, body) in [first, second] {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-message"), "tray.configPopup.finish");
    }
    assert_eq!(flow.audit_count("solution_instance.updated", &flow.instance).await, 1);
    assert_eq!(flow.instance().await.2["batch_size"], 75);
}

#[tokio::test]
async fn the_wizard_script_checks_with_the_opener_before_finishing() {
    let flow = Flow::new().await;
    let script = flow.pages.get("/external/assets/popup.js", None).await.text().await.unwrap();
    for expected in [
        "tray.configPopup.validate",
        "tray.configPopup.client.validation",
        "tray.configPopup.finish",
        "tray.configPopup.cancel",
        "tray.configPopup.error",
        "answer.source !== window.opener || origins.indexOf(answer.origin) < 0",
        "result.inProgress",
    ] {
        assert!(script.contains(expected), "{expected} in popup.js");
    }
    // A refused wizard page tells the opener with the wizard's own error message.
    let missing = uuid::Uuid::now_v7();
    let server = &flow.pages.server;
    server
        .ok(
            &server.master,
            "mutation { updateOrganizationSettings(input: {allowedOrigins: [\"https://app.acme.example\"]}) { clientMutationId } }",
            json!({}),
        )
        .await;
    let (status, body) =
        html(flow.pages.get(&format!("/external/solutions/default/configure/{missing}?code=lk_code_x"), None).await)
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(attribute_after(&body, "id=\"lk-popup\"", "data-message"), "tray.configPopup.error");
}

//! The bare baselines latchkey is measured against: axum handlers on the same database,
//! opened the same way, doing only the work each request cannot avoid. They take the very
//! request bodies latchkey takes (GraphQL requests; the query text is not parsed, the
//! variables are) and answer the JSON latchkey answers.
//!
//! | route | baseline | work |
//! |---|---|---|
//! | `POST /b0` | B0 | none: a fixed JSON answer, serialized |
//! | `POST /get` | B-get | user token (HS256), one primary-key `SELECT` (which also reads the token version) |
//! | `POST /page` | B-page | user token, one keyset `SELECT` of 20 (+1) rows |
//! | `POST /create` | B-create | user token, seal both fields (XChaCha20-Poly1305), one transaction: the authentication insert and its audit insert |
//! | `POST /instance` | B-instance | user token, one transaction started as a writer: the solution's latest definition, the two authentications (share-locked on PostgreSQL), the instance, its auth values, its config values, the audit insert |
//!
//! Settings (environment): `BASELINE_BIND`, `BASELINE_DATABASE_URL`,
//! `BASELINE_DATABASE_MAX_CONNECTIONS` (default: latchkey's), `BASELINE_JWT_SECRET` and
//! `BASELINE_ISSUER` (latchkey's secret and public URL, so latchkey's user tokens verify),
//! `BASELINE_ENCRYPTION_KEY` (32 bytes, base64).

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use chrono::{DateTime, SecondsFormat, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use latchkey_bench::{Db, env_or, env_required};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

const AUDIENCE: &str = "latchkey:user";
const KEY_ID: &str = "baseline00000000";
const PAGE_SIZE: i64 = 20;

struct App {
    db: Db,
    decoding: DecodingKey,
    validation: Validation,
    cipher: XChaCha20Poly1305,
}

#[derive(Deserialize)]
struct Claims {
    sub: Uuid,
    org: Uuid,
    ver: i64,
}

/// The caller a valid user token names.
struct Caller {
    org: Uuid,
    user: Uuid,
    version: i64,
}

/// Why a request failed; every kind answers a GraphQL `errors` array.
enum Failure {
    Unauthenticated,
    BadInput(String),
    Database(sqlx::Error),
}

impl From<sqlx::Error> for Failure {
    fn from(err: sqlx::Error) -> Self {
        Failure::Database(err)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Failure::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned()),
            Failure::BadInput(message) => (StatusCode::OK, message),
            Failure::Database(err) => {
                eprintln!("database error: {err}");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error".to_owned())
            }
        };
        (status, Json(json!({"errors": [{"message": message}]}))).into_response()
    }
}

type Answer = Result<Json<Value>, Failure>;

/// The part of a GraphQL request the baselines read: the query text is skipped.
#[derive(Deserialize)]
struct GraphQlRequest {
    #[serde(default)]
    variables: Value,
}

fn variables(body: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice::<GraphQlRequest>(body)
        .map(|request| request.variables)
        .map_err(|err| Failure::BadInput(format!("not a GraphQL request: {err}")))
}

fn text<'v>(value: &'v Value, name: &str) -> Result<&'v str, Failure> {
    value.get(name).and_then(Value::as_str).ok_or_else(|| Failure::BadInput(format!("{name} is required")))
}

fn id(value: &Value, name: &str) -> Result<Uuid, Failure> {
    Uuid::parse_str(text(value, name)?).map_err(|_| Failure::BadInput(format!("{name} is not an id")))
}

/// A `Json` input: an object as it is, or a string holding JSON text.
fn json_input(value: Option<&Value>) -> Result<Value, Failure> {
    match value {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::String(text)) => {
            serde_json::from_str(text).map_err(|_| Failure::BadInput("a Json string must hold JSON text".to_owned()))
        }
        Some(other) => Ok(other.clone()),
    }
}

impl App {
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, Failure> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(Failure::Unauthenticated)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| Failure::Unauthenticated)?;
        Ok(Caller { org: data.claims.org, user: data.claims.sub, version: data.claims.ver })
    }

    /// latchkey's envelope: version, key id, nonce, ciphertext, bound to the row and field.
    fn seal(&self, caller: &Caller, id: Uuid, field: &str, value: &Value) -> Vec<u8> {
        let nonce: [u8; 24] = random();
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(caller.org.as_bytes());
        aad.extend_from_slice(caller.user.as_bytes());
        aad.extend_from_slice(id.as_bytes());
        aad.extend_from_slice(field.as_bytes());
        let plaintext = value.to_string();
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext.as_bytes(), aad: &aad })
            .expect("sealing an in-memory value");
        let mut envelope = Vec::with_capacity(2 + KEY_ID.len() + nonce.len() + ciphertext.len());
        envelope.push(1);
        envelope.push(KEY_ID.len() as u8);
        envelope.extend_from_slice(KEY_ID.as_bytes());
        envelope.extend_from_slice(&nonce);
        envelope.extend_from_slice(&ciphertext);
        envelope
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the system's random source");
    bytes
}

/// The audit event of a user's write, inside its transaction.
macro_rules! audit {
    ($txn:ident, $caller:expr, $action:expr, $target:expr, $at:expr) => {
        sqlx::query(
            "INSERT INTO audit_events (id, org_id, actor_kind, actor_id, action, target_id, occurred_at) \
             VALUES ($1, $2, 'user', $3, $4, $5, $6)",
        )
        .bind(Uuid::now_v7())
        .bind($caller.org)
        .bind($caller.user)
        .bind($action)
        .bind($target)
        .bind($at)
        .execute(&mut *$txn)
        .await?
    };
}

/// B0: the trivial query's answer, with no token, no database.
async fn b0() -> Json<Value> {
    Json(json!({"data": {"viewer": {"details": {"name": "Bench Page User"}}}}))
}

/// B-get: `viewer { details { name } }` in one primary-key statement, which also reads
/// the token version so a revoked token is refused.
async fn get(State(app): State<Arc<App>>, headers: HeaderMap) -> Answer {
    let caller = app.caller(&headers)?;
    const SQL: &str = "SELECT name, token_version FROM external_users WHERE id = $1 AND org_id = $2";
    let row: Option<(String, i64)> = match &app.db {
        Db::Sqlite(pool) => sqlx::query_as(SQL).bind(caller.user).bind(caller.org).fetch_optional(pool).await?,
        Db::Postgres(pool) => sqlx::query_as(SQL).bind(caller.user).bind(caller.org).fetch_optional(pool).await?,
    };
    match row {
        Some((name, version)) if version == caller.version => {
            Ok(Json(json!({"data": {"viewer": {"details": {"name": name}}}})))
        }
        _ => Err(Failure::Unauthenticated),
    }
}

fn cursor(id: Uuid) -> String {
    STANDARD.encode(id.to_string())
}

/// B-page: `viewer { authentications(first: 20, after: $after) }`, one keyset statement.
async fn page(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Answer {
    let caller = app.caller(&headers)?;
    let variables = variables(&body)?;
    let after = match variables.get("after").and_then(Value::as_str) {
        None => None,
        Some(cursor) => Some(
            STANDARD
                .decode(cursor)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| Uuid::parse_str(&text).ok())
                .ok_or_else(|| Failure::BadInput("invalid cursor".to_owned()))?,
        ),
    };
    // The page size (and the one row more that tells whether a next page exists) is written
    // into the statement: SQLite re-prepares a statement whose bound LIMIT changed plans.
    const FIRST: &str = "SELECT id, name, scopes, created_at FROM authentications \
        WHERE org_id = $1 AND owner_user_id = $2 ORDER BY id LIMIT 21";
    const AFTER: &str = "SELECT id, name, scopes, created_at FROM authentications \
        WHERE org_id = $1 AND owner_user_id = $2 AND id > $3 ORDER BY id LIMIT 21";
    type Row = (Uuid, String, String, DateTime<Utc>);
    let sql = if after.is_some() { AFTER } else { FIRST };
    let mut rows: Vec<Row> = match &app.db {
        Db::Sqlite(pool) => {
            let query = sqlx::query_as(sql).bind(caller.org).bind(caller.user);
            let query = if let Some(after) = after { query.bind(after) } else { query };
            query.fetch_all(pool).await?
        }
        Db::Postgres(pool) => {
            let query = sqlx::query_as(sql).bind(caller.org).bind(caller.user);
            let query = if let Some(after) = after { query.bind(after) } else { query };
            query.fetch_all(pool).await?
        }
    };
    let has_next_page = rows.len() as i64 > PAGE_SIZE;
    rows.truncate(PAGE_SIZE as usize);
    let end_cursor = rows.last().map(|row| cursor(row.0));
    let edges: Vec<Value> = rows
        .into_iter()
        .map(|(id, name, scopes, created)| {
            let scopes: Value = serde_json::from_str(&scopes).unwrap_or_else(|_| json!([]));
            json!({
                "cursor": cursor(id),
                "node": {"id": id, "name": name, "scopes": scopes,
                         "created": created.to_rfc3339_opts(SecondsFormat::Millis, true)},
            })
        })
        .collect();
    Ok(Json(json!({"data": {"viewer": {"authentications": {
        "edges": edges,
        "pageInfo": {"hasNextPage": has_next_page, "endCursor": end_cursor},
    }}}})))
}

/// B-create: `createUserAuthentication`: seal, then the row and its audit event in one
/// transaction (`BEGIN IMMEDIATE` on SQLite, as latchkey's writes).
async fn create(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Answer {
    let caller = app.caller(&headers)?;
    let variables = variables(&body)?;
    let input = variables.get("input").ok_or_else(|| Failure::BadInput("input is required".to_owned()))?;
    let name = text(input, "name")?.trim().to_owned();
    let service_id = id(input, "serviceId")?;
    let environment_id = id(input, "serviceEnvironmentId")?;
    let credentials = json_input(input.get("data"))?;
    let user_data = json_input(input.get("formData"))?;
    let id = Uuid::now_v7();
    let sealed_credentials = app.seal(&caller, id, "credentials", &credentials);
    let sealed_user_data = app.seal(&caller, id, "user_data", &user_data);
    let now = Utc::now();
    const INSERT: &str = "INSERT INTO authentications (id, org_id, owner_user_id, service_id, environment_id, name, \
        scopes, hidden, custom_fields, credentials, user_data, key_id, created_at, updated_at) \
        VALUES ($1, $2, $3, $4, $5, $6, '[]', $7, '{}', $8, $9, $10, $11, $11)";
    macro_rules! write {
        ($txn:ident) => {{
            sqlx::query(INSERT)
                .bind(id)
                .bind(caller.org)
                .bind(caller.user)
                .bind(service_id)
                .bind(environment_id)
                .bind(&name)
                .bind(false)
                .bind(&sealed_credentials)
                .bind(&sealed_user_data)
                .bind(KEY_ID)
                .bind(now)
                .execute(&mut *$txn)
                .await?;
            audit!($txn, caller, "authentication.created", id, now);
            $txn.commit().await?;
        }};
    }
    match &app.db {
        Db::Sqlite(pool) => {
            let mut txn = pool.begin_with("BEGIN IMMEDIATE").await?;
            write!(txn)
        }
        Db::Postgres(pool) => {
            let mut txn = pool.begin().await?;
            write!(txn)
        }
    }
    Ok(Json(json!({"data": {"createUserAuthentication": {"authenticationId": id}}})))
}

/// A config value as the slot's type reads it (latchkey's `JsonText`): JSON text is that
/// value, any other text a plain string.
fn config_value(value: &Value) -> (Value, String) {
    match value {
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(parsed) => (parsed, text.clone()),
            Err(_) => (value.clone(), text.clone()),
        },
        other => (other.clone(), other.to_string()),
    }
}

fn fits(value_type: &str, value: &Value) -> bool {
    match value_type {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => true,
    }
}

/// B-instance: `createSolutionInstance` with its checks, in one transaction started as a
/// writer.
async fn instance(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Answer {
    let caller = app.caller(&headers)?;
    let variables = variables(&body)?;
    let input = variables.get("input").ok_or_else(|| Failure::BadInput("input is required".to_owned()))?;
    let solution_id = id(input, "solutionId")?;
    let name = text(input, "instanceName")?.trim().to_owned();
    let empty = Vec::new();
    let auth_values = input.get("authValues").and_then(Value::as_array).unwrap_or(&empty);
    let config_values = input.get("configValues").and_then(Value::as_array).unwrap_or(&empty);
    let mut auth: Vec<(String, Uuid)> = Vec::with_capacity(auth_values.len());
    for value in auth_values {
        auth.push((text(value, "externalId")?.to_owned(), id(value, "authId")?));
    }
    let instance_id = Uuid::now_v7();
    let now = Utc::now();

    const SOLUTION_SQLITE: &str = "SELECT s.latest_version, v.definition FROM solutions s \
        JOIN solution_versions v ON v.solution_id = s.id AND v.version = s.latest_version \
        WHERE s.id = $1 AND s.org_id = $2";
    const SOLUTION_POSTGRES: &str = "SELECT s.latest_version, v.definition FROM solutions s \
        JOIN solution_versions v ON v.solution_id = s.id AND v.version = s.latest_version \
        WHERE s.id = $1 AND s.org_id = $2 FOR SHARE OF s";
    const INSERT: &str = "INSERT INTO solution_instances (id, org_id, owner_user_id, solution_id, \
        solution_version, name, enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)";

    macro_rules! write {
        ($txn:ident, $solution_sql:expr, $lock:expr) => {{
            let solution: Option<(i32, String)> =
                sqlx::query_as($solution_sql).bind(solution_id).bind(caller.org).fetch_optional(&mut *$txn).await?;
            let (version, definition) = solution.ok_or_else(|| Failure::BadInput("solution not found".to_owned()))?;
            let definition: Value = serde_json::from_str(&definition)
                .map_err(|_| Failure::BadInput("unreadable solution definition".to_owned()))?;
            // The authentications, share-locked on PostgreSQL so they cannot go before this commits.
            let mut rows: HashMap<Uuid, (Uuid, Uuid)> = HashMap::new();
            if !auth.is_empty() {
                let mut auths = sqlx::QueryBuilder::new(
                    "SELECT id, service_id, environment_id FROM authentications WHERE org_id = ",
                );
                auths.push_bind(caller.org).push(" AND owner_user_id = ").push_bind(caller.user).push(" AND id IN (");
                let mut ids = auths.separated(", ");
                for (_, auth_id) in &auth {
                    ids.push_bind(*auth_id);
                }
                auths.push(")").push($lock);
                let found: Vec<(Uuid, Uuid, Uuid)> = auths.build_query_as().fetch_all(&mut *$txn).await?;
                rows.extend(found.into_iter().map(|(id, service, environment)| (id, (service, environment))));
            }
            let no_slots = Vec::new();
            let auth_slots = definition.get("authSlots").and_then(Value::as_array).unwrap_or(&no_slots);
            let config_slots = definition.get("configSlots").and_then(Value::as_array).unwrap_or(&no_slots);
            for (external_id, auth_id) in &auth {
                let slot = auth_slots
                    .iter()
                    .find(|slot| slot.get("externalId").and_then(Value::as_str) == Some(external_id))
                    .ok_or_else(|| Failure::BadInput(format!("unknown auth slot {external_id}")))?;
                let (service, environment) =
                    rows.get(auth_id).ok_or_else(|| Failure::BadInput("not your authentication".to_owned()))?;
                let slot_service = slot.get("serviceId").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
                let slot_environment =
                    slot.get("serviceEnvironmentId").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
                if slot_service != Some(*service) || slot_environment.is_some_and(|env| env != *environment) {
                    return Err(Failure::BadInput(format!("authentication does not fit slot {external_id}")));
                }
            }
            let mut config: Vec<(String, String)> = Vec::with_capacity(config_slots.len());
            for value in config_values {
                let external_id = text(value, "externalId")?;
                let slot = config_slots
                    .iter()
                    .find(|slot| slot.get("externalId").and_then(Value::as_str) == Some(external_id))
                    .ok_or_else(|| Failure::BadInput(format!("unknown config slot {external_id}")))?;
                let (parsed, stored) = config_value(value.get("value").unwrap_or(&Value::Null));
                if !fits(slot.get("valueType").and_then(Value::as_str).unwrap_or(""), &parsed) {
                    return Err(Failure::BadInput(format!("config value of {external_id} has the wrong type")));
                }
                config.push((external_id.to_owned(), stored));
            }
            for slot in config_slots {
                let external_id = slot.get("externalId").and_then(Value::as_str).unwrap_or("");
                if let Some(default) = slot.get("defaultValue").and_then(Value::as_str)
                    && !config.iter().any(|(id, _)| id == external_id)
                {
                    config.push((external_id.to_owned(), default.to_owned()));
                }
            }
            sqlx::query(INSERT)
                .bind(instance_id)
                .bind(caller.org)
                .bind(caller.user)
                .bind(solution_id)
                .bind(version)
                .bind(&name)
                .bind(false)
                .bind(now)
                .execute(&mut *$txn)
                .await?;
            if !auth.is_empty() {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO instance_auth_values (instance_id, external_id, authentication_id) ",
                );
                insert.push_values(&auth, |mut row, (external_id, auth_id)| {
                    row.push_bind(instance_id).push_bind(external_id.as_str()).push_bind(*auth_id);
                });
                insert.build().execute(&mut *$txn).await?;
            }
            if !config.is_empty() {
                let mut insert =
                    sqlx::QueryBuilder::new("INSERT INTO instance_config_values (instance_id, external_id, value) ");
                insert.push_values(&config, |mut row, (external_id, value)| {
                    row.push_bind(instance_id).push_bind(external_id.as_str()).push_bind(value.as_str());
                });
                insert.build().execute(&mut *$txn).await?;
            }
            audit!($txn, caller, "solution_instance.created", instance_id, now);
            $txn.commit().await?;
        }};
    }
    match &app.db {
        Db::Sqlite(pool) => {
            let mut txn = pool.begin_with("BEGIN IMMEDIATE").await?;
            write!(txn, SOLUTION_SQLITE, "")
        }
        Db::Postgres(pool) => {
            let mut txn = pool.begin().await?;
            write!(txn, SOLUTION_POSTGRES, " FOR SHARE")
        }
    }
    Ok(Json(json!({"data": {"createSolutionInstance": {"solutionInstance": {
        "id": instance_id, "name": name, "enabled": false,
    }}}})))
}

#[tokio::main]
async fn main() {
    let bind = env_or("BASELINE_BIND", "127.0.0.1:8081");
    let url = env_required("BASELINE_DATABASE_URL");
    let max = std::env::var("BASELINE_DATABASE_MAX_CONNECTIONS").ok().and_then(|n| n.parse().ok());
    let secret = env_required("BASELINE_JWT_SECRET");
    let issuer = env_required("BASELINE_ISSUER");
    let key = STANDARD.decode(env_required("BASELINE_ENCRYPTION_KEY")).expect("BASELINE_ENCRYPTION_KEY is base64");
    let cipher = XChaCha20Poly1305::new_from_slice(&key).expect("BASELINE_ENCRYPTION_KEY holds 32 bytes");

    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.leeway = 30;

    let db = Db::connect(&url, max).await.expect("the database opens");
    let app = Arc::new(App { db, decoding: DecodingKey::from_secret(secret.as_bytes()), validation, cipher });
    let router = Router::new()
        .route("/b0", post(b0))
        .route("/get", post(get))
        .route("/page", post(page))
        .route("/create", post(create))
        .route("/instance", post(instance))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&bind).await.expect("the address binds");
    eprintln!("baseline listening on {bind}");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .expect("the server runs");
}

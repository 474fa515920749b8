//! A real latchkey server per test, spoken to over HTTP as a partner backend would.
//!
//! By default each server gets its own SQLite file in a temporary data dir. With
//! `LATCHKEY_TEST_POSTGRES_URL` set (an admin URL such as
//! `postgres://postgres@127.0.0.1:5432/postgres`), each gets a fresh PostgreSQL database,
//! dropped when the test ends.

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use latchkey::{App, Config, auth::master_tokens, config::RawConfig, domain::orgs};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// Everything every test server logged, at every level, for the no-secrets-in-logs test.
pub fn captured_logs() -> String {
    let buffer = log_buffer().lock().expect("log buffer");
    String::from_utf8_lossy(&buffer).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

struct BufferWriter;

impl Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        log_buffer().lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logging() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ =
            tracing_subscriber::fmt().with_env_filter("trace").with_ansi(false).with_writer(|| BufferWriter).try_init();
    });
}

/// A PostgreSQL database made for one test and dropped after it.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    async fn create(admin_url: &str) -> (Self, String) {
        let name = format!("latchkey_test_{}", uuid::Uuid::new_v4().simple());
        let admin =
            Database::connect(admin_url).await.expect("PostgreSQL from LATCHKEY_TEST_POSTGRES_URL is reachable");
        admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await.expect("create test database");
        admin.close().await.ok();
        let (base, _) = admin_url.rsplit_once('/').expect("admin URL has a database path");
        (Self { admin_url: admin_url.to_owned(), name: name.clone() }, format!("{base}/{name}"))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime; a fresh one on its own thread does the I/O.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                if let Ok(admin) = Database::connect(&url).await {
                    let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

pub fn postgres_admin_url() -> Option<String> {
    std::env::var("LATCHKEY_TEST_POSTGRES_URL").ok().filter(|url| !url.is_empty())
}

/// The storage a test server runs on; kept alive for the server's life.
pub struct Storage {
    pub dir: TempDir,
    pub database_url: Option<String>,
    _pg: Option<PgDatabase>,
}

impl Storage {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary data dir");
        match postgres_admin_url() {
            Some(admin) => {
                let (pg, url) = PgDatabase::create(&admin).await;
                Self { dir, database_url: Some(url), _pg: Some(pg) }
            }
            None => Self { dir, database_url: None, _pg: None },
        }
    }

    pub fn config(&self, customize: impl FnOnce(&mut RawConfig)) -> Config {
        let mut raw = RawConfig {
            bind: Some("127.0.0.1:0".into()),
            data_dir: Some(self.dir.path().display().to_string()),
            database_url: self.database_url.clone(),
            log: Some("trace".into()),
            // Far above what any test sends; rate-limit tests set their own.
            rate_limit_per_second: Some("100000".into()),
            rate_limit_burst: Some("100000".into()),
            // The OAuth server and webhook receivers of the tests live on loopback.
            outbound_allow_private: Some("true".into()),
            ..RawConfig::default()
        };
        customize(&mut raw);
        Config::from_raw(raw).expect("valid test configuration")
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.is_none()
    }
}

pub struct TestServer {
    pub base: String,
    /// The default organization's master token (organization A).
    pub master: String,
    pub client: reqwest::Client,
    pub db: DatabaseConnection,
    pub storage: Storage,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        let storage = Storage::new().await;
        Self::start_on(storage, |_| {}).await
    }

    pub async fn start_on(storage: Storage, customize: impl FnOnce(&mut RawConfig)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(storage, listener, customize).await
    }

    /// A server whose `LATCHKEY_PUBLIC_URL` is its own address (`https://` where
    /// `customize` gives it a certificate), for pages that send a browser away and back
    /// (the OAuth callback). A public URL `customize` sets wins.
    pub async fn start_public(storage: Storage, customize: impl FnOnce(&mut RawConfig)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        Self::serve(storage, listener, |raw| {
            customize(raw);
            let scheme = if raw.tls_cert.is_some() { "https" } else { "http" };
            raw.public_url.get_or_insert_with(|| format!("{scheme}://{address}"));
        })
        .await
    }

    async fn serve(
        storage: Storage,
        listener: tokio::net::TcpListener,
        customize: impl FnOnce(&mut RawConfig),
    ) -> Self {
        init_logging();
        let config = storage.config(customize);
        let app = App::build(&config).await.expect("server starts");
        let master =
            app.bootstrap.as_ref().expect("a fresh database bootstraps").master_token.expose_secret().to_owned();
        let db = app.db().clone();
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}", listener.local_addr().expect("address"));
        let (shutdown, signal) = oneshot::channel::<()>();
        tokio::spawn(app.serve(listener, async move {
            let _ = signal.await;
        }));
        Self { base, master, client: reqwest::Client::new(), db, storage, shutdown: Some(shutdown) }
    }

    /// A server that serves HTTPS with a self-signed certificate for 127.0.0.1, and a
    /// client that trusts it.
    pub async fn start_https(customize: impl FnOnce(&mut RawConfig)) -> (Self, SelfSigned) {
        Self::https(false, customize).await
    }

    /// As `start_https`, with `LATCHKEY_PUBLIC_URL` its own `https://` address (the port
    /// it bound), as the OAuth callback needs.
    pub async fn start_https_public(customize: impl FnOnce(&mut RawConfig)) -> (Self, SelfSigned) {
        Self::https(true, customize).await
    }

    async fn https(public: bool, customize: impl FnOnce(&mut RawConfig)) -> (Self, SelfSigned) {
        let storage = Storage::new().await;
        let certificate = SelfSigned::write(storage.dir.path());
        let tls = |raw: &mut RawConfig| {
            raw.tls_cert = Some(certificate.cert_path.display().to_string());
            raw.tls_key = Some(certificate.key_path.display().to_string());
            customize(raw);
        };
        let mut server =
            if public { Self::start_public(storage, tls).await } else { Self::start_on(storage, tls).await };
        server.client = certificate.client(reqwest::Client::builder());
        (server, certificate)
    }

    /// A second organization with its own master token (organization B).
    pub async fn other_org(&self) -> String {
        let org = orgs::create(&self.db, &format!("org-{}", uuid::Uuid::new_v4().simple())).await.expect("org");
        let (_, token) = master_tokens::create(&self.db, org.id, "test").await.expect("token");
        token.expose_secret().to_owned()
    }

    /// The HTTP API at this server's address.
    pub fn api(&self) -> Api {
        Api { base: self.base.clone(), client: self.client.clone() }
    }

    /// POSTs a GraphQL request and returns the whole response body.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        self.api().graphql(token, query, variables).await
    }

    /// Runs an operation that must succeed and returns its `data`.
    pub async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        self.api().ok(token, query, variables).await
    }

    pub async fn create_user(&self, master: &str, external_id: &str) -> String {
        self.api().create_user(master, external_id).await
    }

    pub async fn user_token(&self, master: &str, user_id: &str) -> String {
        self.api().user_token(master, user_id).await
    }
}

impl TestServer {
    /// The organization a master token belongs to.
    pub async fn org_of(&self, master: &str) -> uuid::Uuid {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let hash = latchkey::crypto::sha256_hex(master.as_bytes());
        entity::master_token::Entity::find()
            .filter(entity::master_token::Column::TokenHash.eq(hash))
            .one(&self.db)
            .await
            .expect("query")
            .expect("a live master token")
            .org_id
    }

    /// Turns on full reads of authentications for the master token's organization, as
    /// the operator does with `latchkey org full-reads`.
    pub async fn enable_full_reads(&self, master: &str) {
        use sea_orm::{ActiveModelTrait, ActiveValue::Set};
        let org = self.org_of(master).await;
        entity::organization::ActiveModel { id: Set(org), full_reads_enabled: Set(true), ..Default::default() }
            .update(&self.db)
            .await
            .expect("enable full reads");
    }

    /// A fresh authorization code for `user`, as a partner backend gets one before it
    /// opens a hosted page.
    pub async fn authorization_code(&self, master: &str, user: &str) -> String {
        let data = self
            .ok(
                master,
                "mutation($u: ID!) { generateAuthorizationCode(input: {userId: $u}) { authorizationCode } }",
                json!({"u": user}),
            )
            .await;
        data["generateAuthorizationCode"]["authorizationCode"].as_str().expect("authorizationCode").to_owned()
    }

    /// The ids of a built-in service and its `Production` environment.
    pub async fn builtin_environment(&self, service: &str) -> (String, String) {
        let data = self
            .ok(
                &self.master,
                "query($s: String!) { serviceEnvironments(serviceName: $s, serviceVersion: \"1\") { id title serviceId } }",
                json!({"s": service}),
            )
            .await;
        let production = &data["serviceEnvironments"][0];
        assert_eq!(production["title"], "Production");
        (production["serviceId"].as_str().unwrap().to_owned(), production["id"].as_str().unwrap().to_owned())
    }

    /// Imports a Zendesk credential with `token` (user or master) and returns its id.
    pub async fn import_zendesk(&self, token: &str, environment: &str, name: &str) -> String {
        let (service, _) = self.builtin_environment("zendesk").await;
        let data = self
            .ok(
                token,
                "mutation($n: String!, $s: String!, $e: String!) { createUserAuthentication(input: {name: $n, serviceId: $s, serviceEnvironmentId: $e, data: {email: \"agent@acme.test\", api_token: \"zd-secret-token-0001\"}, formData: {subdomain: \"acme\"}}) { authenticationId } }",
                json!({"n": name, "s": service, "e": environment}),
            )
            .await;
        data["createUserAuthentication"]["authenticationId"].as_str().unwrap().to_owned()
    }

    pub async fn create_custom_service(&self, master: &str, name: &str) -> String {
        self.api().create_custom_service(master, name).await
    }

    /// Creates and publishes a solution with no slots; returns its id.
    pub async fn publish_solution(&self, master: &str, title: &str) -> String {
        let data = self
            .ok(master, "mutation($t: String!) { createSolution(input: {title: $t, workflows: [{name: \"Sync\"}]}) { solution { id } } }", json!({"t": title}))
            .await;
        let id = data["createSolution"]["solution"]["id"].as_str().unwrap().to_owned();
        self.ok(
            master,
            "mutation($id: ID!) { publishSolution(input: {solutionId: $id}) { solution { version } } }",
            json!({"id": id}),
        )
        .await;
        id
    }

    /// Creates a solution instance with a user token; returns its id.
    pub async fn create_instance(&self, user_token: &str, solution: &str, name: &str) -> String {
        let data = self
            .ok(
                user_token,
                "mutation($s: ID!, $n: String!) { createSolutionInstance(input: {solutionId: $s, instanceName: $n}) { solutionInstance { id } } }",
                json!({"s": solution, "n": name}),
            )
            .await;
        data["createSolutionInstance"]["solutionInstance"]["id"].as_str().unwrap().to_owned()
    }

    /// A REST call; returns the status and the JSON body (`null` when empty).
    pub async fn rest(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.api().rest(method, path, token, body).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A self-signed certificate for `127.0.0.1` and `localhost`, as PEM files.
pub struct SelfSigned {
    pub cert_pem: String,
    pub cert_path: std::path::PathBuf,
    pub key_path: std::path::PathBuf,
}

impl SelfSigned {
    pub fn write(dir: &std::path::Path) -> Self {
        let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("a self-signed certificate");
        let (cert_path, key_path) = (dir.join("tls-cert.pem"), dir.join("tls-key.pem"));
        std::fs::write(&cert_path, pair.cert.pem()).expect("write the certificate");
        std::fs::write(&key_path, pair.signing_key.serialize_pem()).expect("write the key");
        Self { cert_pem: pair.cert.pem(), cert_path, key_path }
    }

    /// `builder` finished with this certificate as its one trusted root.
    pub fn client(&self, builder: reqwest::ClientBuilder) -> reqwest::Client {
        let root = reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).expect("a PEM certificate");
        builder.tls_built_in_root_certs(false).add_root_certificate(root).build().expect("an HTTPS client")
    }
}

/// The `extensions.code` of the first error, or `None` when the request succeeded.
pub fn error_code(body: &Value) -> Option<String> {
    body.get("errors").map(|errors| errors[0]["extensions"]["code"].as_str().unwrap_or("<no code>").to_owned())
}

/// For tests that need a tool from outside Rust (Node, Chromium): `Some(())` when it is
/// there. Without it, a plain `cargo test` says which test it skipped and why; in CI
/// (`CI` set), where `.ci/run` installs every tool, a missing tool fails the test.
pub fn require_tool(test: &str, available: bool, why: &str) -> Option<()> {
    if available {
        return Some(());
    }
    assert!(std::env::var_os("CI").is_none(), "{test} needs {why}, and CI must provide it");
    eprintln!("SKIPPED {test}: needs {why}");
    None
}

/// The repository root, for scripts and fixtures beside the tests.
pub fn repo_path(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A latchkey's HTTP API at `base`: an in-process [`TestServer`] or a spawned process.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn at(base: &str) -> Self {
        Self { base: base.to_owned(), client: reqwest::Client::new() }
    }

    /// POSTs a GraphQL request and returns the whole response body.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request =
            self.client.post(format!("{}/graphql", self.base)).json(&json!({"query": query, "variables": variables}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("JSON body");
        // Under `application/json` a GraphQL request answers 200, whatever its errors,
        // except a refused or missing token, which answers 401.
        let expected = if error_code(&body).as_deref() == Some("UNAUTHENTICATED") { 401 } else { 200 };
        assert_eq!(status, expected, "HTTP status of {body}");
        body
    }

    /// Runs an operation that must succeed and returns its `data`.
    pub async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        let body = self.graphql(Some(token), query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// A REST call; returns the status and the JSON body (`null` when empty).
    pub async fn rest(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}/core/v1{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") })
    }

    pub async fn create_user(&self, master: &str, external_id: &str) -> String {
        let data = self
            .ok(
                master,
                "mutation($e: String!) { createExternalUser(input: {name: \"Test User\", externalUserId: $e}) { userId } }",
                json!({"e": external_id}),
            )
            .await;
        data["createExternalUser"]["userId"].as_str().expect("userId").to_owned()
    }

    pub async fn user_token(&self, master: &str, user_id: &str) -> String {
        let data = self
            .ok(master, "mutation($u: ID!) { authorize(input: {userId: $u}) { accessToken } }", json!({"u": user_id}))
            .await;
        data["authorize"]["accessToken"].as_str().expect("accessToken").to_owned()
    }

    pub async fn create_custom_service(&self, master: &str, name: &str) -> String {
        let data = self
            .ok(
                master,
                "mutation($n: String!) { createService(input: {name: $n, title: \"Acme CRM\"}) { service { id } } }",
                json!({"n": name}),
            )
            .await;
        data["createService"]["service"]["id"].as_str().unwrap().to_owned()
    }
}

/// The answer to a trivial query with `token` at `base` once it is refused, asking every
/// 10 ms for up to two seconds: for a revocation made by another process, which a server
/// hears through a PostgreSQL notification (milliseconds) or its one-second poll (SQLite).
pub async fn eventually_refused(base: &str, token: &str) -> Value {
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    loop {
        let answer: Value = client
            .post(format!("{base}/graphql"))
            .bearer_auth(token)
            .json(&serde_json::json!({"query": "{ viewer { details { name } } }"}))
            .send()
            .await
            .expect("an answer")
            .json()
            .await
            .expect("a JSON answer");
        if error_code(&answer).is_some() || started.elapsed() > std::time::Duration::from_secs(2) {
            return answer;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

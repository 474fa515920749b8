//! The real `latchkey` binary as a child process on a test's storage: for several replicas
//! on one database, signals and crashes. Every process is killed when dropped.

use std::{
    fs::File,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use latchkey::{App, crypto::EncryptionKey};
use secrecy::ExposeSecret;

use crate::support::Storage;

/// How long a process may take to answer `/readyz`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

const PUBLIC_URL: &str = "http://latchkey.test";

/// Storage shared by processes, with the secrets every one of them is given and the
/// default organization's master token.
pub struct Cluster {
    pub storage: Storage,
    pub master: String,
    encryption_key: String,
    jwt_secret: String,
}

impl Cluster {
    /// Fresh storage, migrated and bootstrapped in-process so the test holds the master
    /// token without reading any process's output.
    pub async fn new() -> Self {
        let storage = Storage::new().await;
        let encryption_key = EncryptionKey::generate().to_base64();
        let jwt_secret = latchkey::crypto::random_token("jwt_");
        let app = App::build(&storage.config(|raw| {
            raw.encryption_key = Some(encryption_key.clone().into());
            raw.jwt_secret = Some(jwt_secret.clone().into());
            raw.public_url = Some(PUBLIC_URL.into());
        }))
        .await
        .expect("the storage bootstraps");
        let master =
            app.bootstrap.as_ref().expect("a fresh database bootstraps").master_token.expose_secret().to_owned();
        app.db().clone().close().await.expect("close the bootstrap connection");
        Self { storage, master, encryption_key, jwt_secret }
    }

    /// A connection of the test's own to the storage's database, for what the API does not
    /// show (turning full reads on, looking at bookkeeping columns).
    pub async fn db(&self) -> sea_orm::DatabaseConnection {
        let url = match &self.storage.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.storage.dir.path().join("latchkey.db").display()),
        };
        sea_orm::Database::connect(url).await.expect("connect to the cluster's database")
    }

    /// Starts a `latchkey serve` on this storage and waits until it is ready.
    pub async fn start(&self, env: &[(&str, &str)]) -> Process {
        let port = free_port();
        let log = self.storage.dir.path().join(format!("process-{port}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        command
            .arg("serve")
            .env_clear()
            .env("LATCHKEY_BIND", format!("127.0.0.1:{port}"))
            .env("LATCHKEY_DATA_DIR", self.storage.dir.path())
            .env("LATCHKEY_ENCRYPTION_KEY", &self.encryption_key)
            .env("LATCHKEY_JWT_SECRET", &self.jwt_secret)
            // Replicas behind one address issue tokens every replica accepts.
            .env("LATCHKEY_PUBLIC_URL", PUBLIC_URL)
            .env("LATCHKEY_LOG", "info")
            // Load tests send many requests under one token; rate limits have tests of their own.
            .env("LATCHKEY_RATE_LIMIT_PER_SECOND", "0")
            .env("LATCHKEY_OUTBOUND_ALLOW_PRIVATE", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("process log file"));
        if let Some(url) = &self.storage.database_url {
            command.env("LATCHKEY_DATABASE_URL", url);
        }
        command.envs(env.iter().copied());
        let child = command.spawn().expect("spawn latchkey");
        let mut process = Process { child, base: format!("http://127.0.0.1:{port}"), log };
        process.wait_ready().await;
        process
    }
}

/// A port nobody listens on right now (the listener is closed before the process binds it).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("address").port()
}

pub struct Process {
    child: Child,
    pub base: String,
    log: PathBuf,
}

impl Process {
    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the process") {
                panic!("latchkey exited with {status} before it was ready:\n{}", self.output());
            }
            let ready = client.get(format!("{}/readyz", self.base)).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return;
            }
            assert!(started.elapsed() < START_TIMEOUT, "latchkey was not ready in time:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the process wrote to standard error so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (a name `kill` knows, such as `TERM` or `KILL`).
    pub fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the process") {
                return Some(status);
            }
            if started.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub fn crash(&mut self) {
        self.child.kill().expect("kill the process");
        self.child.wait().expect("reap the process");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

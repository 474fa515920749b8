//! Assembling the service: database, keys, bootstrap, schema, router; and serving it
//! with a graceful shutdown.

use std::{
    fs,
    future::Future,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm::DatabaseConnection;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;

use crate::{
    auth::{Authenticator, UserTokens},
    config::{Config, ConnectionLimits},
    crypto::{self, EncryptionKey, Keyring, KeyringHandle},
    db,
    domain::{
        catalog,
        installation::{self, Bootstrap},
    },
    graphql::{self, Limits, Services},
    http::{self, AppState},
    rate_limit::RateLimiter,
    server,
};

/// How long in-flight requests get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

const KEY_FILE: &str = "encryption.keys";
const JWT_SECRET_FILE: &str = "jwt.secret";

pub struct App {
    pub state: AppState,
    pub keyring: Arc<KeyringHandle>,
    /// Set on the very first start: the default organization and its master token.
    pub bootstrap: Option<Bootstrap>,
    connections: ConnectionLimits,
}

impl App {
    /// Connects, migrates, loads or generates the keys, checks them against the
    /// database, and bootstraps an empty database.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        ensure_private_dir(&config.data_dir)?;
        let db = db::connect(&config.database_url, config.database_kind).await?;
        db::migrate(&db).await?;

        let keyring = load_keyring(config)?;
        installation::verify_keyring(&db, &keyring).await?;
        let services = catalog::load_builtin(&db).await.context("cannot load the built-in service catalog")?;
        tracing::debug!(services, "built-in service catalog loaded");
        let jwt_secret = load_jwt_secret(config)?;
        let user_tokens = UserTokens::new(&jwt_secret, &config.public_url).context("invalid LATCHKEY_JWT_SECRET")?;

        let bootstrap =
            installation::bootstrap(&db).await.map_err(|err| anyhow::anyhow!("first-start setup failed: {err:?}"))?;
        let limits = Limits { introspection: config.introspection, ..Limits::default() };
        let followed_file = config.encryption_key.is_none().then(|| key_file(config));
        let keyring = Arc::new(KeyringHandle::new(keyring, followed_file));
        let state = state(db, user_tokens, keyring.clone(), &limits, RateLimiter::new(config.rate_limit));
        Ok(Self { state, keyring, bootstrap, connections: config.connections })
    }

    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish for up to
    /// [`SHUTDOWN_GRACE`].
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let router = self.router();
        server::serve(listener, router, self.connections, SHUTDOWN_GRACE, shutdown).await
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.state.db
    }
}

fn state(
    db: DatabaseConnection,
    user_tokens: UserTokens,
    keyring: Arc<KeyringHandle>,
    limits: &Limits,
    rate_limiter: RateLimiter,
) -> AppState {
    let authenticator = Authenticator::new(db.clone(), user_tokens.clone());
    let schema = graphql::build_schema(Services::new(db.clone(), user_tokens, keyring.clone()), limits);
    AppState {
        schema,
        authenticator,
        db,
        keyring,
        documents: Arc::new(limits.document.clone()),
        rate_limiter,
        graphiql: limits.introspection,
    }
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the data dir {} (LATCHKEY_DATA_DIR)", dir.display()))?;
    }
    Ok(())
}

/// Writes a new secret file readable by the owner only; never overwrites.
fn write_secret_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn read_secret_file(path: &Path) -> anyhow::Result<Option<SecretString>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned().into())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub fn key_file(config: &Config) -> PathBuf {
    config.data_dir.join(KEY_FILE)
}

/// The keyring from `LATCHKEY_ENCRYPTION_KEY`, else from the data dir's key file, else a
/// freshly generated key written to that file (with a warning).
fn load_keyring(config: &Config) -> anyhow::Result<Keyring> {
    if let Some(text) = &config.encryption_key {
        return Keyring::parse(text.expose_secret())
            .map_err(|err| anyhow::anyhow!("invalid LATCHKEY_ENCRYPTION_KEY: {err}"));
    }
    let path = key_file(config);
    if let Some(text) = read_secret_file(&path)? {
        return Keyring::parse(text.expose_secret())
            .map_err(|err| anyhow::anyhow!("invalid key file {}: {err}", path.display()));
    }
    let keyring = Keyring::from_keys(vec![EncryptionKey::generate()])?;
    write_secret_file(&path, &keyring.to_text())?;
    tracing::warn!(
        path = %path.display(),
        "generated a new encryption key in the data dir; production should supply LATCHKEY_ENCRYPTION_KEY from outside the data dir"
    );
    Ok(keyring)
}

/// The JWT signing secret from `LATCHKEY_JWT_SECRET`, else the data dir's file, else a
/// freshly generated one written there (with a warning).
fn load_jwt_secret(config: &Config) -> anyhow::Result<SecretString> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(secret.clone());
    }
    let path = config.data_dir.join(JWT_SECRET_FILE);
    if let Some(secret) = read_secret_file(&path)? {
        if secret.expose_secret().is_empty() {
            bail!("the JWT secret file {} is empty", path.display());
        }
        return Ok(secret);
    }
    let secret = URL_SAFE_NO_PAD.encode(crypto::random_bytes::<48>());
    write_secret_file(&path, &secret)?;
    tracing::warn!(
        path = %path.display(),
        "generated a new JWT signing secret in the data dir; production should supply LATCHKEY_JWT_SECRET from outside the data dir"
    );
    Ok(secret.into())
}

/// Where the encryption keys come from.
pub enum KeySource {
    /// `LATCHKEY_ENCRYPTION_KEY`: the operator manages the list.
    Environment,
    /// The data dir's key file, which `latchkey keys` rewrites.
    File(PathBuf),
}

pub fn key_source(config: &Config) -> KeySource {
    match config.encryption_key {
        Some(_) => KeySource::Environment,
        None => KeySource::File(key_file(config)),
    }
}

/// The keyring for an operator command: never generates a key.
pub fn existing_keyring(config: &Config) -> anyhow::Result<Keyring> {
    match key_source(config) {
        KeySource::Environment => load_keyring(config),
        KeySource::File(path) => {
            let text = read_secret_file(&path)?.with_context(|| format!("no key file at {}", path.display()))?;
            Keyring::parse(text.expose_secret())
                .map_err(|err| anyhow::anyhow!("invalid key file {}: {err}", path.display()))
        }
    }
}

/// Replaces the key file atomically: a private temporary file in the same directory,
/// synced, then renamed over the old one, so a crash leaves the old or the new file whole.
pub fn write_key_file(path: &Path, keyring: &Keyring) -> anyhow::Result<()> {
    let temporary = path.with_extension("keys.new");
    let _ = fs::remove_file(&temporary);
    write_secret_file(&temporary, &keyring.to_text())?;
    fs::rename(&temporary, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir).and_then(|dir| dir.sync_all()).ok();
    }
    Ok(())
}

/// Takes an exclusive lock beside the key file for as long as the returned file is kept,
/// or fails at once when another `latchkey keys` command holds it. Two rotations racing
/// would each write the file with their own new key, and the last rename would drop the
/// key the other one re-sealed rows under. The lock is advisory and released by the
/// operating system when the process ends, so a killed command never leaves it stale.
pub fn lock_key_file(path: &Path) -> anyhow::Result<fs::File> {
    let lock_path = path.with_extension("keys.lock");
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => {
            bail!("another `latchkey keys` command is running on {}; wait for it to finish", path.display())
        }
        Err(fs::TryLockError::Error(err)) => Err(err).with_context(|| format!("cannot lock {}", lock_path.display())),
    }
}

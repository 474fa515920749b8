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
        idempotency::Fingerprinter,
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
pub const INITIAL_MASTER_TOKEN_FILE: &str = "initial-master-token";

pub struct App {
    pub state: AppState,
    pub keyring: Arc<KeyringHandle>,
    /// Set on the very first start: the default organization and its master token.
    pub bootstrap: Option<Bootstrap>,
    connections: ConnectionLimits,
}

impl App {
    /// Loads or generates the keys and the JWT secret, connects, migrates, checks the keys
    /// against the database, and bootstraps an empty database.
    ///
    /// Generated secrets stay in memory until every check has passed, and their files are
    /// removed again when the last step fails: a refused start leaves nothing behind
    /// that the next start would pick up as if it belonged to this database.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        ensure_private_dir(&config.data_dir)?;
        let (keyring, new_key_file) = load_keyring(config)?;
        let ((user_tokens, fingerprinter), new_jwt_file) = load_user_tokens(config)?;
        let db = db::connect(config).await?;
        db::migrate(&db).await?;
        installation::check_keyring(&db, &keyring).await?;
        let services = catalog::load_builtin(&db).await.context("cannot load the built-in service catalog")?;
        tracing::debug!(services, "built-in service catalog loaded");

        let mut written = WrittenFiles::default();
        for file in [new_key_file, new_jwt_file].into_iter().flatten() {
            if let Err(err) = written.write(&file) {
                written.remove_all();
                return Err(err);
            }
        }
        let bootstrap = match installation::initialise(&db, &keyring).await {
            Ok(bootstrap) => bootstrap,
            Err(err) => {
                written.remove_all();
                return Err(anyhow::anyhow!("first-start setup failed: {err:?}"));
            }
        };
        let limits = Limits { introspection: config.introspection, ..Limits::default() };
        let followed_file = config.encryption_key.is_none().then(|| key_file(config));
        let keyring = Arc::new(KeyringHandle::new(keyring, followed_file));
        let state = state(
            db,
            user_tokens,
            keyring.clone(),
            fingerprinter,
            &limits,
            RateLimiter::new(config.rate_limit),
            Arc::new(crate::pages::PagesConfig::new(&config.public_url)),
        );
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
        &self.state.unscoped_db
    }
}

fn state(
    db: DatabaseConnection,
    user_tokens: UserTokens,
    keyring: Arc<KeyringHandle>,
    fingerprinter: Fingerprinter,
    limits: &Limits,
    rate_limiter: RateLimiter,
    pages: Arc<crate::pages::PagesConfig>,
) -> AppState {
    let authenticator = Authenticator::new(db.clone(), user_tokens.clone());
    let schema = graphql::build_schema(Services::new(db.clone(), user_tokens, keyring.clone()), limits);
    AppState {
        schema,
        authenticator,
        unscoped_db: db,
        keyring,
        fingerprinter,
        documents: Arc::new(limits.document.clone()),
        rate_limiter,
        graphiql: limits.introspection,
        pages,
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

/// Creates the data dir (owner only) unless it exists. Every command calls this before
/// opening the database, whose SQLite file lives there by default.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the data dir {} (LATCHKEY_DATA_DIR)", dir.display()))?;
    }
    Ok(())
}

/// Makes every file the process creates from now on private to its owner (0600, and 0700
/// for directories): the SQLite database, its -wal and -shm files, and anything else in
/// the data dir, whatever the permissions of the data dir itself.
pub fn use_private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// A secret generated by this start, not yet on disk.
struct NewSecretFile {
    path: PathBuf,
    contents: SecretString,
}

/// The files this start wrote, to remove again when a later step refuses the start.
#[derive(Default)]
struct WrittenFiles(Vec<PathBuf>);

impl WrittenFiles {
    fn write(&mut self, file: &NewSecretFile) -> anyhow::Result<()> {
        write_secret_file(&file.path, file.contents.expose_secret())?;
        self.0.push(file.path.clone());
        Ok(())
    }

    fn remove_all(self) {
        for path in self.0 {
            if let Err(err) = fs::remove_file(&path) {
                tracing::error!(path = %path.display(), %err, "cannot remove a secret file this refused start generated");
            }
        }
    }
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
/// freshly generated key, with the file to write it to once the start is sure to succeed.
fn load_keyring(config: &Config) -> anyhow::Result<(Keyring, Option<NewSecretFile>)> {
    if let Some(text) = &config.encryption_key {
        let keyring = Keyring::parse(text.expose_secret())
            .map_err(|err| anyhow::anyhow!("invalid LATCHKEY_ENCRYPTION_KEY: {err}"))?;
        return Ok((keyring, None));
    }
    let path = key_file(config);
    if let Some(text) = read_secret_file(&path)? {
        let keyring = Keyring::parse(text.expose_secret())
            .map_err(|err| anyhow::anyhow!("invalid key file {}: {err}", path.display()))?;
        return Ok((keyring, None));
    }
    let keyring = Keyring::from_keys(vec![EncryptionKey::generate()])?;
    tracing::warn!(
        path = %path.display(),
        "generating a new encryption key in the data dir; production should supply LATCHKEY_ENCRYPTION_KEY from outside the data dir"
    );
    let contents = keyring.to_text().into();
    Ok((keyring, Some(NewSecretFile { path, contents })))
}

/// The user-token signer, keyed by `LATCHKEY_JWT_SECRET`, else by the data dir's secret
/// file, else by a freshly generated secret, with the file to write it to once the start
/// is sure to succeed. A weak secret is refused, naming where it came from.
///
/// Replicas share the JWT secret, so the idempotency fingerprints it keys agree among them.
fn load_user_tokens(config: &Config) -> anyhow::Result<((UserTokens, Fingerprinter), Option<NewSecretFile>)> {
    let signer = |secret: &SecretString, source: &dyn std::fmt::Display| {
        let tokens =
            UserTokens::new(secret, &config.public_url).map_err(|err| anyhow::anyhow!("invalid {source}: {err}"))?;
        anyhow::Ok((tokens, Fingerprinter::derive(secret.expose_secret().as_bytes())))
    };
    if let Some(secret) = &config.jwt_secret {
        return Ok((signer(secret, &"LATCHKEY_JWT_SECRET")?, None));
    }
    let path = config.data_dir.join(JWT_SECRET_FILE);
    if let Some(secret) = read_secret_file(&path)? {
        return Ok((signer(&secret, &format!("JWT secret file {}", path.display()))?, None));
    }
    let secret: SecretString = URL_SAFE_NO_PAD.encode(crypto::random_bytes::<48>()).into();
    tracing::warn!(
        path = %path.display(),
        "generating a new JWT signing secret in the data dir; production should supply LATCHKEY_JWT_SECRET from outside the data dir"
    );
    let tokens = signer(&secret, &"generated JWT secret")?;
    Ok((tokens, Some(NewSecretFile { path, contents: secret })))
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
        KeySource::Environment => Ok(load_keyring(config)?.0),
        KeySource::File(path) => {
            let text = read_secret_file(&path)?.with_context(|| format!("no key file at {}", path.display()))?;
            Keyring::parse(text.expose_secret())
                .map_err(|err| anyhow::anyhow!("invalid key file {}: {err}", path.display()))
        }
    }
}

/// Replaces the key file atomically (see [`replace_secret_file`]).
pub fn write_key_file(path: &Path, keyring: &Keyring) -> anyhow::Result<()> {
    replace_secret_file(path, &keyring.to_text())
}

/// Writes the first master token to the data dir's `initial-master-token` (owner only)
/// and returns the file's path. A file left by an earlier installation whose database
/// is gone is replaced: its token opens nothing any more.
pub fn save_initial_master_token(data_dir: &Path, token: &SecretString) -> anyhow::Result<PathBuf> {
    let path = data_dir.join(INITIAL_MASTER_TOKEN_FILE);
    replace_secret_file(&path, &format!("{}\n", token.expose_secret()))?;
    Ok(path)
}

/// Replaces a secret file atomically: a private temporary file in the same directory,
/// synced, then renamed over the old one, so a crash leaves the old or the new file whole.
fn replace_secret_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    let _ = fs::remove_file(&temporary);
    write_secret_file(&temporary, contents)?;
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

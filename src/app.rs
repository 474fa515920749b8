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

use anyhow::Context as _;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm::DatabaseConnection;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;

use crate::{
    auth::{Authenticator, Revocations, UserTokens},
    config::{Config, ConnectionLimits, DatabaseKind},
    crypto::{self, KeyringHandle},
    db,
    domain::{
        catalog,
        idempotency::Fingerprinter,
        installation::{self, Bootstrap},
        refresh::Refresher,
    },
    graphql::{self, Limits, Services},
    http::{self, AppState},
    keys,
    rate_limit::RateLimiter,
    server,
    workers::{
        Workers,
        webhooks::{WebhookSettings, WebhookWorker},
    },
};

/// How long in-flight requests get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

const JWT_SECRET_FILE: &str = "jwt.secret";
pub const INITIAL_MASTER_TOKEN_FILE: &str = "initial-master-token";

pub struct App {
    pub state: AppState,
    pub keyring: Arc<KeyringHandle>,
    /// Set on the very first start: the default organization and its master token.
    pub bootstrap: Option<Bootstrap>,
    connections: ConnectionLimits,
    tls: Option<crate::tls::Tls>,
    webhooks: WebhookSettings,
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
        let (keyring, new_key_file) = keys::files::load_keyring(config)?;
        let ((user_tokens, fingerprinter), new_jwt_file) = load_user_tokens(config)?;
        let db = db::connect(config).await?;
        db::migrate(&db).await?;
        keys::fingerprint::check_keyring(&db, &keyring).await?;
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
        let followed_file = config.encryption_key.is_none().then(|| keys::files::key_file(config));
        let keyring = Arc::new(KeyringHandle::new(keyring, followed_file));
        let state = state(db, user_tokens, keyring.clone(), fingerprinter, &limits, config);
        Ok(Self {
            state,
            keyring,
            bootstrap,
            connections: config.connections,
            tls: config.tls.clone(),
            webhooks: config.webhooks.clone(),
        })
    }

    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    /// Serves (HTTPS when the configuration has a certificate), with the background
    /// workers beside, until `shutdown` resolves; then lets in-flight requests and the
    /// workers' work in hand finish for up to [`SHUTDOWN_GRACE`].
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let router = self.router();
        let (mut workers, stop) = Workers::new();
        workers.spawn(
            WebhookWorker {
                db: self.state.unscoped_db.clone(),
                keyring: self.keyring.clone(),
                outbound: self.state.outbound.clone(),
                settings: self.webhooks,
            }
            .run(stop.clone()),
        );
        if let Some(interval) = self.state.refresher.interval() {
            workers.spawn(crate::workers::refresh::run(self.state.refresher.clone(), interval, stop));
        }
        let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            let _ = stopping.send(());
        };
        let stop_workers = async move {
            let _ = stopped.await;
            workers.stop(SHUTDOWN_GRACE).await;
        };
        let tls = self.tls.as_ref().map(crate::tls::Tls::acceptor);
        let (served, ()) = tokio::join!(
            server::serve(listener, router, self.connections, tls, SHUTDOWN_GRACE, shutdown),
            stop_workers
        );
        served
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
    config: &Config,
) -> AppState {
    let revocations = Revocations::new();
    let listen_url = (config.database_kind == DatabaseKind::Postgres).then(|| config.database_url.clone());
    revocations.watch(db.clone(), listen_url);
    let authenticator = Authenticator::new(db.clone(), user_tokens.clone(), revocations.clone());
    let outbound = crate::outbound::Outbound::new(config.outbound);
    let refresher = Refresher::new(db.clone(), keyring.clone(), outbound.clone(), config.refresh);
    let services =
        Services::new(db.clone(), user_tokens, keyring.clone(), revocations, outbound.clone(), refresher.clone());
    let schema = graphql::build_schema(services, limits);
    AppState {
        schema,
        authenticator,
        unscoped_db: db,
        keyring,
        fingerprinter,
        documents: Arc::new(limits.document.clone()),
        rate_limiter: RateLimiter::new(config.rate_limit),
        graphiql: limits.introspection,
        pages: Arc::new(crate::pages::PagesConfig::new(&config.public_url)),
        outbound,
        refresher,
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

/// A migrated database for an operator command.
pub async fn operator_db(config: &Config) -> anyhow::Result<DatabaseConnection> {
    ensure_private_dir(&config.data_dir)?;
    let db = db::connect(config).await?;
    db::migrate(&db).await?;
    Ok(db)
}

/// Makes every file the process creates from now on private to its owner (0600, and 0700
/// for directories): the SQLite database, its -wal and -shm files, and anything else in
/// the data dir, whatever the permissions of the data dir itself.
pub fn use_private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// A secret generated by this start, not yet on disk.
pub(crate) struct NewSecretFile {
    pub(crate) path: PathBuf,
    pub(crate) contents: SecretString,
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

pub(crate) fn read_secret_file(path: &Path) -> anyhow::Result<Option<SecretString>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned().into())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
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
pub(crate) fn replace_secret_file(path: &Path, contents: &str) -> anyhow::Result<()> {
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

//! The `latchkey` command: serve (the default), migrate, and operator tasks.

use std::{io::IsTerminal, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use latchkey::{
    App, Config, app,
    auth::master_tokens,
    config::RawConfig,
    domain::{audit, installation::DEFAULT_ORG_NAME, orgs},
    ids::{MasterTokenId, OrgId},
    keys,
};
use sea_orm::DatabaseConnection;
use secrecy::{ExposeSecret, SecretString};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "latchkey", version, about = "Holds end users' third-party authentications for embedded integrations")]
struct Cli {
    #[command(flatten)]
    options: Options,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Every option also reads its `LATCHKEY_*` variable; a flag wins over the variable.
#[derive(Args)]
struct Options {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "LATCHKEY_BIND", global = true)]
    bind: Option<String>,
    /// Directory for the embedded database and generated keys [default: ./latchkey-data]
    #[arg(long, env = "LATCHKEY_DATA_DIR", global = true)]
    data_dir: Option<String>,
    /// sqlite: or postgres:// URL [default: SQLite file in the data dir]
    #[arg(long, env = "LATCHKEY_DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// Public base URL of this service [default: http://<bind>, https://<bind> with TLS]
    #[arg(long, env = "LATCHKEY_PUBLIC_URL", global = true)]
    public_url: Option<String>,
    /// Encryption keys, base64, comma-separated, active key first [default: generated in the data dir]
    #[arg(long, env = "LATCHKEY_ENCRYPTION_KEY", global = true, hide_env_values = true)]
    encryption_key: Option<String>,
    /// Secret that signs user tokens, at least 32 bytes [default: generated in the data dir]
    #[arg(long, env = "LATCHKEY_JWT_SECRET", global = true, hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Log filter, e.g. `info` or `latchkey=debug` [default: info]
    #[arg(long, env = "LATCHKEY_LOG", global = true)]
    log: Option<String>,
    /// Allow GraphQL introspection and field suggestions (true/false) [default: true]
    #[arg(long, env = "LATCHKEY_INTROSPECTION", global = true)]
    introspection: Option<String>,
    /// Most database connections per process; requests beyond wait for one [default: 8 on SQLite, 16 on PostgreSQL]
    #[arg(long, env = "LATCHKEY_DATABASE_MAX_CONNECTIONS", global = true)]
    database_max_connections: Option<String>,
    /// Requests per second per token (per client address without one); 0 turns limits off [default: 30]
    #[arg(long, env = "LATCHKEY_RATE_LIMIT_PER_SECOND", global = true)]
    rate_limit_per_second: Option<String>,
    /// Requests a caller may send at once before the per-second rate applies [default: 50]
    #[arg(long, env = "LATCHKEY_RATE_LIMIT_BURST", global = true)]
    rate_limit_burst: Option<String>,
    /// Connections served at once; more wait until one closes [default: 512]
    #[arg(long, env = "LATCHKEY_MAX_CONNECTIONS", global = true)]
    max_connections: Option<String>,
    /// Seconds a client may take to send request headers; idle connections close after it [default: 30]
    #[arg(long, env = "LATCHKEY_HEADER_TIMEOUT", global = true)]
    header_timeout: Option<String>,
    /// Let calls to token URLs and webhook endpoints reach loopback, private and link-local
    /// addresses (for tests and private networks) [default: false]
    #[arg(long, env = "LATCHKEY_OUTBOUND_ALLOW_PRIVATE", global = true)]
    outbound_allow_private: Option<String>,
    /// Seconds between passes of the background refresh job on this process; 0 turns it
    /// off (credentials are then refreshed only when read or forced) [default: 60]
    #[arg(long, env = "LATCHKEY_REFRESH_INTERVAL", global = true)]
    refresh_interval: Option<String>,
    /// Seconds before its expiry an OAuth access token is refreshed (at most half its
    /// lifetime) [default: 300]
    #[arg(long, env = "LATCHKEY_REFRESH_BEFORE", global = true)]
    refresh_before: Option<String>,
    /// Days after which an unused refresh token is used anyway, before the provider lets
    /// it lapse [default: 30]
    #[arg(long, env = "LATCHKEY_REFRESH_IDLE_DAYS", global = true)]
    refresh_idle_days: Option<String>,
    /// Seconds before the first retry of a refresh that failed transiently; doubles per
    /// attempt, up to an hour, with jitter [default: 30]
    #[arg(long, env = "LATCHKEY_REFRESH_BACKOFF", global = true)]
    refresh_backoff: Option<String>,
    /// Seconds one process's claim on a refresh lasts; at least 20 [default: 60]
    #[arg(long, env = "LATCHKEY_REFRESH_LEASE", global = true)]
    refresh_lease: Option<String>,
    /// PEM file with the certificate chain (server certificate first); with
    /// LATCHKEY_TLS_KEY, latchkey serves HTTPS itself [default: plain HTTP]
    #[arg(long, env = "LATCHKEY_TLS_CERT", global = true)]
    tls_cert: Option<String>,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1)
    #[arg(long, env = "LATCHKEY_TLS_KEY", global = true)]
    tls_key: Option<String>,
    /// Waits between webhook delivery attempts, comma-separated with units (ms, s, m, h);
    /// a delivery is given up after the last [default: 10s,1m,10m,30m,1h,2h,4h,8h,8h]
    #[arg(long, env = "LATCHKEY_WEBHOOK_RETRY_SCHEDULE", global = true)]
    webhook_retry_schedule: Option<String>,
    /// Days before an authentication's hard expiry that `authentication.expiring` is sent [default: 7]
    #[arg(long, env = "LATCHKEY_WEBHOOK_EXPIRING_DAYS", global = true)]
    webhook_expiring_days: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default)
    Serve,
    /// Apply database migrations and exit
    Migrate,
    /// Manage organizations
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage master tokens
    #[command(subcommand, name = "master-token")]
    MasterToken(MasterTokenCommand),
    /// Manage encryption keys: list, rotate, retire
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the GraphQL schema (SDL)
    Schema,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List the keys of the ring, the active one first, with how many rows each seals
    ///
    /// Key ids that rows are sealed under but that are missing from the ring are listed
    /// too, marked MISSING: those rows cannot be opened until the key is supplied again.
    List,
    /// Re-seal every stored secret under a new active key, online
    ///
    /// Keys in the data dir's key file (no LATCHKEY_ENCRYPTION_KEY):
    ///   generates a new key, writes the file as NEW followed by the old keys (atomically,
    ///   before any row changes), then re-seals every row in batches. Running servers on
    ///   this data dir pick the new file up by themselves. Then `latchkey keys retire OLD_ID`
    ///   drops the old key from the file once nothing uses it.
    ///
    /// Keys in LATCHKEY_ENCRYPTION_KEY (the first key is the active one):
    ///   nothing is generated; every row is re-sealed under the first key given. With
    ///   several replicas, rotate like this:
    ///     1. generate a key (`openssl rand -base64 32`) and deploy `NEW,OLD` to every
    ///        replica; from then on they seal with NEW and still open OLD;
    ///     2. run `latchkey keys rotate` with LATCHKEY_ENCRYPTION_KEY=NEW,OLD;
    ///     3. run `latchkey keys retire OLD_ID` (ids are shown by `latchkey keys list`);
    ///     4. deploy `NEW` alone.
    ///   Never deploy `OLD,NEW`: replicas would keep sealing with OLD.
    ///
    /// Each batch is one transaction, and a row a server changes meanwhile is never
    /// overwritten. It is safe to kill at any moment: every row stays readable with the
    /// key ring, and running the command again finishes the work.
    #[command(verbatim_doc_comment)]
    Rotate {
        /// Rows re-sealed per transaction
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
        batch: u64,
        /// Finish an interrupted rotation under the current active key instead of
        /// generating another one (key file only; with LATCHKEY_ENCRYPTION_KEY nothing is
        /// ever generated)
        #[arg(long)]
        resume: bool,
    },
    /// Drop a key that no row uses any more
    ///
    /// Refused for the active key and while any row is still sealed under the key. With
    /// the key file, the key is also removed from the file; with LATCHKEY_ENCRYPTION_KEY,
    /// remove it from the variable yourself on every replica afterwards.
    Retire { key_id: String },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organization and print its first master token
    Create { name: String },
    /// List organizations
    List,
    /// Allow (on) or forbid (off) end users to read their own credentials back
    FullReads {
        /// Organization id or name
        org: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

#[derive(Subcommand)]
enum MasterTokenCommand {
    /// Mint a new master token (printed once)
    Create {
        /// Organization id or name
        #[arg(long, default_value = DEFAULT_ORG_NAME)]
        org: String,
        #[arg(long, default_value = "cli")]
        label: String,
    },
    /// List master tokens (never their secrets)
    List {
        /// Organization id or name
        #[arg(long, default_value = DEFAULT_ORG_NAME)]
        org: String,
    },
    /// Revoke a master token by id
    Revoke { id: String },
}

impl Options {
    fn into_config(self) -> Result<Config, latchkey::config::ConfigError> {
        Config::from_raw(RawConfig {
            bind: self.bind,
            data_dir: self.data_dir,
            database_url: self.database_url,
            public_url: self.public_url,
            encryption_key: self.encryption_key.map(SecretString::from),
            jwt_secret: self.jwt_secret.map(SecretString::from),
            log: self.log,
            introspection: self.introspection,
            database_max_connections: self.database_max_connections,
            rate_limit_per_second: self.rate_limit_per_second,
            rate_limit_burst: self.rate_limit_burst,
            max_connections: self.max_connections,
            header_timeout: self.header_timeout,
            outbound_allow_private: self.outbound_allow_private,
            refresh_interval: self.refresh_interval,
            refresh_before: self.refresh_before,
            refresh_idle_days: self.refresh_idle_days,
            refresh_backoff: self.refresh_backoff,
            refresh_lease: self.refresh_lease,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            webhook_retry_schedule: self.webhook_retry_schedule,
            webhook_expiring_days: self.webhook_expiring_days,
        })
    }
}

/// Log lines queued for the writer thread before a logger waits for it.
const LOG_QUEUE_LINES: usize = 8192;

fn main() -> ExitCode {
    app::use_private_umask();
    let cli = Cli::parse();
    let config = match cli.options.into_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("latchkey: {err}");
            return ExitCode::from(2);
        }
    };
    // Lines are written by a thread of their own, buffered while more are queued and
    // flushed as soon as none are: a request never waits on a write to stderr. Nothing is
    // dropped (a full queue makes loggers wait), and the guard flushes what is left at exit.
    // The queue's slots are allocated up front, so it is kept short.
    let (writer, _flush_at_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("latchkey-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(&config.log))
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("latchkey: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("latchkey: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config).await,
        Command::Schema => {
            print!("{}", latchkey::graphql::sdl());
            Ok(())
        }
        Command::Migrate => {
            app::operator_db(&config).await?;
            eprintln!("latchkey: the database is up to date");
            Ok(())
        }
        Command::Org(command) => org(command, &app::operator_db(&config).await?).await,
        Command::MasterToken(command) => master_token(command, &app::operator_db(&config).await?).await,
        Command::Keys(KeysCommand::List) => keys::commands::list(&config).await,
        Command::Keys(KeysCommand::Rotate { batch, resume }) => keys::commands::rotate(&config, batch, resume).await,
        Command::Keys(KeysCommand::Retire { key_id }) => keys::commands::retire(&config, &key_id).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Bound before anything is created: a start that cannot serve must not mint the
    // master token that is shown only once.
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {} (LATCHKEY_BIND)", config.bind))?;
    let app = App::build(&config).await?;
    if let Some(bootstrap) = &app.bootstrap {
        hand_over_initial_token(&bootstrap.org.name, &bootstrap.master_token, &config)?;
    }
    tracing::info!(address = %config.bind, database = ?config.database_kind, "latchkey is serving at {}/graphql", config.public_url);
    if config.introspection {
        tracing::info!("GraphiQL at {}/graphql (turned off with LATCHKEY_INTROSPECTION=false)", config.public_url);
    }
    app.serve(listener, latchkey::app::shutdown_signal()).await
}

/// Gives the operator the first master token. On a terminal it is shown once; anywhere
/// else standard error is a log stream (systemd, Docker, Kubernetes) that others read and
/// keep, so the token goes to a private file in the data dir and only its path is logged.
fn hand_over_initial_token(org_name: &str, token: &SecretString, config: &Config) -> anyhow::Result<()> {
    let what = format!("created the default organization {org_name:?}");
    if std::io::stderr().is_terminal() {
        print_new_token(&what, token, config);
        return Ok(());
    }
    let path = app::save_initial_master_token(&config.data_dir, token).context(
        "cannot save the first master token (the default organization exists); mint one with `latchkey master-token create`",
    )?;
    tracing::warn!(
        path = %path.display(),
        "{what}; its master token is in this file (owner only). Read it, store it safely, then delete the file"
    );
    Ok(())
}

/// Shows a master token once, on standard error, with a hint on how to use it.
fn print_new_token(what: &str, token: &SecretString, config: &Config) {
    eprintln!(
        "\nlatchkey: {what}. Its master token, shown only this once:\n\n    {}\n\n\
         Send it as `Authorization: Bearer <token>` to {}/graphql (e.g. with the README's curl quickstart).\n",
        token.expose_secret(),
        config.public_url
    );
}

async fn find_org(db: &DatabaseConnection, id_or_name: &str) -> anyhow::Result<orgs::Organization> {
    let all = orgs::list(db).await?;
    let wanted = OrgId::parse(id_or_name).ok();
    all.into_iter()
        .find(|org| Some(org.id) == wanted || org.name == id_or_name)
        .with_context(|| format!("no organization {id_or_name:?}"))
}

async fn org(command: OrgCommand, db: &DatabaseConnection) -> anyhow::Result<()> {
    match command {
        OrgCommand::Create { name } => {
            let (org, secret) = orgs::create_with_master_token(db, &name, "initial").await?;
            println!("{}\t{}", org.id, org.name);
            eprintln!(
                "latchkey: organization {:?} created. Its master token, shown only this once:\n\n    {}\n",
                org.name,
                secret.expose_secret()
            );
        }
        OrgCommand::FullReads { org, state } => {
            let org = find_org(db, &org).await?;
            let org = orgs::set_full_reads(db, org.id, state == "on").await?;
            eprintln!(
                "latchkey: full reads for {:?} are {}",
                org.name,
                if org.full_reads_enabled { "on" } else { "off" }
            );
        }
        OrgCommand::List => {
            for org in orgs::list(db).await? {
                println!("{}\t{}\tfull reads {}", org.id, org.name, if org.full_reads_enabled { "on" } else { "off" });
            }
        }
    }
    Ok(())
}

async fn master_token(command: MasterTokenCommand, db: &DatabaseConnection) -> anyhow::Result<()> {
    match command {
        MasterTokenCommand::Create { org, label } => {
            let org = find_org(db, &org).await?;
            let (token, secret) = master_tokens::create(db, org.id, &label).await?;
            audit::record(db, org.id, audit::Actor::System, "master_token.created", Some(token.id.0)).await?;
            println!("{}", token.id);
            eprintln!(
                "latchkey: master token {} created for {:?}, shown only this once:\n\n    {}\n",
                token.id,
                org.name,
                secret.expose_secret()
            );
        }
        MasterTokenCommand::List { org } => {
            let org = find_org(db, &org).await?;
            for token in master_tokens::list(db, org.id).await? {
                let state = token.revoked_at.map_or("active".to_owned(), |at| format!("revoked {}", at.to_rfc3339()));
                println!("{}\t{}\tcreated {}\t{}", token.id, token.label, token.created_at.to_rfc3339(), state);
            }
        }
        MasterTokenCommand::Revoke { id } => {
            let txn = latchkey::db::write(db).await?;
            let token = master_tokens::revoke(&txn, MasterTokenId::parse(&id)?).await?;
            audit::record(&txn, token.org_id, audit::Actor::System, "master_token.revoked", Some(token.id.0)).await?;
            txn.commit().await?;
            eprintln!("latchkey: master token {} revoked", token.id);
        }
    }
    Ok(())
}

//! Database connection and migrations. SQLite is the embedded default; PostgreSQL is for
//! running several stateless replicas on one database.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};
use secrecy::{ExposeSecret, SecretString};

use crate::config::DatabaseKind;

/// How long a SQLite writer waits for the lock before giving up.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn connect(url: &SecretString, kind: DatabaseKind) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.expose_secret().to_owned());
    options
        .acquire_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(10))
        // Statement logs carry bound parameters; keep them out of the logs entirely.
        .sqlx_logging(false);
    match kind {
        DatabaseKind::Sqlite => {
            options.max_connections(8).min_connections(1).map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .foreign_keys(true)
                    .create_if_missing(true)
            });
        }
        DatabaseKind::Postgres => {
            options.max_connections(16).min_connections(1);
        }
    }
    // The URL may hold a password: report the failure without it.
    Database::connect(options)
        .await
        .map_err(|err| anyhow::anyhow!("cannot connect to the database: {}", redact(&err.to_string(), url)))
}

fn redact(message: &str, url: &SecretString) -> String {
    message.replace(url.expose_secret(), "[database url]")
}

pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None).await.map_err(|err| anyhow::anyhow!("database migration failed: {err}"))
}

//! Database connection and migrations. SQLite is the embedded default; PostgreSQL is for
//! running several stateless replicas on one database.

use std::time::Duration;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DbBackend, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
    sqlx::{
        self,
        sqlite::{SqliteJournalMode, SqliteSynchronous},
    },
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

/// The PostgreSQL advisory lock every latchkey process takes around its migrations (any
/// fixed number works, as long as all processes on one database agree).
const MIGRATION_LOCK: i64 = 0x6c61_7463_686b_6579;

/// Applies pending migrations. On PostgreSQL, replicas starting together on an empty
/// database would each create the same tables and all but one would fail; an advisory
/// lock, held on one dedicated connection for the duration, lets one migrate while the
/// others wait and then find nothing left to do. A crash releases it with its session.
///
/// On SQLite the same race (two processes on one file: a server and `latchkey migrate`)
/// is closed by migrating inside one `IMMEDIATE` transaction: it takes the file's write
/// lock at once, and a second process waits for it (up to the busy timeout) and then
/// sees the migrations applied.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    if db.get_database_backend() == DbBackend::Sqlite {
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        let txn = db.begin_with_options(options).await.context("cannot lock the database for migrations")?;
        run_migrations(&txn).await?;
        return txn.commit().await.context("cannot commit the migrations");
    }
    let mut lock = db.get_postgres_connection_pool().acquire().await.context("cannot connect for migrations")?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *lock)
        .await
        .context("cannot take the migration lock")?;
    let migrated = run_migrations(db).await;
    let released = sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK).execute(&mut *lock).await;
    if released.is_err() {
        // Ending the session is the other way to release the lock.
        let _ = lock.close().await;
    }
    migrated
}

async fn run_migrations<'c>(db: impl sea_orm::IntoDatabaseExecutor<'c>) -> anyhow::Result<()> {
    Migrator::up(db, None).await.map_err(|err| anyhow::anyhow!("database migration failed: {err}"))
}

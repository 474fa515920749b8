//! Database connection and migrations. SQLite is the embedded default; PostgreSQL is for
//! running several stateless replicas on one database.

use std::time::Duration;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{Config, DatabaseKind};

/// How long a SQLite writer waits for the lock before giving up.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for a free pooled connection before it fails (`INTERNAL`).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn connect(config: &Config) -> anyhow::Result<DatabaseConnection> {
    let url = &config.database_url;
    let mut options = ConnectOptions::new(url.expose_secret().to_owned());
    options
        .max_connections(config.database_max_connections)
        .min_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        // No ping before each use: it is a round trip per statement. A connection the
        // server has closed fails its statement once and is dropped from the pool.
        .test_before_acquire(false)
        // Statement logs carry bound parameters; keep them out of the logs entirely.
        .sqlx_logging(false);
    if config.database_kind == DatabaseKind::Sqlite {
        options.map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
                .create_if_missing(true)
        });
    }
    // The URL may hold a password: report the failure without it.
    Database::connect(options)
        .await
        .map_err(|err| anyhow::anyhow!("cannot connect to the database: {}", redact(&err.to_string(), url)))
}

fn redact(message: &str, url: &SecretString) -> String {
    message.replace(url.expose_secret(), "[database url]")
}

/// Opens a transaction that will write: the one way the crate starts one.
///
/// SQLite starts a plain (deferred) transaction as a reader and refuses, at once and
/// without consulting the busy timeout, to upgrade it to a writer once another connection
/// has written since; a read-then-write use case then fails with "database is locked".
/// `BEGIN IMMEDIATE` takes the write lock up front, so writers queue on the busy timeout
/// instead. PostgreSQL ignores the mode; there, a read that a write depends on locks its
/// rows (`lock_exclusive`).
pub async fn write<C: TransactionTrait>(conn: &C) -> Result<C::Transaction, DbErr> {
    conn.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// The PostgreSQL advisory lock every latchkey process takes around its migrations (any
/// fixed number works, as long as all processes on one database agree).
const MIGRATION_LOCK: i64 = 0x6c61_7463_686b_6579;

/// Applies pending migrations, all in one transaction on one connection (both databases
/// run DDL transactionally), so a pool of any size can migrate.
///
/// Replicas starting together on an empty database would each create the same tables,
/// and all but one would fail. On PostgreSQL the transaction first takes an advisory lock,
/// released when it ends (a crash included): one replica migrates while the others wait,
/// then find nothing left to do. On SQLite the transaction starts `IMMEDIATE`, taking the
/// file's write lock at once; a second process waits for it (up to the busy timeout) and
/// then sees the migrations applied.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    let txn = write(db).await.context("cannot lock the database for migrations")?;
    if db.get_database_backend() == DbBackend::Postgres {
        let lock = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [MIGRATION_LOCK.into()],
        );
        txn.execute_raw(lock).await.context("cannot take the migration lock")?;
    }
    run_migrations(&txn).await?;
    txn.commit().await.context("cannot commit the migrations")
}

async fn run_migrations<'c>(db: impl sea_orm::IntoDatabaseExecutor<'c>) -> anyhow::Result<()> {
    Migrator::up(db, None).await.map_err(|err| anyhow::anyhow!("database migration failed: {err}"))
}

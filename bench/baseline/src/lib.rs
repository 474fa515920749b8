//! What the benchmark's programs share: opening the database exactly as latchkey opens it
//! (`src/db.rs`: pool size, acquire timeout, SQLite pragmas).
//!
//! Statements are written once, with `$n` placeholders: PostgreSQL's own, and sqlx binds
//! SQLite's `$n` parameters by number too.

use std::{str::FromStr, time::Duration};

use sqlx::{
    Database, PgPool, SqlitePool,
    pool::PoolOptions,
    postgres::PgConnectOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};

/// latchkey's defaults (`LATCHKEY_DATABASE_MAX_CONNECTIONS`).
pub const SQLITE_CONNECTIONS: u32 = 8;
pub const POSTGRES_CONNECTIONS: u32 = 16;

/// A pool on either database.
#[derive(Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Db {
    /// Opens `url` (`sqlite:` or `postgres://`) with latchkey's settings. `max` defaults to
    /// latchkey's pool size for the database. The pool does not ping a connection before
    /// handing it out: the baselines do only the work a request cannot avoid.
    pub async fn connect(url: &str, max: Option<u32>) -> Result<Self, sqlx::Error> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .create_if_missing(false);
            Ok(Db::Sqlite(pool_options(max.unwrap_or(SQLITE_CONNECTIONS)).connect_with(options).await?))
        } else {
            let options = PgConnectOptions::from_str(url)?;
            Ok(Db::Postgres(pool_options(max.unwrap_or(POSTGRES_CONNECTIONS)).connect_with(options).await?))
        }
    }
}

/// latchkey's pool: `max` connections, at least one open, 10 s to wait for one.
fn pool_options<DB: Database>(max: u32) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(max)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
}

/// A setting from the environment, or a default.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|value| !value.is_empty()).unwrap_or_else(|| default.to_owned())
}

/// A required setting from the environment; the process stops naming it when missing.
pub fn env_required(name: &str) -> String {
    std::env::var(name).ok().filter(|value| !value.is_empty()).unwrap_or_else(|| {
        eprintln!("missing environment variable {name}");
        std::process::exit(2)
    })
}

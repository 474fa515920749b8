//! Token checks without a database round trip, with revocation that takes effect at once.
//!
//! Every change that invalidates tokens (revoking a user's tokens, removing a user,
//! revoking a master token) advances one installation-wide *revocation epoch* in the same
//! transaction. What a process learned from the database about a token (a user's token
//! version, a master token's scope) is kept tagged with the epoch it was read under, and is
//! used only while that epoch is still the newest one the process knows:
//!
//! - the process that made a revocation advances its epoch as soon as it commits;
//! - on PostgreSQL the transaction also sends `NOTIFY latchkey_revocations`, and every
//!   replica's listener advances its epoch when it hears it (milliseconds);
//! - every process also reads the epoch once a second, which bounds how long a missed
//!   notification, or another process on the same SQLite file, can go unseen;
//! - while a PostgreSQL listener is down, nothing is cached: every check reads the
//!   database, as it did before caching.
//!
//! Master tokens are revoked by the operator's `latchkey master-token revoke`, another
//! process: they are cached only where that process is heard at once, on PostgreSQL. On
//! SQLite each master-token request reads its one row.
//!
//! A value read before a revocation commits is tagged with the older epoch, so it can never
//! be taken for current afterwards, whatever order the threads run in.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::Duration,
};

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};
use secrecy::{ExposeSecret, SecretString};

use super::MasterScope;
use crate::{
    error::Result,
    ids::{OrgId, UserId},
};

/// The `server_state` key holding the epoch, as decimal text.
const EPOCH_KEY: &str = "revocation_epoch";
/// The PostgreSQL notification channel.
const CHANNEL: &str = "latchkey_revocations";
/// How often every process reads the epoch, whatever it heard.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Entries kept per kind; beyond it the cache starts over (it only saves round trips).
const MAX_ENTRIES: usize = 100_000;

/// This process's knowledge of revocations and of the token facts read under it.
#[derive(Clone, Debug)]
pub struct Revocations {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The newest epoch this process knows.
    epoch: AtomicI64,
    /// Whether this process hears every revocation as it happens (always on SQLite, where
    /// the poll bounds cross-process staleness; on PostgreSQL while the listener is up).
    hearing: AtomicBool,
    /// Whether other processes' revocations are heard at once (a PostgreSQL listener is up).
    notified: AtomicBool,
    users: RwLock<HashMap<(OrgId, UserId), Tagged<i64>>>,
    masters: RwLock<HashMap<String, Tagged<MasterScope>>>,
}

#[derive(Clone, Debug)]
struct Tagged<T> {
    epoch: i64,
    value: T,
}

/// The epoch a lookup starts under: a value read from the database after taking it may be
/// cached under it.
#[derive(Clone, Copy, Debug)]
pub struct Ticket(Option<i64>);

impl Default for Revocations {
    fn default() -> Self {
        Self::new()
    }
}

impl Revocations {
    /// Knows no epoch and hears nothing yet: caching starts once [`Revocations::watch`] has
    /// read the epoch (and, on PostgreSQL, the listener is up).
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                epoch: AtomicI64::new(i64::MIN),
                hearing: AtomicBool::new(false),
                notified: AtomicBool::new(false),
                users: RwLock::new(HashMap::new()),
                masters: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Takes note of an epoch: every value read under an older one stops counting.
    pub fn advance(&self, epoch: i64) {
        self.inner.epoch.fetch_max(epoch, Ordering::SeqCst);
    }

    /// Call before reading token facts from the database.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.inner.hearing.load(Ordering::SeqCst).then(|| self.inner.epoch.load(Ordering::SeqCst)))
    }

    fn current(&self) -> Option<i64> {
        self.ticket().0
    }

    /// The token version of `user_id` in `org_id` read under the current epoch, if any.
    pub fn user_version(&self, org_id: OrgId, user_id: UserId) -> Option<i64> {
        let epoch = self.current()?;
        let users = self.inner.users.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        users.get(&(org_id, user_id)).filter(|entry| entry.epoch == epoch).map(|entry| entry.value)
    }

    pub fn remember_user_version(&self, ticket: Ticket, org_id: OrgId, user_id: UserId, version: i64) {
        if let Some(epoch) = ticket.0 {
            remember(&self.inner.users, (org_id, user_id), Tagged { epoch, value: version });
        }
    }

    /// The scope of the live master token whose hash is `token_hash`, read under the
    /// current epoch, if any.
    pub fn master(&self, token_hash: &str) -> Option<MasterScope> {
        let epoch = self.current().filter(|_| self.inner.notified.load(Ordering::SeqCst))?;
        let masters = self.inner.masters.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        masters.get(token_hash).filter(|entry| entry.epoch == epoch).map(|entry| entry.value.clone())
    }

    pub fn remember_master(&self, ticket: Ticket, token_hash: String, scope: MasterScope) {
        if let Some(epoch) = ticket.0.filter(|_| self.inner.notified.load(Ordering::SeqCst)) {
            remember(&self.inner.masters, token_hash, Tagged { epoch, value: scope });
        }
    }

    /// Keeps this process's epoch current until the process ends: the listener on
    /// PostgreSQL, and the poll everywhere.
    pub fn watch(&self, db: DatabaseConnection, database_url: Option<SecretString>) {
        let poller = self.clone();
        let poll_db = db.clone();
        tokio::spawn(async move { poller.poll(poll_db).await });
        match (db.get_database_backend(), database_url) {
            (DatabaseBackend::Postgres, Some(url)) => {
                let listener = self.clone();
                tokio::spawn(async move { listener.listen(db, url).await });
            }
            _ => self.inner.hearing.store(true, Ordering::SeqCst),
        }
    }

    async fn poll(&self, db: DatabaseConnection) {
        let mut every = tokio::time::interval(POLL_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match read_epoch(&db).await {
                Ok(epoch) => self.advance(epoch),
                Err(err) => tracing::warn!(error = %err, "cannot read the revocation epoch"),
            }
        }
    }

    async fn listen(&self, db: DatabaseConnection, url: SecretString) {
        use sea_orm::sqlx::postgres::PgListener;
        let mut backoff = Duration::from_millis(100);
        loop {
            let connected = async {
                let mut listener = PgListener::connect(url.expose_secret()).await?;
                listener.listen(CHANNEL).await?;
                Ok::<_, sea_orm::sqlx::Error>(listener)
            }
            .await;
            let mut listener = match connected {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for revocations; checking every token in the database");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            // Whatever was revoked while not listening is in the epoch read now.
            match read_epoch(&db).await {
                Ok(epoch) => self.advance(epoch),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the revocation epoch");
                    continue;
                }
            }
            self.inner.notified.store(true, Ordering::SeqCst);
            self.inner.hearing.store(true, Ordering::SeqCst);
            backoff = Duration::from_millis(100);
            // `None` or an error: the connection is gone, and with it what it would have heard.
            while let Ok(Some(notification)) = listener.try_recv().await {
                match notification.payload().parse() {
                    Ok(epoch) => self.advance(epoch),
                    Err(_) => tracing::warn!("a revocation notification without an epoch"),
                }
            }
            self.inner.hearing.store(false, Ordering::SeqCst);
            self.inner.notified.store(false, Ordering::SeqCst);
            tracing::warn!("the revocation listener lost its connection; reconnecting");
        }
    }
}

fn remember<K: std::hash::Hash + Eq, V>(map: &RwLock<HashMap<K, Tagged<V>>>, key: K, entry: Tagged<V>) {
    let mut map = map.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    // A slower reader of an older epoch never replaces a newer reading.
    match map.get(&key) {
        Some(existing) if existing.epoch > entry.epoch => {}
        _ => {
            map.insert(key, entry);
        }
    }
}

/// Advances the installation's revocation epoch inside the transaction that revokes, and on
/// PostgreSQL notifies every replica when it commits. Returns the new epoch, for
/// [`Revocations::advance`] once the transaction has committed.
pub async fn record(conn: &impl ConnectionTrait) -> Result<i64> {
    let backend = conn.get_database_backend();
    let bump = format!(
        "INSERT INTO server_state (key, value) VALUES ('{EPOCH_KEY}', '1') \
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(server_state.value AS BIGINT) + 1 AS TEXT) \
         RETURNING value"
    );
    let row = conn.query_one_raw(Statement::from_string(backend, bump)).await?;
    let epoch = parse_epoch(row.map(|row| row.try_get::<String>("", "value")).transpose()?)?;
    if backend == DatabaseBackend::Postgres {
        conn.execute_raw(Statement::from_string(backend, format!("SELECT pg_notify('{CHANNEL}', '{epoch}')"))).await?;
    }
    Ok(epoch)
}

async fn read_epoch(conn: &impl ConnectionTrait) -> Result<i64> {
    let read = format!("SELECT value FROM server_state WHERE key = '{EPOCH_KEY}'");
    let row = conn.query_one_raw(Statement::from_string(conn.get_database_backend(), read)).await?;
    parse_epoch(row.map(|row| row.try_get::<String>("", "value")).transpose()?)
}

/// No row yet is epoch 0.
fn parse_epoch(value: Option<String>) -> Result<i64> {
    value.map_or(Ok(0), |text| {
        text.parse().map_err(|_| crate::error::Error::internal(anyhow::anyhow!("the revocation epoch is not a number")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hearing() -> Revocations {
        let revocations = Revocations::new();
        revocations.inner.hearing.store(true, Ordering::SeqCst);
        revocations.advance(0);
        revocations
    }

    #[test]
    fn a_version_read_before_a_revocation_is_never_taken_for_current() {
        let revocations = hearing();
        let (org, user) = (OrgId::generate(), UserId::generate());
        let before = revocations.ticket();
        revocations.advance(1);
        // The slow reader finishes after the revocation committed.
        revocations.remember_user_version(before, org, user, 3);
        assert_eq!(revocations.user_version(org, user), None);
        let after = revocations.ticket();
        revocations.remember_user_version(after, org, user, 4);
        assert_eq!(revocations.user_version(org, user), Some(4));
        // And an older reading never replaces it.
        revocations.remember_user_version(before, org, user, 3);
        assert_eq!(revocations.user_version(org, user), Some(4));
    }

    #[test]
    fn nothing_is_cached_while_revocations_are_not_heard() {
        let revocations = Revocations::new();
        let (org, user) = (OrgId::generate(), UserId::generate());
        revocations.advance(5);
        revocations.remember_user_version(revocations.ticket(), org, user, 1);
        assert_eq!(revocations.user_version(org, user), None);
    }

    #[test]
    fn an_epoch_never_goes_back() {
        let revocations = hearing();
        revocations.advance(7);
        revocations.advance(3);
        assert_eq!(revocations.current(), Some(7));
    }
}

//! The keep-alive: renewing OAuth 2.0 access tokens before they expire, exactly once per
//! expiry across every process on the database.
//!
//! Providers that rotate refresh tokens retire the old one on first use, and many revoke
//! the whole grant when a retired one comes back: two processes refreshing the same token
//! lose the authentication. So a refresh is claimed in the database first, and only the
//! claimant calls the provider:
//!
//! 1. **Claim.** One conditional `UPDATE` sets a lease (`refresh_lease_until`, and a fresh
//!    `refresh_lease_owner`) on a row that is due (`refresh_due_at` passed), active and
//!    not leased. The background job claims a batch in one statement whose rows are picked
//!    `FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas share the work without waiting
//!    on each other; SQLite runs the same statement under its one writer lock.
//! 2. **Call** the provider outside any transaction (bounded by the outbound timeout, far
//!    shorter than the lease).
//! 3. **Write** the result with a compare-and-swap on the lease owner: new credentials
//!    (sealed), the next due time (later, so the same expiry is never claimed again), the
//!    lease released, and the audit and the webhook (`authentication.updated`, cause
//!    `refreshed`), all in one transaction. A row replaced meanwhile has
//!    lost its lease, and the stale answer is dropped.
//!
//! A reader that finds the row due but leased waits briefly for the holder and takes its
//! result. A holder that dies leaves a lease that expires; the next claimant refreshes.
//!
//! Failures: a transient one (no answer, 5xx, 429) keeps the credential and moves the due
//! time by an exponential backoff with jitter; a definitive refusal (`invalid_grant`, ...)
//! sets `REFRESH_FAILED` (or `REVOKED` for client credentials the provider no longer
//! accepts), clears the due time so nothing retries it, and sends the webhook
//! `authentication.refresh_failed` in the same transaction.
//!
//! A refresh token's own expiry, once the provider states it, is the authentication's hard
//! expiry ([`authentications::set_hard_expiry`]); the webhook worker warns of it with
//! `authentication.expiring` ([`super::webhooks::expiry`]).

use std::{sync::Arc, time::Duration as StdDuration};

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, Query},
};
use serde_json::Value;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::{
    authentications::{self, Field},
    catalog::{self, Environment},
    expiry::{Lifecycle, Renewal, Timing},
    json_schema,
};
use crate::{
    config::RefreshConfig,
    crypto::KeyringHandle,
    error::{Error, Result},
    ids::{EnvironmentId, OrgId},
    oauth::{self, OAuthClient, OAuthError, Previous, TokenSet},
    outbound::Outbound,
};
use entity::authentication::{self, Column};

/// Rows one pass of the background job claims at most.
const BATCH: u64 = 100;
/// Refreshes one process runs at once in a pass.
const CONCURRENT: usize = 4;
/// How often a reader waiting on another process's refresh looks again.
const POLL: StdDuration = StdDuration::from_millis(100);
/// The longest wait between attempts after transient failures.
const MAX_BACKOFF: StdDuration = StdDuration::from_secs(3600);
/// The stored statuses.
const ACTIVE: &str = "ACTIVE";
const REFRESH_FAILED: &str = "REFRESH_FAILED";
const REVOKED: &str = "REVOKED";

/// What a refresh came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new access token is stored.
    Refreshed,
    /// latchkey has nothing to renew this authentication with.
    NotRefreshable,
    /// The provider could not be reached; the credential is kept and retried later.
    Unavailable,
    /// The provider refused (its OAuth error code); nothing retries until it is replaced.
    Refused(String),
    /// The call could not be made, or its answer could not be used; retried later.
    Failed,
    /// Another process's refresh was still running when the wait ended.
    Pending,
}

/// Renews authentications: lazily when a credential is handed out, when forced, and in
/// the background. Cheap to clone.
#[derive(Clone)]
pub struct Refresher {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    keyring: Arc<KeyringHandle>,
    outbound: Outbound,
    config: RefreshConfig,
}

/// Why a refresh is claimed.
#[derive(Clone, Copy)]
enum Trigger {
    /// Its due time has passed (a read, or the background job).
    Due,
    /// The owner or the master token asked, for the credential of this version.
    Forced { version: i64 },
}

fn lease_free(now: DateTime<Utc>) -> Condition {
    Condition::any().add(Column::RefreshLeaseUntil.is_null()).add(Column::RefreshLeaseUntil.lte(now))
}

/// Rows the background job and lazy reads refresh: active, renewable, due.
fn due(now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(Column::Status.eq(ACTIVE))
        .add(Column::Renewal.is_not_null())
        .add(Column::RefreshDueAt.lte(now))
}

fn chrono(duration: StdDuration) -> Duration {
    Duration::from_std(duration).unwrap_or(Duration::MAX)
}

/// The wait before attempt `attempts + 1`: `base` doubled per failed attempt, at most an
/// hour, then jittered down by up to half so replicas and rows spread out.
fn backoff(base: StdDuration, attempts: i32) -> StdDuration {
    let doublings = Ord::min(u32::try_from(attempts.saturating_sub(1)).unwrap_or(0), 20);
    let full = base.saturating_mul(1 << doublings).min(MAX_BACKOFF);
    let [random] = crate::crypto::random_bytes::<1>();
    full.mul_f64(0.5 + f64::from(random) / 510.0)
}

/// An update of `row` that applies only while `claim` holds its lease, and gives the
/// lease back.
fn under_claim(row: &authentication::Model, claim: Uuid) -> sea_orm::UpdateMany<authentication::Entity> {
    authentication::Entity::update_many()
        .col_expr(Column::RefreshLeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(Column::RefreshLeaseOwner, Expr::value(Option::<Uuid>::None))
        .filter(Column::Id.eq(row.id))
        .filter(Column::RefreshLeaseOwner.eq(claim))
}

/// Whether a read should refresh this row first.
pub fn is_due(row: &authentication::Model, now: DateTime<Utc>) -> bool {
    row.status == ACTIVE && row.renewal.is_some() && row.refresh_due_at.is_some_and(|at| at <= now)
}

/// The lifecycle columns of credentials written at `now` (an import or a replacement):
/// active, not leased, no failures, due as the lifecycle says.
pub(super) fn reset(
    active: &mut authentication::ActiveModel,
    lifecycle: &Lifecycle,
    now: DateTime<Utc>,
    timing: Timing,
) {
    use sea_orm::ActiveValue::Set;
    active.expires_at = Set(lifecycle.expires_at);
    active.refresh_expires_at = Set(lifecycle.refresh_expires_at);
    active.hard_expires_at = Set(lifecycle.hard_expires_at());
    active.renewal = Set(lifecycle.renewal.map(|renewal| renewal.as_str().to_owned()));
    active.status = Set(ACTIVE.to_owned());
    active.refresh_due_at = Set(lifecycle.due_at(now, timing));
    active.refresh_lease_until = Set(None);
    active.refresh_lease_owner = Set(None);
    active.refresh_attempts = Set(0);
    active.refresh_error = Set(None);
}

impl Refresher {
    pub fn new(db: DatabaseConnection, keyring: Arc<KeyringHandle>, outbound: Outbound, config: RefreshConfig) -> Self {
        Self { inner: Arc::new(Inner { db, keyring, outbound, config }) }
    }

    pub fn timing(&self) -> Timing {
        let config = &self.inner.config;
        Timing { before: chrono(config.before), idle_after: chrono(config.idle_after) }
    }

    fn lease(&self) -> Duration {
        chrono(self.inner.config.lease)
    }

    /// How long a reader waits for another process's refresh: as long as one may take.
    fn wait(&self) -> StdDuration {
        self.inner.config.lease.min(crate::outbound::CALL_TIMEOUT + StdDuration::from_secs(5))
    }

    /// Refreshes `row` if it is due, before its credential is handed out, or waits for the
    /// process that is refreshing it. The credential in hand stays usable whatever the
    /// provider says; only a database failure is an error.
    pub async fn when_due(&self, row: &authentication::Model) -> Result<()> {
        if is_due(row, Utc::now()) {
            self.ensure(row.id, Trigger::Due).await?;
        }
        Ok(())
    }

    /// Refreshes `row` now, whatever its due time (its status too: a forced refresh is how
    /// a fixed OAuth app is tried again). A refresh of the same credential that another
    /// caller or process is running is waited for and counts as this one.
    pub async fn force(&self, row: &authentication::Model) -> Result<Outcome> {
        if Renewal::parse(row.renewal.as_deref()).is_none() {
            return Ok(Outcome::NotRefreshable);
        }
        let version = row.credentials_version;
        if let Some(outcome) = self.ensure(row.id, Trigger::Forced { version }).await? {
            return Ok(outcome);
        }
        // Another refresh of this credential ran, or is running: its result is ours.
        let after = authentication::Entity::find_by_id(row.id).one(&self.inner.db).await?;
        Ok(match after {
            None => Outcome::Pending,
            Some(after) if after.credentials_version != version => Outcome::Refreshed,
            Some(after) if after.status != ACTIVE => {
                Outcome::Refused(after.refresh_error.unwrap_or_else(|| "unknown_error".to_owned()))
            }
            Some(after) if after.refresh_attempts > row.refresh_attempts => Outcome::Unavailable,
            Some(_) => Outcome::Pending,
        })
    }

    /// Claims and runs the refresh, or waits while another process holds the claim.
    /// `None`: this call did not refresh (no longer due, done by another, or still running).
    async fn ensure(&self, id: Uuid, trigger: Trigger) -> Result<Option<Outcome>> {
        let deadline = tokio::time::Instant::now() + self.wait();
        loop {
            if let Some(claim) = self.claim_one(id, trigger).await? {
                return self.run(id, claim).await.map(Some);
            }
            let Some(row) = authentication::Entity::find_by_id(id).one(&self.inner.db).await? else {
                return Ok(None);
            };
            let held = row.refresh_lease_owner.is_some() && row.refresh_lease_until.is_some_and(|at| at > Utc::now());
            if !held || tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One row's lease, if it is free and the trigger still holds.
    async fn claim_one(&self, id: Uuid, trigger: Trigger) -> Result<Option<Uuid>> {
        let now = Utc::now();
        let claim = Uuid::new_v4();
        let condition = match trigger {
            Trigger::Due => due(now),
            Trigger::Forced { version } => {
                Condition::all().add(Column::Renewal.is_not_null()).add(Column::CredentialsVersion.eq(version))
            }
        };
        let claimed = authentication::Entity::update_many()
            .col_expr(Column::RefreshLeaseUntil, Expr::value(now + self.lease()))
            .col_expr(Column::RefreshLeaseOwner, Expr::value(claim))
            .filter(Column::Id.eq(id))
            .filter(lease_free(now))
            .filter(condition)
            .exec(&self.inner.db)
            .await?;
        Ok((claimed.rows_affected == 1).then_some(claim))
    }

    /// Up to [`BATCH`] due rows renewed with a refresh token, claimed in one statement.
    /// Client credentials are minted when read, not ahead.
    async fn claim_batch(&self) -> Result<(Uuid, Vec<Uuid>)> {
        let now = Utc::now();
        let claim = Uuid::new_v4();
        let mut pick = Query::select();
        pick.column(Column::Id)
            .from(authentication::Entity)
            .cond_where(due(now))
            .cond_where(lease_free(now))
            .and_where(Expr::col(Column::Renewal).eq(Renewal::RefreshToken.as_str()))
            .order_by(Column::RefreshDueAt, sea_orm::Order::Asc)
            .limit(BATCH);
        if self.inner.db.get_database_backend() == DbBackend::Postgres {
            // Rows another replica is claiming are skipped, not waited for.
            pick.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let mut update = Query::update();
        update
            .table(authentication::Entity)
            .value(Column::RefreshLeaseUntil, now + self.lease())
            .value(Column::RefreshLeaseOwner, claim)
            .and_where(Expr::col(Column::Id).in_subquery(pick))
            .cond_where(due(now))
            .cond_where(lease_free(now))
            .returning_col(Column::Id);
        let rows = self.inner.db.query_all(&update).await?;
        let ids = rows.iter().map(|row| row.try_get::<Uuid>("", "id")).collect::<Result<_, _>>()?;
        Ok((claim, ids))
    }

    /// With the claim held: reads the row, calls the provider, writes the answer.
    async fn run(&self, id: Uuid, claim: Uuid) -> Result<Outcome> {
        let db = &self.inner.db;
        let row = authentication::Entity::find_by_id(id)
            .one(db)
            .await?
            .ok_or_else(|| Error::internal(anyhow::anyhow!("authentication {id} vanished under its lease")))?;
        let attempt = self.attempt(&row).await;
        let (outcome, written) = match attempt {
            Ok(Some((answer, environment, credentials, user_data))) => {
                match self.store(&row, claim, &environment, &answer, &credentials, &user_data).await {
                    Ok(written) => (Outcome::Refreshed, written),
                    Err(Stored::Unfit) => self.failed(&row, claim, "invalid_answer", false).await?,
                    Err(Stored::Db(err)) => return Err(err),
                }
            }
            Ok(None) => {
                self.unrenewable(&row, claim).await?;
                return Ok(Outcome::NotRefreshable);
            }
            Err(Attempt::Provider(err)) => match err {
                OAuthError::Refused { error } => self.refused(&row, claim, &error).await?,
                OAuthError::Unavailable(_) => self.failed(&row, claim, "unavailable", true).await?,
                OAuthError::Failed(_) => self.failed(&row, claim, "failed", false).await?,
            },
            Err(Attempt::Other(err)) => {
                self.release(&row, claim).await?;
                return Err(err);
            }
        };
        if !written {
            tracing::warn!(
                authentication_id = %id,
                "a refresh's result was dropped: the authentication was replaced, removed or claimed again meanwhile"
            );
        }
        Ok(outcome)
    }

    /// The provider's answer for `row`, with what mapping it needs; `None` when the row
    /// has nothing to renew with.
    async fn attempt(
        &self,
        row: &authentication::Model,
    ) -> std::result::Result<Option<(TokenSet, Environment, Value, Value)>, Attempt> {
        let Some(renewal) = Renewal::parse(row.renewal.as_deref()) else { return Ok(None) };
        let db = &self.inner.db;
        let keyring = &self.inner.keyring;
        let org_id = OrgId(row.org_id);
        let environment_id = EnvironmentId(row.environment_id);
        let environment = catalog::environment_of(db, org_id, environment_id).await?;
        let credentials = authentications::open_json(keyring, row, Field::Credentials)?.expose().clone();
        let user_data = authentications::open_json(keyring, row, Field::UserData)?.expose().clone();
        let text = |key: &str| credentials[key].as_str().filter(|text| !text.is_empty()).map(str::to_owned);
        let answer = match renewal {
            Renewal::RefreshToken => {
                let Some(refresh_token) = text("refresh_token") else { return Ok(None) };
                let Some((app, secret)) =
                    catalog::oauth_app_with_secret_of(db, keyring, org_id, environment_id).await?
                else {
                    return Ok(None);
                };
                let client = OAuthClient::of_app(&app, secret);
                oauth::refresh(&self.inner.outbound, &client, &refresh_token.into(), &[]).await
            }
            Renewal::ClientCredentials => {
                let (Some(client_id), Some(client_secret), Some(app)) =
                    (text("client_id"), text("client_secret"), environment.oauth_app.as_ref())
                else {
                    return Ok(None);
                };
                let client = OAuthClient {
                    client_id,
                    client_secret: Some(client_secret.into()),
                    authorize_url: None,
                    token_url: app.token_url.clone(),
                };
                let scopes: Vec<String> = serde_json::from_str(&row.scopes).map_err(Error::internal)?;
                oauth::client_credentials(&self.inner.outbound, &client, &scopes).await
            }
        };
        let answer = answer.map_err(Attempt::Provider)?;
        Ok(Some((answer, environment, credentials, user_data)))
    }

    /// Stores a token answer over `row`, if the claim still holds: mapped over what the
    /// row held (what the answer does not restate stays), checked against the schemas,
    /// sealed, with the next due time, the lease released, the refresh token's expiry as
    /// the hard expiry, the audit and the webhook, in one transaction.
    async fn store(
        &self,
        row: &authentication::Model,
        claim: Uuid,
        environment: &Environment,
        answer: &TokenSet,
        credentials: &Value,
        user_data: &Value,
    ) -> std::result::Result<bool, Stored> {
        let requested: Vec<String> = match Renewal::parse(row.renewal.as_deref()) {
            Some(Renewal::ClientCredentials) => serde_json::from_str(&row.scopes).unwrap_or_default(),
            _ => Vec::new(),
        };
        let mapped = oauth::map(answer, environment, &requested, Some(Previous { credentials, user_data }));
        let new_credentials = mapped.credentials.expose();
        let fits = json_schema::validate("credentials", &environment.credentials_schema, new_credentials).is_ok()
            && json_schema::validate("userData", &environment.user_data_schema, &mapped.user_data).is_ok();
        if !fits {
            return Err(Stored::Unfit);
        }
        let lifecycle = Lifecycle::after_refresh(environment, new_credentials, answer, row.refresh_expires_at);
        let now = Utc::now();
        let keyring = self.inner.keyring.current();
        let sealed_credentials = authentications::seal_field(&keyring, row, Field::Credentials, new_credentials);
        let sealed_user_data = authentications::seal_field(&keyring, row, Field::UserData, &mapped.user_data);
        let txn = crate::db::write(&self.inner.db).await.map_err(|err| Stored::Db(err.into()))?;
        let written = under_claim(row, claim)
            .col_expr(Column::Credentials, Expr::value(sealed_credentials))
            .col_expr(Column::UserData, Expr::value(sealed_user_data))
            .col_expr(Column::KeyId, Expr::value(keyring.active().id().to_owned()))
            .col_expr(Column::ExpiresAt, Expr::value(lifecycle.expires_at))
            .col_expr(Column::RefreshExpiresAt, Expr::value(lifecycle.refresh_expires_at))
            .col_expr(Column::Renewal, Expr::value(lifecycle.renewal.map(|renewal| renewal.as_str().to_owned())))
            .col_expr(Column::Status, Expr::value(ACTIVE))
            .col_expr(Column::CredentialsVersion, Expr::col(Column::CredentialsVersion).add(1))
            .col_expr(Column::RefreshDueAt, Expr::value(lifecycle.due_at(answer.received_at, self.timing())))
            .col_expr(Column::RefreshAttempts, Expr::value(0))
            .col_expr(Column::RefreshError, Expr::value(Option::<String>::None))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .exec(&txn)
            .await
            .map_err(|err| Stored::Db(err.into()))?;
        if written.rows_affected != 1 {
            return Ok(false);
        }
        authentications::set_hard_expiry(&txn, row, lifecycle.hard_expires_at()).await.map_err(Stored::Db)?;
        authentications::record_refreshed(&txn, row).await.map_err(Stored::Db)?;
        txn.commit().await.map_err(|err| Stored::Db(err.into()))?;
        Ok(true)
    }

    /// A failure that may pass: the credential stays, the next attempt waits a backoff.
    /// `transient` tells the log whether the provider was down or its answer unusable.
    async fn failed(
        &self,
        row: &authentication::Model,
        claim: Uuid,
        class: &str,
        transient: bool,
    ) -> Result<(Outcome, bool)> {
        let attempts = row.refresh_attempts.saturating_add(1);
        let next = Utc::now() + chrono(backoff(self.inner.config.backoff, attempts));
        tracing::warn!(authentication_id = %row.id, attempts, error = class, transient, next_attempt = %next, "a refresh failed; the credential is kept and retried");
        let written = under_claim(row, claim)
            .col_expr(Column::RefreshAttempts, Expr::value(attempts))
            .col_expr(Column::RefreshDueAt, Expr::value(next))
            .col_expr(Column::RefreshError, Expr::value(class))
            .exec(&self.inner.db)
            .await?;
        let outcome = if transient { Outcome::Unavailable } else { Outcome::Failed };
        Ok((outcome, written.rows_affected == 1))
    }

    /// A definitive refusal: no more attempts until the credential is replaced, and the
    /// partner is told.
    async fn refused(&self, row: &authentication::Model, claim: Uuid, error: &str) -> Result<(Outcome, bool)> {
        let client_refused = matches!(error, "invalid_client" | "unauthorized_client");
        let status = match Renewal::parse(row.renewal.as_deref()) {
            Some(Renewal::ClientCredentials) if client_refused => REVOKED,
            _ => REFRESH_FAILED,
        };
        tracing::warn!(authentication_id = %row.id, error, status, "the provider refused a refresh; no more attempts until the credential is replaced");
        let txn = crate::db::write(&self.inner.db).await?;
        let written = under_claim(row, claim)
            .col_expr(Column::Status, Expr::value(status))
            .col_expr(Column::RefreshAttempts, Expr::value(row.refresh_attempts.saturating_add(1)))
            .col_expr(Column::RefreshDueAt, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(Column::RefreshError, Expr::value(error))
            .exec(&txn)
            .await?;
        if written.rows_affected == 1 {
            authentications::record_refresh_failed(&txn, row, error).await?;
        }
        txn.commit().await?;
        Ok((Outcome::Refused(error.to_owned()), written.rows_affected == 1))
    }

    /// The row can no longer be renewed (its OAuth app or refresh token is gone): it is
    /// no longer due, and its access token's expiry is now a hard one.
    async fn unrenewable(&self, row: &authentication::Model, claim: Uuid) -> Result<()> {
        let txn = crate::db::write(&self.inner.db).await?;
        let written = under_claim(row, claim)
            .col_expr(Column::Renewal, Expr::value(Option::<String>::None))
            .col_expr(Column::RefreshDueAt, Expr::value(Option::<DateTime<Utc>>::None))
            .exec(&txn)
            .await?;
        if written.rows_affected == 1 {
            authentications::set_hard_expiry(&txn, row, row.expires_at).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Gives a claim back unused.
    async fn release(&self, row: &authentication::Model, claim: Uuid) -> Result<()> {
        under_claim(row, claim).exec(&self.inner.db).await?;
        Ok(())
    }

    /// One pass of the background job ([`crate::workers::refresh`]): renews what is due
    /// (near expiry, or idle). Returns how many refreshes it ran.
    pub async fn pass(&self) -> Result<usize> {
        let (claim, ids) = self.claim_batch().await?;
        let count = ids.len();
        let mut running = JoinSet::new();
        for id in ids {
            while running.len() >= CONCURRENT {
                log_failure(running.join_next().await);
            }
            let refresher = self.clone();
            running.spawn(async move { refresher.run(id, claim).await });
        }
        while let Some(done) = running.join_next().await {
            log_failure(Some(done));
        }
        Ok(count)
    }

    /// Between two passes of the background job; `None`: there is none.
    pub fn interval(&self) -> Option<StdDuration> {
        self.inner.config.interval
    }
}

fn log_failure(done: Option<std::result::Result<Result<Outcome>, tokio::task::JoinError>>) {
    match done {
        Some(Ok(Err(err))) => tracing::error!(error = ?err, "a background refresh failed"),
        Some(Err(err)) => tracing::error!(error = %err, "a background refresh task ended abnormally"),
        _ => {}
    }
}

/// Why no answer came back.
enum Attempt {
    Provider(OAuthError),
    Other(Error),
}

impl From<Error> for Attempt {
    fn from(err: Error) -> Self {
        Attempt::Other(err)
    }
}

enum Stored {
    /// The answer does not fit the environment's schemas.
    Unfit,
    Db(Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_attempt_up_to_an_hour_and_is_jittered_down_by_at_most_half() {
        let base = StdDuration::from_secs(30);
        for (attempts, full) in [(1, 30), (2, 60), (3, 120), (8, 3600), (40, 3600)] {
            for _ in 0..20 {
                let wait = backoff(base, attempts);
                let full = StdDuration::from_secs(full);
                assert!(wait <= full && wait >= full / 2, "attempt {attempts}: {wait:?}");
            }
        }
    }
}

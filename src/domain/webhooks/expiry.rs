//! `authentication.expiring`: a warning, a set time before an authentication's hard
//! expiry (when it stops working whatever refreshes happen: a refresh token's own
//! lifetime, a long-lived token's end). Whoever learns the hard expiry records it with
//! [`crate::domain::authentications::set_hard_expiry`]; the webhook worker runs [`scan`]
//! every [`SCAN_INTERVAL`] on every replica, and each hard expiry is reported once.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType},
};

use super::events::{self, AuthenticationChange};
use crate::{
    domain::audit,
    error::{Error, Result},
    ids::OrgId,
};
use entity::authentication;

/// How often the worker looks for authentications to warn about.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(3600);
/// Rows warned about per transaction.
const BATCH: u64 = 100;

/// Writes `authentication.expiring` for every authentication whose hard expiry falls
/// within `within` of `now` (or has passed) and has not been reported yet; returns how
/// many. Each batch is one transaction that locks its rows (PostgreSQL: skipping rows
/// another replica's scan holds), so each expiry is reported once across replicas.
pub async fn scan(db: &DatabaseConnection, now: DateTime<Utc>, within: Duration) -> Result<u64> {
    let horizon = now + TimeDelta::from_std(within).map_err(Error::internal)?;
    let mut reported = 0;
    loop {
        let txn = crate::db::write(db).await?;
        let rows = authentication::Entity::find()
            .filter(authentication::Column::HardExpiresAt.lte(horizon))
            .filter(
                Condition::any().add(authentication::Column::ExpiryReportedFor.is_null()).add(
                    Expr::col(authentication::Column::ExpiryReportedFor)
                        .ne(Expr::col(authentication::Column::HardExpiresAt)),
                ),
            )
            .order_by_asc(authentication::Column::HardExpiresAt)
            .limit(BATCH)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .all(&txn)
            .await?;
        let found = rows.len() as u64;
        for row in rows {
            let Some(expires_at) = row.hard_expires_at else { continue };
            events::authentication(&txn, &row, AuthenticationChange::Expiring { expires_at }).await?;
            audit::record(&txn, OrgId(row.org_id), audit::Actor::System, "authentication.expiring", Some(row.id))
                .await?;
            let mut active: authentication::ActiveModel = row.into();
            active.expiry_reported_for = Set(Some(expires_at));
            authentication::Entity::update(active).exec(&txn).await?;
        }
        txn.commit().await?;
        reported += found;
        if found < BATCH {
            return Ok(reported);
        }
    }
}

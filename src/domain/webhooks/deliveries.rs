//! Deliveries: one event on its way to one endpoint, the log of its attempts, and the
//! claims that let every replica send without two sending the same one at once.
//!
//! A replica claims due deliveries in one short write transaction (PostgreSQL: `FOR
//! UPDATE SKIP LOCKED`, so replicas claim different rows without waiting for each other;
//! SQLite: the database's write lock) and stamps each with a lease: a deadline and a
//! token of its own. Until the deadline no one else claims it; the result is recorded
//! only under the same token. A replica killed mid-delivery leaves its lease to expire,
//! and the delivery is claimed again: at least once, never twice at the same time.
//!
//! A delivery is due when its next attempt time has come, its endpoint is enabled, and
//! no delivery of the same subject to the same endpoint is ahead of it (an earlier event
//! still pending) or in flight: events of one authentication or instance arrive in order.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Alias, Expr, ExprTrait, LockBehavior, LockType, Query},
};
use uuid::Uuid;

use super::endpoints;
use crate::{
    auth::MasterScope,
    crypto::{KeyringHandle, Sensitive},
    domain::{
        audit,
        pagination::{Page, PageRequest},
    },
    error::{Error, Result},
    ids::{OrgId, WebhookDeliveryId, WebhookEndpointId},
};
use entity::{webhook_attempt, webhook_delivery, webhook_endpoint, webhook_event};

/// The state of a delivery not yet finished, as stored.
const PENDING: &str = DeliveryState::Pending.as_str();
/// How long finished deliveries, their log and their events are kept.
pub const RETENTION: TimeDelta = TimeDelta::days(30);
/// The most of an answer the log keeps, in characters.
pub const MAX_EXCERPT: usize = 200;

named_enum! {
    pub enum DeliveryState {
        /// Waiting for its next attempt, or being sent.
        Pending = "pending",
        /// An attempt was answered with a 2xx status.
        Delivered = "delivered",
        /// Every attempt of the schedule failed.
        Failed = "failed",
    }
}

named_enum! {
    /// Why an attempt did not deliver.
    pub enum ErrorClass {
        /// The endpoint answered a status other than 2xx (redirects are not followed).
        HttpStatus = "http_status",
        /// No answer within the time limit.
        Timeout = "timeout",
        /// The connection could not be made or broke.
        Connect = "connect",
        /// The endpoint's host resolves only to addresses outbound calls refuse.
        RefusedAddress = "refused_address",
        /// The answer was larger than outbound calls read.
        AnswerTooLarge = "answer_too_large",
        /// The URL cannot be called.
        InvalidUrl = "invalid_url",
        /// latchkey could not prepare the request (logged).
        Internal = "internal",
    }
}

/// The waits between attempts: attempt `n + 1` follows attempt `n` after `delays[n - 1]`,
/// stretched or shrunk by up to a fifth at random so receivers that failed together are
/// not retried together. After the last attempt fails the delivery is given up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl Default for RetrySchedule {
    /// Ten attempts over about a day: 10 s, 1 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h, 8 h.
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Self {
            delays: vec![
                Duration::from_secs(10),
                minutes(1),
                minutes(10),
                minutes(30),
                minutes(60),
                minutes(120),
                minutes(240),
                minutes(480),
                minutes(480),
            ],
        }
    }
}

impl RetrySchedule {
    pub const MAX_RETRIES: usize = 20;
    pub const MAX_DELAY: Duration = Duration::from_secs(48 * 3600);

    /// Parses `LATCHKEY_WEBHOOK_RETRY_SCHEDULE`: comma-separated waits, each a whole
    /// number with a unit (`ms`, `s`, `m`, `h`), such as `10s,1m,10m,1h`. An empty list
    /// means one attempt and no retry.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self { delays: Vec::new() });
        }
        let delays =
            text.split(',').map(|part| parse_duration(part.trim())).collect::<std::result::Result<Vec<_>, _>>()?;
        if delays.len() > Self::MAX_RETRIES {
            return Err(format!("at most {} waits", Self::MAX_RETRIES));
        }
        Ok(Self { delays })
    }

    /// How many attempts a delivery gets.
    pub fn attempts(&self) -> usize {
        self.delays.len() + 1
    }

    /// The wait after `made` failed attempts, or `None` when the delivery is given up.
    fn wait_after(&self, made: usize) -> Option<Duration> {
        let delay = *self.delays.get(made.checked_sub(1)?)?;
        let fraction = f64::from(u32::from_le_bytes(crate::crypto::random_bytes::<4>())) / f64::from(u32::MAX);
        Some(delay.mul_f64(0.8 + 0.4 * fraction))
    }
}

fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("{text:?} is not a wait such as 500ms, 10s, 5m or 2h");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let delay = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if delay > RetrySchedule::MAX_DELAY {
        return Err(format!("{text:?} is longer than 48h"));
    }
    Ok(delay)
}

/// A delivery as the delivery log shows it.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: WebhookDeliveryId,
    pub endpoint_id: WebhookEndpointId,
    /// The `webhook-id` header: the same on every attempt and redelivery of the event.
    pub event_id: Uuid,
    pub event_type: String,
    pub subject_id: Uuid,
    /// The exact body sent (ids and names only).
    pub payload: String,
    pub state: DeliveryState,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Oldest first.
    pub attempts: Vec<Attempt>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub number: i32,
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub http_status: Option<i32>,
    pub error_class: Option<ErrorClass>,
    /// At most [`MAX_EXCERPT`] characters of the answer's body.
    pub response_excerpt: Option<String>,
}

/// Queues `event_seq` for one endpoint, due at once; part of the change's transaction.
pub(super) async fn enqueue(
    conn: &impl ConnectionTrait,
    org_id: OrgId,
    endpoint_id: Uuid,
    event_seq: i64,
    subject: Uuid,
    now: DateTime<Utc>,
) -> Result<webhook_delivery::Model> {
    let row = webhook_delivery::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(org_id.0),
        endpoint_id: Set(endpoint_id),
        event_seq: Set(event_seq),
        subject_id: Set(subject),
        state: Set(PENDING.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        lease_until: Set(None),
        lease_token: Set(None),
        delivered_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Ok(webhook_delivery::Entity::insert(row).exec_with_returning(conn).await?)
}

/// Adds each row's event and attempts: two statements for any number of rows.
async fn assemble(conn: &impl ConnectionTrait, rows: Vec<webhook_delivery::Model>) -> Result<Vec<Delivery>> {
    let seqs: Vec<i64> = rows.iter().map(|row| row.event_seq).collect();
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let events: std::collections::HashMap<i64, webhook_event::Model> = webhook_event::Entity::find()
        .filter(webhook_event::Column::Seq.is_in(seqs))
        .all(conn)
        .await?
        .into_iter()
        .map(|event| (event.seq, event))
        .collect();
    let mut attempts: std::collections::HashMap<Uuid, Vec<Attempt>> = std::collections::HashMap::new();
    let attempt_rows = webhook_attempt::Entity::find()
        .filter(webhook_attempt::Column::DeliveryId.is_in(ids))
        .order_by_asc(webhook_attempt::Column::Number)
        .all(conn)
        .await?;
    for row in attempt_rows {
        attempts.entry(row.delivery_id).or_default().push(Attempt {
            number: row.number,
            attempted_at: row.attempted_at,
            duration_ms: row.duration_ms,
            http_status: row.http_status,
            error_class: row.error_class.as_deref().and_then(ErrorClass::parse),
            response_excerpt: row.response_excerpt,
        });
    }
    rows.into_iter()
        .map(|row| {
            let event = events
                .get(&row.event_seq)
                .ok_or_else(|| Error::internal(anyhow::anyhow!("delivery {} lost its event", row.id)))?;
            let state = DeliveryState::parse(&row.state)
                .ok_or_else(|| Error::internal(anyhow::anyhow!("delivery {} has an unknown state", row.id)))?;
            Ok(Delivery {
                id: WebhookDeliveryId(row.id),
                endpoint_id: WebhookEndpointId(row.endpoint_id),
                event_id: event.id,
                event_type: event.event_type.clone(),
                subject_id: row.subject_id,
                payload: event.payload.clone(),
                state,
                next_attempt_at: (state == DeliveryState::Pending).then_some(row.next_attempt_at),
                delivered_at: row.delivered_at,
                created_at: row.created_at,
                attempts: attempts.remove(&row.id).unwrap_or_default(),
            })
        })
        .collect()
}

/// The delivery log of one of the organization's endpoints, oldest first.
pub async fn list(
    conn: &impl ConnectionTrait,
    scope: &MasterScope,
    endpoint_id: WebhookEndpointId,
    page: &PageRequest,
) -> Result<Page<Delivery>> {
    endpoints::find_row(conn, scope.org_id(), endpoint_id, false).await?;
    let select = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::OrgId.eq(scope.org_id().0))
        .filter(webhook_delivery::Column::EndpointId.eq(endpoint_id.0));
    let mut page = page.fetch(conn, select, webhook_delivery::Column::Id, |row| row.id).await?;
    let items = assemble(conn, std::mem::take(&mut page.items)).await?;
    Ok(page.with_items(items))
}

async fn one(conn: &impl ConnectionTrait, id: Uuid) -> Result<Delivery> {
    let row = webhook_delivery::Entity::find_by_id(id).one(conn).await?.ok_or(Error::NotFound("webhook delivery"))?;
    assemble(conn, vec![row]).await?.pop().ok_or(Error::NotFound("webhook delivery"))
}

/// Sends a delivery's event to its endpoint again, as soon as its turn comes, with the
/// same `webhook-id`. A delivery still pending is made due now; a finished one gets a
/// new delivery beside it (the log keeps both). Refused while the endpoint is disabled.
pub async fn redeliver(db: &DatabaseConnection, scope: &MasterScope, id: WebhookDeliveryId) -> Result<Delivery> {
    let org_id = scope.org_id();
    let txn = crate::db::write(db).await?;
    let row = webhook_delivery::Entity::find_by_id(id.0)
        .filter(webhook_delivery::Column::OrgId.eq(org_id.0))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or(Error::NotFound("webhook delivery"))?;
    let endpoint = endpoints::find_row(&txn, org_id, WebhookEndpointId(row.endpoint_id), true).await?;
    if !endpoint.enabled {
        return Err(Error::Conflict("the webhook endpoint is disabled; enable it to redeliver".to_owned()));
    }
    let now = Utc::now();
    let pending = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::EndpointId.eq(row.endpoint_id))
        .filter(webhook_delivery::Column::EventSeq.eq(row.event_seq))
        .filter(webhook_delivery::Column::State.eq(PENDING))
        .one(&txn)
        .await?;
    let target = match pending {
        Some(pending) => {
            webhook_delivery::Entity::update_many()
                .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(now))
                .col_expr(webhook_delivery::Column::UpdatedAt, Expr::value(now))
                .filter(webhook_delivery::Column::Id.eq(pending.id))
                .exec(&txn)
                .await?;
            pending.id
        }
        None => enqueue(&txn, org_id, row.endpoint_id, row.event_seq, row.subject_id, now).await?.id,
    };
    audit::record(&txn, org_id, scope.into(), "webhook_delivery.redelivered", Some(target)).await?;
    txn.commit().await?;
    one(db, target).await
}

// ---------------------------------------------------------------------------------------
// Sending: claims, leases and results, for the worker

/// A delivery this replica holds the lease of.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub delivery_id: Uuid,
    lease_token: Uuid,
    /// Which attempt this is, from 1.
    pub attempt: i32,
    endpoint_id: Uuid,
    event_seq: i64,
}

/// The pending deliveries that are due at `now`, as one select (see the module's notes).
fn due(now: DateTime<Utc>) -> sea_orm::Select<webhook_delivery::Entity> {
    use webhook_delivery::{Column, Entity};
    let other = Alias::new("other");
    let same = |column: Column| Expr::col((other.clone(), column)).equals((Entity, column));
    let mut ahead = Query::select();
    ahead
        .expr(Expr::val(1))
        .from_as(Entity, other.clone())
        .and_where(same(Column::EndpointId))
        .and_where(same(Column::SubjectId))
        .and_where(Expr::col((other.clone(), Column::State)).eq(PENDING))
        .and_where(Expr::col((other.clone(), Column::Id)).ne(Expr::col((Entity, Column::Id))))
        .cond_where(
            Condition::any()
                // An earlier event of the subject still waits ...
                .add(Expr::col((other.clone(), Column::EventSeq)).lt(Expr::col((Entity, Column::EventSeq))))
                .add(
                    Condition::all()
                        .add(same(Column::EventSeq))
                        .add(Expr::col((other.clone(), Column::Id)).lt(Expr::col((Entity, Column::Id)))),
                )
                // ... or one of its deliveries is being sent.
                .add(Expr::col((other, Column::LeaseUntil)).gt(now)),
        );
    let mut enabled = Query::select();
    enabled
        .expr(Expr::val(1))
        .from(webhook_endpoint::Entity)
        .and_where(
            Expr::col((webhook_endpoint::Entity, webhook_endpoint::Column::Id)).equals((Entity, Column::EndpointId)),
        )
        .and_where(Expr::col((webhook_endpoint::Entity, webhook_endpoint::Column::Enabled)).eq(true));
    Entity::find()
        .filter(Column::State.eq(PENDING))
        .filter(Column::NextAttemptAt.lte(now))
        .filter(Condition::any().add(Column::LeaseUntil.is_null()).add(Column::LeaseUntil.lte(now)))
        .filter(Expr::exists(enabled))
        .filter(Expr::exists(ahead).not())
        .order_by_asc(Column::NextAttemptAt)
        .order_by_asc(Column::EventSeq)
}

/// Claims up to `batch` due deliveries for `lease`. A cheap read first, so an idle
/// replica never takes SQLite's write lock.
pub async fn claim(db: &DatabaseConnection, batch: u64, lease: Duration) -> Result<Vec<Claimed>> {
    let now = Utc::now();
    if due(now)
        .select_only()
        .column(webhook_delivery::Column::Id)
        .limit(1)
        .into_tuple::<Uuid>()
        .one(db)
        .await?
        .is_none()
    {
        return Ok(Vec::new());
    }
    let txn = crate::db::write(db).await?;
    let rows = due(now).limit(batch).lock_with_behavior(LockType::Update, LockBehavior::SkipLocked).all(&txn).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let token = Uuid::new_v4();
    let until = now + TimeDelta::from_std(lease).map_err(Error::internal)?;
    webhook_delivery::Entity::update_many()
        .col_expr(webhook_delivery::Column::LeaseUntil, Expr::value(until))
        .col_expr(webhook_delivery::Column::LeaseToken, Expr::value(token))
        .filter(webhook_delivery::Column::Id.is_in(rows.iter().map(|row| row.id)))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(rows
        .into_iter()
        .map(|row| Claimed {
            delivery_id: row.id,
            lease_token: token,
            attempt: row.attempts + 1,
            endpoint_id: row.endpoint_id,
            event_seq: row.event_seq,
        })
        .collect())
}

/// What to send for a claimed delivery.
pub struct Outgoing {
    /// The `webhook-id`.
    pub event_id: Uuid,
    pub url: String,
    pub payload: String,
    /// The endpoint's signing keys: the current one, and the previous one during its grace.
    pub keys: Vec<Sensitive<Vec<u8>>>,
}

/// The request of a claimed delivery; `None` when its endpoint was disabled or removed
/// since the claim (the lease is given back, and nothing is attempted).
pub async fn outgoing(db: &DatabaseConnection, keyring: &KeyringHandle, claimed: &Claimed) -> Result<Option<Outgoing>> {
    let endpoint = webhook_endpoint::Entity::find_by_id(claimed.endpoint_id).one(db).await?;
    let event = webhook_event::Entity::find_by_id(claimed.event_seq).one(db).await?;
    let (Some(endpoint), Some(event)) = (endpoint.filter(|endpoint| endpoint.enabled), event) else {
        webhook_delivery::Entity::update_many()
            .col_expr(webhook_delivery::Column::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(webhook_delivery::Column::LeaseToken, Expr::value(Option::<Uuid>::None))
            .filter(webhook_delivery::Column::Id.eq(claimed.delivery_id))
            .filter(webhook_delivery::Column::LeaseToken.eq(claimed.lease_token))
            .exec(db)
            .await?;
        return Ok(None);
    };
    let keys = endpoints::signing_keys(keyring, &endpoint, Utc::now())?;
    Ok(Some(Outgoing { event_id: event.id, url: endpoint.url, payload: event.payload, keys }))
}

/// How one attempt went.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub attempted_at: DateTime<Utc>,
    pub duration: Duration,
    pub http_status: Option<u16>,
    pub error_class: Option<ErrorClass>,
    pub response_excerpt: Option<String>,
}

impl Outcome {
    /// An answer: delivered on 2xx, otherwise an `http_status` failure.
    pub fn answered(attempted_at: DateTime<Utc>, duration: Duration, status: u16, body: &[u8]) -> Self {
        let error_class = (!(200..300).contains(&status)).then_some(ErrorClass::HttpStatus);
        Self { attempted_at, duration, http_status: Some(status), error_class, response_excerpt: excerpt(body) }
    }

    /// No answer.
    pub fn failed(attempted_at: DateTime<Utc>, duration: Duration, class: ErrorClass) -> Self {
        Self { attempted_at, duration, http_status: None, error_class: Some(class), response_excerpt: None }
    }

    fn delivered(&self) -> bool {
        self.error_class.is_none()
    }
}

/// The start of an answer's body as text, control characters blanked, at most
/// [`MAX_EXCERPT`] characters; `None` for an empty body.
fn excerpt(body: &[u8]) -> Option<String> {
    let head = &body[..body.len().min(MAX_EXCERPT * 4)];
    let text: String =
        String::from_utf8_lossy(head).chars().take(MAX_EXCERPT).map(|c| if c.is_control() { ' ' } else { c }).collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Records an attempt under the claim's lease: delivered, retried later by `schedule`,
/// or given up. False when the lease was lost meanwhile (another replica claimed the
/// delivery after it expired); then nothing is written.
pub async fn record(
    db: &DatabaseConnection,
    schedule: &RetrySchedule,
    claimed: &Claimed,
    outcome: &Outcome,
) -> Result<bool> {
    let txn = crate::db::write(db).await?;
    let Some(row) = webhook_delivery::Entity::find_by_id(claimed.delivery_id)
        .filter(webhook_delivery::Column::LeaseToken.eq(claimed.lease_token))
        .filter(webhook_delivery::Column::State.eq(PENDING))
        .lock_exclusive()
        .one(&txn)
        .await?
    else {
        return Ok(false);
    };
    let now = Utc::now();
    let made = row.attempts + 1;
    let mut active: webhook_delivery::ActiveModel = row.into();
    active.attempts = Set(made);
    active.lease_until = Set(None);
    active.lease_token = Set(None);
    active.updated_at = Set(now);
    if outcome.delivered() {
        active.state = Set(DeliveryState::Delivered.as_str().to_owned());
        active.delivered_at = Set(Some(now));
    } else {
        match schedule.wait_after(usize::try_from(made).unwrap_or(usize::MAX)) {
            Some(wait) => active.next_attempt_at = Set(now + TimeDelta::from_std(wait).map_err(Error::internal)?),
            None => active.state = Set(DeliveryState::Failed.as_str().to_owned()),
        }
    }
    webhook_delivery::Entity::update(active).exec(&txn).await?;
    webhook_attempt::Entity::insert(webhook_attempt::ActiveModel {
        id: Set(Uuid::now_v7()),
        delivery_id: Set(claimed.delivery_id),
        number: Set(made),
        attempted_at: Set(outcome.attempted_at),
        duration_ms: Set(i64::try_from(outcome.duration.as_millis()).unwrap_or(i64::MAX)),
        http_status: Set(outcome.http_status.map(i32::from)),
        error_class: Set(outcome.error_class.map(|class| class.as_str().to_owned())),
        response_excerpt: Set(outcome.response_excerpt.clone()),
    })
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok(true)
}

/// Deletes deliveries finished before `cutoff` (with their log), then events older than
/// it that no delivery needs any more. Returns how many deliveries went.
pub async fn purge(db: &DatabaseConnection, cutoff: DateTime<Utc>) -> Result<u64> {
    let deliveries = webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::State.ne(PENDING))
        .filter(webhook_delivery::Column::UpdatedAt.lt(cutoff))
        .exec(db)
        .await?
        .rows_affected;
    let mut needed = Query::select();
    needed.expr(Expr::val(1)).from(webhook_delivery::Entity).and_where(
        Expr::col((webhook_delivery::Entity, webhook_delivery::Column::EventSeq))
            .equals((webhook_event::Entity, webhook_event::Column::Seq)),
    );
    webhook_event::Entity::delete_many()
        .filter(webhook_event::Column::CreatedAt.lt(cutoff))
        .filter(Expr::exists(needed).not())
        .exec(db)
        .await?;
    Ok(deliveries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_gives_ten_attempts_over_about_a_day() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.attempts(), 10);
        let total: Duration = schedule.delays.iter().sum();
        assert!(total > Duration::from_secs(20 * 3600) && total < Duration::from_secs(28 * 3600), "{total:?}");
    }

    #[test]
    fn waits_are_jittered_within_a_fifth_and_end_with_the_schedule() {
        let schedule = RetrySchedule::parse("10s, 1m").unwrap();
        for _ in 0..100 {
            let wait = schedule.wait_after(1).unwrap();
            assert!(wait >= Duration::from_secs(8) && wait <= Duration::from_secs(12), "{wait:?}");
        }
        assert!(schedule.wait_after(2).unwrap() >= Duration::from_secs(48));
        assert_eq!(schedule.wait_after(3), None, "three attempts, then given up");
        assert_eq!(schedule.attempts(), 3);
    }

    #[test]
    fn schedules_parse_units_and_refuse_anything_else() {
        assert_eq!(
            RetrySchedule::parse("500ms,2s,3m,1h").unwrap().delays,
            [Duration::from_millis(500), Duration::from_secs(2), Duration::from_secs(180), Duration::from_secs(3600)]
        );
        assert_eq!(RetrySchedule::parse("").unwrap().attempts(), 1);
        for bad in ["10", "s", "-1s", "1d", "49h", "1s,,2s", "1.5s"] {
            assert!(RetrySchedule::parse(bad).is_err(), "{bad} was accepted");
        }
        assert!(RetrySchedule::parse(&vec!["1s"; 21].join(",")).is_err());
    }

    #[test]
    fn an_excerpt_is_short_printable_text() {
        assert_eq!(excerpt(b""), None);
        assert_eq!(excerpt(b"  nope\r\n").as_deref(), Some("nope"));
        assert_eq!(excerpt(&[b'a'; 10_000]).unwrap().len(), MAX_EXCERPT);
        assert_eq!(excerpt(&[0xff, b'o', b'k']).as_deref(), Some("\u{fffd}ok"));
    }
}

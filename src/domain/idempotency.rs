//! Idempotency keys: a create retried with the same key makes one row and gets the same
//! answer for [`KEY_LIFETIME`]; the same key with a different request is a `CONFLICT`.
//!
//! A key belongs to its caller (the organization's master tokens, or one end user), so
//! two callers never see each other's keys. The record is the first write of the create's
//! own transaction: a crash cannot separate it from the row, and of two concurrent
//! duplicates the second waits for the first on the unique (organization, caller, key)
//! and then replays it. Requests are compared by an HMAC under a server secret over a
//! canonical form, so the database never holds anything from which a credential in the
//! request could be recovered.

use std::sync::Arc;

use chrono::{Duration, Utc};
use hmac::{Hmac, Mac};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::OnConflict,
};
use serde_json::Value;
use sha2::Sha256;
use uuid::Uuid;

use crate::{
    auth::{Caller, MasterScope, UserScope},
    crypto,
    error::{Error, Result},
    ids::OrgId,
};
use entity::idempotency_key;

/// How long a key replays its create.
pub const KEY_LIFETIME: Duration = Duration::hours(24);
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// Expired records removed per keyed create, so purging never grows with the backlog.
const PURGE_BATCH: u64 = 100;

/// A client's idempotency key: 1 to [`MAX_KEY_LEN`] printable ASCII characters.
#[derive(Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(key: &str) -> Result<Self> {
        let printable = key.bytes().all(|byte| (0x20..=0x7e).contains(&byte));
        if key.is_empty() || key.len() > MAX_KEY_LEN || !printable {
            return Err(Error::bad_input(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} printable ASCII characters"
            )));
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdempotencyKey(..)")
    }
}

/// The server secret that fingerprints requests. Derived from a secret kept outside the
/// database, so a copy of the database alone cannot test guesses of a credential against
/// a fingerprint.
#[derive(Clone)]
pub struct Fingerprinter(Arc<[u8; 32]>);

impl Fingerprinter {
    /// Derives the fingerprint key from `secret` under its own label, so it is never the
    /// secret itself.
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(b"latchkey/idempotency-fingerprint/v1");
        Self(Arc::new(mac.finalize().into_bytes().into()))
    }

    fn fingerprint(&self, operation: &str, request: &Value) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_slice()).expect("HMAC takes keys of any length");
        mac.update(operation.as_bytes());
        mac.update(&[0]);
        let mut canonical = Vec::new();
        write_canonical(request, &mut canonical);
        mac.update(&canonical);
        crypto::hex(&mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprinter([redacted])")
    }
}

/// JSON with object members sorted by name, so the same request always gives the same
/// bytes whatever the order its client wrote them in.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(members) => {
            let mut members: Vec<(&String, &Value)> = members.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (index, (name, member)) in members.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(&Value::String(name.clone()), out);
                out.push(b':');
                write_canonical(member, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

/// A create's key, with what it takes to fingerprint the request.
#[derive(Clone, Debug)]
pub struct Idempotency {
    key: IdempotencyKey,
    fingerprinter: Fingerprinter,
}

impl Idempotency {
    pub fn new(key: IdempotencyKey, fingerprinter: Fingerprinter) -> Self {
        Self { key, fingerprinter }
    }

    /// The record a create of `operation` with `request` will make under this key.
    pub fn claim(&self, scope: KeyScope, operation: &'static str, request: &Value) -> Claim {
        Claim {
            scope,
            key: self.key.0.clone(),
            operation,
            fingerprint: self.fingerprinter.fingerprint(operation, request),
        }
    }
}

/// Whose keys: an organization's master tokens share theirs, each end user has their own.
#[derive(Clone, Debug)]
pub struct KeyScope {
    org_id: OrgId,
    caller: String,
}

impl From<&MasterScope> for KeyScope {
    fn from(scope: &MasterScope) -> Self {
        Self { org_id: scope.org_id(), caller: "master".to_owned() }
    }
}

impl From<&UserScope> for KeyScope {
    fn from(scope: &UserScope) -> Self {
        Self { org_id: scope.org_id(), caller: scope.user_id().to_string() }
    }
}

impl From<Caller<'_>> for KeyScope {
    fn from(caller: Caller<'_>) -> Self {
        match caller {
            Caller::Master(scope) => scope.into(),
            Caller::User(scope) => scope.into(),
        }
    }
}

/// The record a keyed create makes.
#[derive(Debug)]
pub struct Claim {
    scope: KeyScope,
    key: String,
    operation: &'static str,
    fingerprint: String,
}

/// Fingerprints `request` only when there is a key.
pub fn claim(
    idempotency: Option<&Idempotency>,
    scope: impl Into<KeyScope>,
    operation: &'static str,
    request: impl FnOnce() -> Value,
) -> Option<Claim> {
    idempotency.map(|idempotency| idempotency.claim(scope.into(), operation, &request()))
}

/// How a create goes on.
pub enum Begun {
    /// Create the row with the id given to [`begin`], in this transaction, and commit.
    Fresh(DatabaseTransaction),
    /// The key already made this row: answer it again.
    Replay(Uuid),
}

/// Begins a create's transaction. With a claim, its record is the transaction's first
/// write, naming `resource_id` as the row the create is about to make; a live record of
/// the same key answers [`Begun::Replay`] for the same request and `CONFLICT` for another.
pub async fn begin(db: &DatabaseConnection, claim: Option<&Claim>, resource_id: Uuid) -> Result<Begun> {
    let Some(claim) = claim else {
        return Ok(Begun::Fresh(crate::db::write(db).await?));
    };
    purge_expired(db).await;
    if let Some(record) = live_record(db, claim).await? {
        return settle(claim, &record);
    }
    let txn = crate::db::write(db).await?;
    let now = Utc::now();
    let record = idempotency_key::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(claim.scope.org_id.0),
        caller: Set(claim.scope.caller.clone()),
        client_key: Set(claim.key.clone()),
        operation: Set(claim.operation.to_owned()),
        fingerprint: Set(claim.fingerprint.clone()),
        resource_id: Set(resource_id),
        created_at: Set(now),
    };
    // A record of this key that has expired is taken over; a live one (committed, or
    // committed by a concurrent duplicate this statement waited for) is left alone.
    use idempotency_key::Column;
    let on_conflict = OnConflict::columns([Column::OrgId, Column::Caller, Column::ClientKey])
        .update_columns([Column::Operation, Column::Fingerprint, Column::ResourceId, Column::CreatedAt])
        .action_and_where(Column::CreatedAt.lt(now - KEY_LIFETIME))
        .to_owned();
    let written = idempotency_key::Entity::insert(record).on_conflict(on_conflict).exec_without_returning(&txn).await?;
    if written == 1 {
        return Ok(Begun::Fresh(txn));
    }
    txn.rollback().await?;
    match live_record(db, claim).await? {
        Some(record) => settle(claim, &record),
        None => Err(Error::Conflict("a request with this Idempotency-Key is in progress; retry".to_owned())),
    }
}

/// The answer of a replay whose row has been removed since.
pub fn replayed<T>(result: Result<T>, what: &str) -> Result<T> {
    result.map_err(|err| match err {
        Error::NotFound(_) => Error::Conflict(format!(
            "the {what} created with this Idempotency-Key has since been removed; use a new key"
        )),
        other => other,
    })
}

fn settle(claim: &Claim, record: &idempotency_key::Model) -> Result<Begun> {
    let same = record.operation == claim.operation
        && crypto::constant_time_eq(record.fingerprint.as_bytes(), claim.fingerprint.as_bytes());
    if same {
        Ok(Begun::Replay(record.resource_id))
    } else {
        Err(Error::Conflict(
            "this Idempotency-Key was already used with a different request; use a new key for a new request"
                .to_owned(),
        ))
    }
}

async fn live_record(conn: &impl ConnectionTrait, claim: &Claim) -> Result<Option<idempotency_key::Model>> {
    Ok(idempotency_key::Entity::find()
        .filter(idempotency_key::Column::OrgId.eq(claim.scope.org_id.0))
        .filter(idempotency_key::Column::Caller.eq(claim.scope.caller.as_str()))
        .filter(idempotency_key::Column::ClientKey.eq(claim.key.as_str()))
        .filter(idempotency_key::Column::CreatedAt.gte(Utc::now() - KEY_LIFETIME))
        .one(conn)
        .await?)
}

/// Removes up to [`PURGE_BATCH`] expired records. Best effort: expired records are
/// ignored anyway, so a failure only leaves them for the next keyed create. The read comes
/// first so that, in the common case of nothing to purge, no write lock is taken.
async fn purge_expired(db: &DatabaseConnection) {
    let purge = async {
        let expired: Vec<Uuid> = idempotency_key::Entity::find()
            .select_only()
            .column(idempotency_key::Column::Id)
            .filter(idempotency_key::Column::CreatedAt.lt(Utc::now() - KEY_LIFETIME))
            .order_by_asc(idempotency_key::Column::CreatedAt)
            .limit(PURGE_BATCH)
            .into_tuple()
            .all(db)
            .await?;
        if !expired.is_empty() {
            idempotency_key::Entity::delete_many().filter(idempotency_key::Column::Id.is_in(expired)).exec(db).await?;
        }
        Ok::<_, sea_orm::DbErr>(())
    };
    if let Err(err) = purge.await {
        tracing::debug!(error = %err, "purging expired idempotency keys failed; retried on the next keyed create");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_are_one_to_255_printable_ascii_characters() {
        for good in ["a", "order-42/retry 1", "~!@#$%^&*()", &"k".repeat(255)] {
            assert!(IdempotencyKey::parse(good).is_ok(), "{good:?}");
        }
        for bad in ["", &"k".repeat(256), "tab\there", "line\nbreak", "caf\u{e9}", "nul\0"] {
            assert!(matches!(IdempotencyKey::parse(bad), Err(Error::BadInput(_))), "{bad:?}");
        }
    }

    #[test]
    fn the_fingerprint_ignores_member_order_and_nothing_else() {
        let fingerprinter = Fingerprinter::derive(b"a server secret of some length");
        let a = fingerprinter.fingerprint("op", &json!({"a": 1, "b": {"x": [1, 2], "y": "s"}}));
        let b = fingerprinter.fingerprint("op", &json!({"b": {"y": "s", "x": [1, 2]}, "a": 1}));
        assert_eq!(a, b);
        assert_ne!(a, fingerprinter.fingerprint("op", &json!({"a": 1, "b": {"x": [2, 1], "y": "s"}})));
        assert_ne!(a, fingerprinter.fingerprint("other", &json!({"a": 1, "b": {"x": [1, 2], "y": "s"}})));
    }

    #[test]
    fn the_fingerprint_depends_on_the_server_secret() {
        let request = json!({"credentials": {"api_token": "hunter2"}});
        let one = Fingerprinter::derive(b"first server secret").fingerprint("op", &request);
        let two = Fingerprinter::derive(b"second server secret").fingerprint("op", &request);
        assert_ne!(one, two);
        let mut canonical = Vec::new();
        write_canonical(&request, &mut canonical);
        assert_ne!(one, crypto::sha256_hex(&canonical), "not a bare hash of the request");
    }
}

//! Key rotation: re-seal every sealed value under the keyring's active key, online and in
//! batches, and retire a key once nothing uses it.
//!
//! Safety rests on three rules. Rows are read outside any transaction and each batch is
//! written in one short transaction, so a running server is never blocked for long. Each
//! row update is conditional on the key id *and* the exact ciphertext it was read with,
//! so a concurrent write by a running server (which seals with a fresh random nonce, even
//! under the same key) is never overwritten with stale contents. And a row is only ever
//! moved from one key of the ring to another, so a rotation killed at any point leaves
//! every row sealed under some key of the ring: running it again finishes the work.

use std::collections::BTreeMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
    sea_query::Expr,
};

use super::{audit, authentications, catalog, orgs};
use crate::{
    crypto::{Keyring, envelope},
    error::{Error, Result},
    ids::{EnvironmentId, OrgId},
};
use entity::{authentication, server_state, service_environment};

/// Where `installation::verify_keyring` records each key's fingerprint.
const FINGERPRINT_PREFIX: &str = "encryption_key:";

/// How [`usage`] names sealed rows whose key id column is empty (not written by this
/// version; listed so they are seen rather than silently skipped).
pub const NO_KEY_ID: &str = "(none)";

fn reseal_failed(what: &str, id: uuid::Uuid, err: envelope::EnvelopeError) -> Error {
    Error::internal(anyhow::anyhow!("{what} {id} cannot be re-sealed: {err}"))
}

/// One row's new contents, computed before the write transaction starts.
enum Resealed {
    Authentication { row: authentication::Model, credentials: Vec<u8>, user_data: Vec<u8> },
    ClientSecret { row: service_environment::Model, secret: Vec<u8> },
}

/// Authentications (then OAuth client secrets) not yet under the active key, at most
/// `limit` in all, re-sealed in memory. A row that does not open is an error naming it:
/// rotation never writes something it could not read back.
async fn reseal_candidates(db: &DatabaseConnection, keyring: &Keyring, limit: u64) -> Result<Vec<Resealed>> {
    let active = keyring.active().id();
    let mut out = Vec::new();
    let rows =
        authentication::Entity::find().filter(authentication::Column::KeyId.ne(active)).limit(limit).all(db).await?;
    for row in rows {
        let reseal = |field, sealed: &[u8]| {
            envelope::reseal(keyring, &authentications::binding(&row, field), sealed)
                .map_err(|err| reseal_failed("authentication", row.id, err))
        };
        let credentials = reseal(authentications::Field::Credentials, &row.credentials)?;
        let user_data = reseal(authentications::Field::UserData, &row.user_data)?;
        out.push(Resealed::Authentication { row, credentials, user_data });
    }
    let remaining = limit.saturating_sub(out.len() as u64);
    if remaining == 0 {
        return Ok(out);
    }
    let rows = service_environment::Entity::find()
        .filter(service_environment::Column::OauthClientSecret.is_not_null())
        // `key_id <> ?` is not true for NULL, so a secret without a key id is asked for
        // explicitly: it must move too.
        .filter(
            sea_orm::Condition::any()
                .add(service_environment::Column::KeyId.ne(active))
                .add(service_environment::Column::KeyId.is_null()),
        )
        .limit(remaining)
        .all(db)
        .await?;
    for row in rows {
        let (Some(org_id), Some(sealed)) = (row.org_id, row.oauth_client_secret.as_deref()) else {
            // Only built-in environments have no organization, and they hold no secret;
            // skipping one would make every later batch find it again.
            return Err(Error::internal(anyhow::anyhow!(
                "service environment {} holds a client secret but belongs to no organization",
                row.id
            )));
        };
        let binding = catalog::client_secret_binding(OrgId(org_id), EnvironmentId(row.id));
        let secret = envelope::reseal(keyring, &binding, sealed)
            .map_err(|err| reseal_failed("service environment", row.id, err))?;
        out.push(Resealed::ClientSecret { row, secret });
    }
    Ok(out)
}

/// Re-seals up to `batch` rows not yet under the active key, in one transaction; returns
/// how many moved. A row changed since it was read is left alone (the next batch finds it
/// again if it is still under an old key), so fewer than `batch` may move.
pub async fn reseal_batch(db: &DatabaseConnection, keyring: &Keyring, batch: u64) -> Result<u64> {
    if batch == 0 {
        return Ok(0);
    }
    let candidates = reseal_candidates(db, keyring, batch).await?;
    if candidates.is_empty() {
        return Ok(0);
    }
    let active = keyring.active().id();
    let txn = crate::db::write(db).await?;
    let mut moved = 0;
    for candidate in candidates {
        let updated = match candidate {
            Resealed::Authentication { row, credentials, user_data } => {
                authentication::Entity::update_many()
                    .col_expr(authentication::Column::Credentials, Expr::value(credentials))
                    .col_expr(authentication::Column::UserData, Expr::value(user_data))
                    .col_expr(authentication::Column::KeyId, Expr::value(active))
                    .filter(authentication::Column::Id.eq(row.id))
                    .filter(authentication::Column::KeyId.eq(row.key_id))
                    .filter(authentication::Column::Credentials.eq(row.credentials))
                    .filter(authentication::Column::UserData.eq(row.user_data))
                    .exec(&txn)
                    .await?
            }
            Resealed::ClientSecret { row, secret } => {
                let key_id = match row.key_id {
                    Some(key_id) => service_environment::Column::KeyId.eq(key_id),
                    None => service_environment::Column::KeyId.is_null(),
                };
                service_environment::Entity::update_many()
                    .col_expr(service_environment::Column::OauthClientSecret, Expr::value(secret))
                    .col_expr(service_environment::Column::KeyId, Expr::value(active))
                    .filter(service_environment::Column::Id.eq(row.id))
                    .filter(key_id)
                    .filter(service_environment::Column::OauthClientSecret.eq(row.oauth_client_secret))
                    .exec(&txn)
                    .await?
            }
        };
        moved += updated.rows_affected;
    }
    txn.commit().await?;
    Ok(moved)
}

/// Re-seals everything under the active key, batch by batch; returns how many rows moved.
/// Rows a running server rewrites meanwhile under an old key are left to a later run
/// (see [`rows_sealed_by`]) rather than chased forever.
pub async fn reseal_all(db: &DatabaseConnection, keyring: &Keyring, batch: u64) -> Result<u64> {
    reseal_all_with_progress(db, keyring, batch, |_| {}).await
}

/// [`reseal_all`], calling `progress` with the running total after every batch.
pub async fn reseal_all_with_progress(
    db: &DatabaseConnection,
    keyring: &Keyring,
    batch: u64,
    mut progress: impl FnMut(u64),
) -> Result<u64> {
    let mut total = 0;
    loop {
        let moved = reseal_batch(db, keyring, batch.max(1)).await?;
        if moved == 0 {
            return Ok(total);
        }
        total += moved;
        progress(total);
    }
}

/// How many sealed rows (authentications and OAuth client secrets) each key id seals,
/// by key id. Ids may include keys missing from any keyring: that is how an operator
/// finds rows a keyring cannot open.
pub async fn usage(conn: &impl ConnectionTrait) -> Result<Vec<(String, u64)>> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let authentications: Vec<(String, i64)> = authentication::Entity::find()
        .select_only()
        .column(authentication::Column::KeyId)
        .column_as(authentication::Column::Id.count(), "rows")
        .group_by(authentication::Column::KeyId)
        .into_tuple()
        .all(conn)
        .await?;
    let environments: Vec<(Option<String>, i64)> = service_environment::Entity::find()
        .select_only()
        .column(service_environment::Column::KeyId)
        .column_as(service_environment::Column::Id.count(), "rows")
        .filter(service_environment::Column::OauthClientSecret.is_not_null())
        .group_by(service_environment::Column::KeyId)
        .into_tuple()
        .all(conn)
        .await?;
    let rows = authentications
        .into_iter()
        .chain(environments.into_iter().map(|(key_id, n)| (key_id.unwrap_or_else(|| NO_KEY_ID.to_owned()), n)));
    for (key_id, n) in rows {
        *counts.entry(key_id).or_default() += u64::try_from(n).unwrap_or(0);
    }
    Ok(counts.into_iter().collect())
}

/// How many sealed rows one key seals.
pub async fn rows_sealed_by(conn: &impl ConnectionTrait, key_id: &str) -> Result<u64> {
    let authentications =
        authentication::Entity::find().filter(authentication::Column::KeyId.eq(key_id)).count(conn).await?;
    let environments = service_environment::Entity::find()
        .filter(service_environment::Column::OauthClientSecret.is_not_null())
        .filter(service_environment::Column::KeyId.eq(key_id))
        .count(conn)
        .await?;
    Ok(authentications + environments)
}

/// Records an installation-wide operator action in every organization's audit trail:
/// each organization's secrets are affected, and the trail is per organization.
async fn record_for_every_org(conn: &impl ConnectionTrait, action: &str) -> Result<()> {
    for org in orgs::list(conn).await? {
        audit::record(conn, org.id, audit::Actor::System, action, None).await?;
    }
    Ok(())
}

/// Audits a finished rotation (`encryption_key.rotated`, actor `system`).
pub async fn record_rotation(db: &DatabaseConnection) -> Result<()> {
    record_for_every_org(db, "encryption_key.rotated").await
}

/// Forgets a key: deletes its fingerprint so the database no longer expects it. Refused
/// for the active key and while any row is sealed under it; an id neither in the keyring
/// nor recorded in the database is not found (most likely a typo).
pub async fn retire(db: &DatabaseConnection, keyring: &Keyring, key_id: &str) -> Result<()> {
    if keyring.active().id() == key_id {
        return Err(Error::Conflict(format!(
            "key {key_id} is the active key and cannot be retired; rotate to a new key first"
        )));
    }
    let txn = crate::db::write(db).await?;
    let used = rows_sealed_by(&txn, key_id).await?;
    if used > 0 {
        return Err(Error::Conflict(format!(
            "key {key_id} still seals {used} row(s); run `latchkey keys rotate` first"
        )));
    }
    let deleted = server_state::Entity::delete_by_id(format!("{FINGERPRINT_PREFIX}{key_id}")).exec(&txn).await?;
    if deleted.rows_affected == 0 && keyring.get(key_id).is_none() {
        return Err(Error::NotFound("encryption key"));
    }
    record_for_every_org(&txn, "encryption_key.retired").await?;
    txn.commit().await?;
    Ok(())
}

//! Key rotation: re-seal every sealed value under the keyring's active key, online and in
//! batches, and retire a key once nothing uses it. Each batch is one transaction and each
//! row update is conditional on the key it was read under, so a concurrent write by a
//! running server is never overwritten, and a rotation killed at any point leaves every
//! row sealed under some key of the ring: running it again finishes the work.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
    TransactionTrait, sea_query::Expr,
};

use super::{authentications, catalog};
use crate::{
    crypto::{Keyring, envelope},
    error::{Error, Result},
    ids::{EnvironmentId, OrgId},
};
use entity::{authentication, server_state, service_environment};

fn reseal_failed(what: &str, id: uuid::Uuid, err: envelope::EnvelopeError) -> Error {
    Error::internal(anyhow::anyhow!("{what} {id} cannot be re-sealed: {err}"))
}

/// Re-seals up to `batch` rows not yet under the active key; returns how many moved.
pub async fn reseal_batch(db: &DatabaseConnection, keyring: &Keyring, batch: u64) -> Result<u64> {
    let active = keyring.active().id().to_owned();
    let txn = db.begin().await?;
    let mut moved = 0;
    let rows = authentication::Entity::find()
        .filter(authentication::Column::KeyId.ne(active.as_str()))
        .limit(batch)
        .all(&txn)
        .await?;
    for row in rows {
        let reseal = |field, sealed: &[u8]| {
            envelope::reseal(keyring, &authentications::binding(&row, field), sealed)
                .map_err(|err| reseal_failed("authentication", row.id, err))
        };
        let credentials = reseal(authentications::Field::Credentials, &row.credentials)?;
        let user_data = reseal(authentications::Field::UserData, &row.user_data)?;
        let updated = authentication::Entity::update_many()
            .col_expr(authentication::Column::Credentials, Expr::value(credentials))
            .col_expr(authentication::Column::UserData, Expr::value(user_data))
            .col_expr(authentication::Column::KeyId, Expr::value(active.as_str()))
            .filter(authentication::Column::Id.eq(row.id))
            .filter(authentication::Column::KeyId.eq(row.key_id.as_str()))
            .exec(&txn)
            .await?;
        moved += updated.rows_affected;
    }
    let remaining = batch.saturating_sub(moved);
    if remaining > 0 {
        let rows = service_environment::Entity::find()
            .filter(service_environment::Column::OauthClientSecret.is_not_null())
            .filter(service_environment::Column::KeyId.ne(active.as_str()))
            .limit(remaining)
            .all(&txn)
            .await?;
        for row in rows {
            let (Some(org_id), Some(sealed)) = (row.org_id, row.oauth_client_secret.as_deref()) else {
                continue;
            };
            let binding = catalog::client_secret_binding(OrgId(org_id), EnvironmentId(row.id));
            let resealed = envelope::reseal(keyring, &binding, sealed)
                .map_err(|err| reseal_failed("service environment", row.id, err))?;
            let updated = service_environment::Entity::update_many()
                .col_expr(service_environment::Column::OauthClientSecret, Expr::value(resealed))
                .col_expr(service_environment::Column::KeyId, Expr::value(active.as_str()))
                .filter(service_environment::Column::Id.eq(row.id))
                .filter(service_environment::Column::KeyId.eq(row.key_id.clone()))
                .exec(&txn)
                .await?;
            moved += updated.rows_affected;
        }
    }
    txn.commit().await?;
    Ok(moved)
}

/// Re-seals everything under the active key, batch by batch; returns how many rows moved.
pub async fn reseal_all(
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

/// How many sealed rows each key seals.
pub async fn usage(conn: &impl ConnectionTrait, key_id: &str) -> Result<u64> {
    let authentications =
        authentication::Entity::find().filter(authentication::Column::KeyId.eq(key_id)).count(conn).await?;
    let environments = service_environment::Entity::find()
        .filter(service_environment::Column::OauthClientSecret.is_not_null())
        .filter(service_environment::Column::KeyId.eq(key_id))
        .count(conn)
        .await?;
    Ok(authentications + environments)
}

/// Forgets a key: refused while it is the active key or any row is sealed under it.
pub async fn retire(db: &DatabaseConnection, keyring: &Keyring, key_id: &str) -> Result<()> {
    if keyring.active().id() == key_id {
        return Err(Error::Conflict("the active key cannot be retired; rotate to a new key first".to_owned()));
    }
    let used = usage(db, key_id).await?;
    if used > 0 {
        return Err(Error::Conflict(format!(
            "key {key_id} still seals {used} row(s); run `latchkey keys rotate` first"
        )));
    }
    server_state::Entity::delete_by_id(format!("encryption_key:{key_id}")).exec(db).await?;
    Ok(())
}

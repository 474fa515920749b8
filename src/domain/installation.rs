//! Installation-wide state: the first-start bootstrap and the encryption keys the
//! database has seen (by fingerprint; a key never enters the database).

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, sea_query::OnConflict,
};
use secrecy::SecretString;

use super::orgs;
use crate::{
    crypto::Keyring,
    error::{Error, Result},
};
use entity::server_state;

const BOOTSTRAP_KEY: &str = "bootstrap";
const KEY_PREFIX: &str = "encryption_key:";
pub const DEFAULT_ORG_NAME: &str = "default";

/// What the first start created: the default organization and its first master token.
pub struct Bootstrap {
    pub org: orgs::Organization,
    pub master_token: SecretString,
}

/// Inserts a state row unless it exists; true when this call inserted it. Atomic across
/// replicas starting together.
async fn insert_once(conn: &impl ConnectionTrait, key: &str, value: &str) -> Result<bool> {
    let inserted = server_state::Entity::insert(server_state::ActiveModel {
        key: Set(key.to_owned()),
        value: Set(value.to_owned()),
    })
    .on_conflict(OnConflict::column(server_state::Column::Key).do_nothing().to_owned())
    .exec_without_returning(conn)
    .await?;
    Ok(inserted == 1)
}

/// Records the keyring's keys and, on an empty database, creates the default
/// organization and its first master token, all in one transaction; on any later start
/// (or on a replica that lost the race) only records keys it has not seen and returns
/// `None`. Replicas starting together agree on one bootstrap: the first to insert the
/// bootstrap row makes the others wait on it, and they find it there once it commits.
pub async fn initialise(db: &DatabaseConnection, keyring: &Keyring) -> Result<Option<Bootstrap>> {
    let txn = crate::db::write(db).await?;
    record_keyring(&txn, keyring).await?;
    if !insert_once(&txn, BOOTSTRAP_KEY, &Utc::now().to_rfc3339()).await? {
        txn.commit().await?;
        return Ok(None);
    }
    let (org, master_token) = orgs::create_with_master_token(&txn, DEFAULT_ORG_NAME, "initial").await?;
    txn.commit().await?;
    Ok(Some(Bootstrap { org, master_token }))
}

/// Why the keyring cannot be used with this database.
#[derive(Debug, thiserror::Error)]
pub enum KeyMismatch {
    #[error(
        "the encryption key does not match this database: none of the given keys ({given}) is one the database was \
         sealed with ({known}). Supply the original key in LATCHKEY_ENCRYPTION_KEY (or the data dir's key file)"
    )]
    NoKnownKey { given: String, known: String },
    #[error(transparent)]
    Database(#[from] Error),
}

/// Checks the keyring against the fingerprints the database holds, and records any new
/// key. On a fresh database the keyring's keys are simply recorded. A keyring that holds
/// none of the database's keys is refused: it could not open what is stored.
pub async fn verify_keyring(db: &DatabaseConnection, keyring: &Keyring) -> Result<(), KeyMismatch> {
    check_keyring(db, keyring).await?;
    Ok(record_keyring(db, keyring).await?)
}

/// [`verify_keyring`] without recording anything.
pub async fn check_keyring(db: &DatabaseConnection, keyring: &Keyring) -> Result<(), KeyMismatch> {
    let known = server_state::Entity::find()
        .filter(server_state::Column::Key.starts_with(KEY_PREFIX))
        .all(db)
        .await
        .map_err(Error::from)?;
    let recognised = |key: &crate::crypto::EncryptionKey| {
        known.iter().any(|row| row.key == format!("{KEY_PREFIX}{}", key.id()) && row.value == key.fingerprint())
    };
    if !known.is_empty() && !keyring.keys().iter().any(recognised) {
        return Err(KeyMismatch::NoKnownKey {
            given: keyring.keys().iter().map(|key| key.id()).collect::<Vec<_>>().join(", "),
            known: known.iter().map(|row| row.key.trim_start_matches(KEY_PREFIX)).collect::<Vec<_>>().join(", "),
        });
    }
    Ok(())
}

async fn record_keyring(conn: &impl ConnectionTrait, keyring: &Keyring) -> Result<()> {
    for key in keyring.keys() {
        insert_once(conn, &format!("{KEY_PREFIX}{}", key.id()), key.fingerprint()).await?;
    }
    Ok(())
}

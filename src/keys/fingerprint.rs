//! The keys the database has seen, by fingerprint (a key never enters the database): a
//! keyring that holds none of them could not open what is stored, and is refused.

use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter};

use crate::{
    crypto::{EncryptionKey, Keyring},
    domain::installation::insert_once,
    error::{Error, Result},
};
use entity::server_state;

/// The server-state key under which a key's fingerprint is recorded is this plus its id.
const PREFIX: &str = "encryption_key:";

fn state_key(key_id: &str) -> String {
    format!("{PREFIX}{key_id}")
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
    Ok(record(db, keyring).await?)
}

/// [`verify_keyring`] without recording anything.
pub async fn check_keyring(db: &DatabaseConnection, keyring: &Keyring) -> Result<(), KeyMismatch> {
    let known = server_state::Entity::find()
        .filter(server_state::Column::Key.starts_with(PREFIX))
        .all(db)
        .await
        .map_err(Error::from)?;
    let recognised =
        |key: &EncryptionKey| known.iter().any(|row| row.key == state_key(key.id()) && row.value == key.fingerprint());
    if !known.is_empty() && !keyring.keys().iter().any(recognised) {
        return Err(KeyMismatch::NoKnownKey {
            given: keyring.keys().iter().map(|key| key.id()).collect::<Vec<_>>().join(", "),
            known: known.iter().map(|row| row.key.trim_start_matches(PREFIX)).collect::<Vec<_>>().join(", "),
        });
    }
    Ok(())
}

/// Records the fingerprint of every key of the ring the database has not seen yet.
pub(crate) async fn record(conn: &impl ConnectionTrait, keyring: &Keyring) -> Result<()> {
    for key in keyring.keys() {
        insert_once(conn, &state_key(key.id()), key.fingerprint()).await?;
    }
    Ok(())
}

/// Deletes a key's fingerprint, so the database no longer expects it; true when one was
/// recorded.
pub(crate) async fn forget(conn: &impl ConnectionTrait, key_id: &str) -> Result<bool> {
    Ok(server_state::Entity::delete_by_id(state_key(key_id)).exec(conn).await?.rows_affected > 0)
}

/// The recorded fingerprint of a key, if any.
pub async fn recorded(conn: &impl ConnectionTrait, key_id: &str) -> Result<Option<String>> {
    Ok(server_state::Entity::find_by_id(state_key(key_id)).one(conn).await?.map(|row| row.value))
}

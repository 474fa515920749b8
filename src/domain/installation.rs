//! Installation-wide state: the first-start bootstrap and the encryption keys the
//! database has seen (by fingerprint; a key never enters the database).

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, sea_query::OnConflict,
};
use secrecy::SecretString;

use super::{audit, orgs};
use crate::{
    auth::master_tokens,
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

/// On an empty database, creates the default organization and its first master token,
/// all in one transaction; on any later start (or on a replica that lost the race) does
/// nothing and returns `None`.
pub async fn bootstrap(db: &DatabaseConnection) -> Result<Option<Bootstrap>> {
    let txn = crate::db::write(db).await?;
    if !insert_once(&txn, BOOTSTRAP_KEY, &Utc::now().to_rfc3339()).await? {
        return Ok(None);
    }
    let org = orgs::create(&txn, DEFAULT_ORG_NAME).await?;
    let (token, secret) = master_tokens::create(&txn, org.id, "initial").await?;
    audit::record(&txn, org.id, audit::Actor::System, "master_token.created", Some(token.id.0)).await?;
    txn.commit().await?;
    Ok(Some(Bootstrap { org, master_token: secret }))
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
    for key in keyring.keys() {
        insert_once(db, &format!("{KEY_PREFIX}{}", key.id()), key.fingerprint()).await?;
    }
    Ok(())
}

//! Installation-wide state: the first-start bootstrap (the keys the database has seen are
//! `crate::keys::fingerprint`'s).

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseConnection, EntityTrait, sea_query::OnConflict};
use secrecy::SecretString;

use super::orgs;
use crate::{crypto::Keyring, error::Result};
use entity::server_state;

const BOOTSTRAP_KEY: &str = "bootstrap";
pub const DEFAULT_ORG_NAME: &str = "default";

/// What the first start created: the default organization and its first master token.
pub struct Bootstrap {
    pub org: orgs::Organization,
    pub master_token: SecretString,
}

/// Inserts a state row unless it exists; true when this call inserted it. Atomic across
/// replicas starting together.
pub(crate) async fn insert_once(conn: &impl ConnectionTrait, key: &str, value: &str) -> Result<bool> {
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
    crate::keys::fingerprint::record(&txn, keyring).await?;
    if !insert_once(&txn, BOOTSTRAP_KEY, &Utc::now().to_rfc3339()).await? {
        txn.commit().await?;
        return Ok(None);
    }
    let (org, master_token) = orgs::create_with_master_token(&txn, DEFAULT_ORG_NAME, "initial").await?;
    txn.commit().await?;
    Ok(Some(Bootstrap { org, master_token }))
}

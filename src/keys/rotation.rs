//! Key rotation: re-seal every sealed value under the keyring's active key, online and in
//! batches, and retire a key once nothing uses it.
//!
//! Safety rests on three rules. Rows are read outside any transaction and each batch is
//! written in one short transaction, so a running server is never blocked for long. Each
//! row update is conditional on the key id *and* the exact ciphertexts it was read with
//! ([`SealedTable::compare_and_swap`]), so a concurrent write by a running server is never
//! overwritten with stale contents. And a row is only ever moved from one key of the ring
//! to another, so a rotation killed at any point leaves every row sealed under some key of
//! the ring: running it again finishes the work.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, DatabaseConnection};

use super::{
    fingerprint,
    sealed::{SEALED, SealedRow, SealedTable},
};
use crate::{
    crypto::{Keyring, envelope},
    domain::{audit, orgs},
    error::{Error, Result},
};

/// How [`usage`] names sealed rows whose key id column is empty (not written by this
/// version; listed so they are seen rather than silently skipped).
pub const NO_KEY_ID: &str = "(none)";

/// One row's new contents, computed before the write transaction starts.
pub struct Resealed {
    table: &'static SealedTable,
    row: SealedRow,
    values: Vec<Option<Vec<u8>>>,
}

/// Rows not yet under the active key, at most `limit` in all, in the order of [`SEALED`],
/// re-sealed in memory. A row that does not open is an error naming it: rotation never
/// writes something it could not read back.
pub async fn reseal_candidates(db: &DatabaseConnection, keyring: &Keyring, limit: u64) -> Result<Vec<Resealed>> {
    let active = keyring.active().id();
    let mut out = Vec::new();
    for table in SEALED {
        let remaining = limit.saturating_sub(out.len() as u64);
        if remaining == 0 {
            break;
        }
        for row in table.rows_not_under(db, active, remaining).await? {
            let values = reseal_row(table, &row, keyring)?;
            out.push(Resealed { table, row, values });
        }
    }
    Ok(out)
}

fn reseal_row(table: &SealedTable, row: &SealedRow, keyring: &Keyring) -> Result<Vec<Option<Vec<u8>>>> {
    let failed =
        |reason: String| Error::internal(anyhow::anyhow!("{} {} cannot be re-sealed: {reason}", table.what, row.id));
    table
        .columns
        .iter()
        .zip(&row.values)
        .map(|(column, sealed)| {
            let Some(sealed) = sealed else { return Ok(None) };
            // A row without an organization cannot hold a sealed value; skipping it would
            // make every later batch find it again.
            let binding = row.binding(column).ok_or_else(|| failed("it belongs to no organization".to_owned()))?;
            envelope::reseal(keyring, &binding, sealed).map(Some).map_err(|err| failed(err.to_string()))
        })
        .collect()
}

/// Writes re-sealed rows in one transaction; returns how many moved. A row changed since
/// it was read is left alone (the next batch finds it again if it is still under an old
/// key).
pub async fn write_resealed(db: &DatabaseConnection, keyring: &Keyring, resealed: Vec<Resealed>) -> Result<u64> {
    if resealed.is_empty() {
        return Ok(0);
    }
    let active = keyring.active().id();
    let txn = crate::db::write(db).await?;
    let mut moved = 0;
    for Resealed { table, row, values } in resealed {
        if table.compare_and_swap(&txn, &row, &values, active).await? {
            moved += 1;
        }
    }
    txn.commit().await?;
    Ok(moved)
}

/// Re-seals up to `batch` rows not yet under the active key, in one transaction; returns
/// how many moved. Rows changed since they were read stay, so fewer than `batch` may move.
pub async fn reseal_batch(db: &DatabaseConnection, keyring: &Keyring, batch: u64) -> Result<u64> {
    if batch == 0 {
        return Ok(0);
    }
    let candidates = reseal_candidates(db, keyring, batch).await?;
    write_resealed(db, keyring, candidates).await
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

/// How many sealed rows each key id seals, by key id, over every sealed table. Ids may
/// include keys missing from any keyring: that is how an operator finds rows a keyring
/// cannot open.
pub async fn usage(conn: &impl ConnectionTrait) -> Result<Vec<(String, u64)>> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for table in SEALED {
        for (key_id, rows) in table.usage(conn).await? {
            *counts.entry(key_id.unwrap_or_else(|| NO_KEY_ID.to_owned())).or_default() += rows;
        }
    }
    Ok(counts.into_iter().collect())
}

/// How many sealed rows one key seals, over every sealed table.
pub async fn rows_sealed_by(conn: &impl ConnectionTrait, key_id: &str) -> Result<u64> {
    let mut total = 0;
    for table in SEALED {
        total += table.rows_sealed_by(conn, key_id).await?;
    }
    Ok(total)
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
    let forgotten = fingerprint::forget(&txn, key_id).await?;
    if !forgotten && keyring.get(key_id).is_none() {
        return Err(Error::NotFound("encryption key"));
    }
    record_for_every_org(&txn, "encryption_key.retired").await?;
    txn.commit().await?;
    Ok(())
}

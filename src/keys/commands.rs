//! `latchkey keys list|rotate|retire`: operator commands that report on standard output
//! (the list) and standard error (progress).

use std::fs;

use sea_orm::DatabaseConnection;

use super::{
    files::{self, KeySource},
    fingerprint, rotation,
};
use crate::{
    app,
    config::Config,
    crypto::{EncryptionKey, Keyring},
};

/// What every `latchkey keys` command starts from. `_lock` is held until the command
/// ends, so no other rotate or retire rewrites the key file meanwhile.
struct Operator {
    db: DatabaseConnection,
    keyring: Keyring,
    source: KeySource,
    _lock: Option<fs::File>,
}

impl Operator {
    async fn open(config: &Config, lock: bool) -> anyhow::Result<Self> {
        app::ensure_private_dir(&config.data_dir)?;
        let source = files::key_source(config);
        let _lock = match &source {
            KeySource::File(path) if lock => Some(files::lock_key_file(path)?),
            _ => None,
        };
        let db = app::operator_db(config).await?;
        let keyring = files::existing_keyring(config)?;
        Ok(Self { db, keyring, source, _lock })
    }
}

/// `latchkey keys list`: every key of the ring with its role and how many rows it seals,
/// then any key id rows use that the ring lacks. Takes no lock: it only reads, and stays
/// usable to watch a rotation's progress.
pub async fn list(config: &Config) -> anyhow::Result<()> {
    let Operator { db, keyring, .. } = Operator::open(config, false).await?;
    let usage = rotation::usage(&db).await?;
    let rows_of = |id: &str| usage.iter().find(|(key_id, _)| key_id == id).map_or(0, |(_, rows)| *rows);
    for (index, key) in keyring.keys().iter().enumerate() {
        let role = if index == 0 { "active" } else { "retired" };
        println!("{}\t{role}\t{} row(s)", key.id(), rows_of(key.id()));
    }
    for (key_id, rows) in usage.iter().filter(|(key_id, _)| keyring.get(key_id).is_none()) {
        println!("{key_id}\tMISSING\t{rows} row(s)");
    }
    Ok(())
}

/// Copies a key (keys are deliberately not `Clone`, so copies are explicit).
fn copy_key(key: &EncryptionKey) -> EncryptionKey {
    EncryptionKey::from_bytes(*key.expose())
}

/// `latchkey keys rotate`: with the key file, puts a new key first (unless `resume`),
/// then re-seals every row under the active key, `batch` rows per transaction.
pub async fn rotate(config: &Config, batch: u64, resume: bool) -> anyhow::Result<()> {
    let Operator { db, keyring, source, _lock } = Operator::open(config, true).await?;
    // Checked before anything is written: a key file that does not belong to this
    // database (say, the wrong data dir) must not grow a new key and re-seal nothing.
    fingerprint::verify_keyring(&db, &keyring).await?;
    let (keyring, generated) = match &source {
        KeySource::File(path) if !resume => {
            let mut ring = vec![EncryptionKey::generate()];
            ring.extend(keyring.keys().iter().map(copy_key));
            let ring = Keyring::from_keys(ring)?;
            // The file comes first: a row sealed under the new key is only ever written
            // once the key is safely on disk, where servers and a rerun will find it.
            files::write_key_file(path, &ring)?;
            eprintln!("latchkey: new active key {} written to {}", ring.active().id(), path.display());
            (ring, true)
        }
        _ => (keyring, false),
    };
    // Records the new key's fingerprint, so the database expects it from now on.
    fingerprint::verify_keyring(&db, &keyring).await?;
    let active = keyring.active().id().to_owned();
    eprintln!("latchkey: re-sealing every row under key {active}, {batch} per transaction");
    let moved =
        rotation::reseal_all_with_progress(&db, &keyring, batch, |done| eprintln!("latchkey: {done} row(s) re-sealed"))
            .await?;
    if generated || moved > 0 {
        rotation::record_rotation(&db).await?;
    }
    let left: u64 =
        rotation::usage(&db).await?.iter().filter(|(key_id, _)| *key_id != active).map(|(_, rows)| rows).sum();
    eprintln!("latchkey: done; {moved} row(s) re-sealed under key {active}");
    if left > 0 {
        // A server that had not yet picked up the new key may have sealed a row under an
        // old one while this ran; a second pass moves it.
        eprintln!(
            "latchkey: {left} row(s) are still sealed under other keys (changed while this ran); \
             run `latchkey keys rotate --resume` to move them"
        );
    } else {
        for key in keyring.keys().iter().skip(1) {
            eprintln!("latchkey: key {} seals nothing now; `latchkey keys retire {}` drops it", key.id(), key.id());
        }
    }
    Ok(())
}

/// `latchkey keys retire KEY_ID`: forgets a key no row uses, and with the key file drops
/// it from the file.
pub async fn retire(config: &Config, key_id: &str) -> anyhow::Result<()> {
    let Operator { db, keyring, source, _lock } = Operator::open(config, true).await?;
    rotation::retire(&db, &keyring, key_id).await?;
    match &source {
        KeySource::File(path) => {
            if keyring.get(key_id).is_some() {
                let rest: Vec<EncryptionKey> =
                    keyring.keys().iter().filter(|key| key.id() != key_id).map(copy_key).collect();
                files::write_key_file(path, &Keyring::from_keys(rest)?)?;
            }
            eprintln!("latchkey: key {key_id} retired and removed from {}", path.display());
        }
        KeySource::Environment => {
            eprintln!(
                "latchkey: key {key_id} retired; now remove it from LATCHKEY_ENCRYPTION_KEY on every replica \
                 (keep the active key first)"
            );
        }
    }
    Ok(())
}

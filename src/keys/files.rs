//! Where the keys live: `LATCHKEY_ENCRYPTION_KEY`, or the data dir's key file, which the
//! `latchkey keys` commands rewrite under a lock.

use std::{
    fs,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use secrecy::ExposeSecret;

use crate::{
    app::{NewSecretFile, read_secret_file, replace_secret_file},
    config::Config,
    crypto::{EncryptionKey, Keyring},
};

const KEY_FILE: &str = "encryption.keys";

pub fn key_file(config: &Config) -> PathBuf {
    config.data_dir.join(KEY_FILE)
}

/// The keyring from `LATCHKEY_ENCRYPTION_KEY`, else from the data dir's key file, else a
/// freshly generated key, with the file to write it to once the start is sure to succeed.
pub(crate) fn load_keyring(config: &Config) -> anyhow::Result<(Keyring, Option<NewSecretFile>)> {
    if let Some(text) = &config.encryption_key {
        let keyring = Keyring::parse(text.expose_secret())
            .map_err(|err| anyhow::anyhow!("invalid LATCHKEY_ENCRYPTION_KEY: {err}"))?;
        return Ok((keyring, None));
    }
    let path = key_file(config);
    if let Some(text) = read_secret_file(&path)? {
        let keyring = Keyring::parse(text.expose_secret())
            .map_err(|err| anyhow::anyhow!("invalid key file {}: {err}", path.display()))?;
        return Ok((keyring, None));
    }
    let keyring = Keyring::from_keys(vec![EncryptionKey::generate()])?;
    tracing::warn!(
        path = %path.display(),
        "generating a new encryption key in the data dir; production should supply LATCHKEY_ENCRYPTION_KEY from outside the data dir"
    );
    let contents = keyring.to_text().into();
    Ok((keyring, Some(NewSecretFile { path, contents })))
}

/// Where the encryption keys come from.
pub enum KeySource {
    /// `LATCHKEY_ENCRYPTION_KEY`: the operator manages the list.
    Environment,
    /// The data dir's key file, which `latchkey keys` rewrites.
    File(PathBuf),
}

pub fn key_source(config: &Config) -> KeySource {
    match config.encryption_key {
        Some(_) => KeySource::Environment,
        None => KeySource::File(key_file(config)),
    }
}

/// The keyring for an operator command: never generates a key.
pub fn existing_keyring(config: &Config) -> anyhow::Result<Keyring> {
    match key_source(config) {
        KeySource::Environment => Ok(load_keyring(config)?.0),
        KeySource::File(path) => {
            let text = read_secret_file(&path)?.with_context(|| format!("no key file at {}", path.display()))?;
            Keyring::parse(text.expose_secret())
                .map_err(|err| anyhow::anyhow!("invalid key file {}: {err}", path.display()))
        }
    }
}

/// Replaces the key file atomically (see [`replace_secret_file`]).
pub fn write_key_file(path: &Path, keyring: &Keyring) -> anyhow::Result<()> {
    replace_secret_file(path, &keyring.to_text())
}

/// Takes an exclusive lock beside the key file for as long as the returned file is kept,
/// or fails at once when another `latchkey keys` command holds it. Two rotations racing
/// would each write the file with their own new key, and the last rename would drop the
/// key the other one re-sealed rows under. The lock is advisory and released by the
/// operating system when the process ends, so a killed command never leaves it stale.
pub fn lock_key_file(path: &Path) -> anyhow::Result<fs::File> {
    let lock_path = path.with_extension("keys.lock");
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => {
            bail!("another `latchkey keys` command is running on {}; wait for it to finish", path.display())
        }
        Err(fs::TryLockError::Error(err)) => Err(err).with_context(|| format!("cannot lock {}", lock_path.display())),
    }
}

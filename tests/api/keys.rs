//! Key rotation: online, interruptible, and retiring the old key only once nothing uses it.
//! Rows are made through the public API; rotation runs either in-process through the
//! domain (to stop it at an exact point) or as the `latchkey keys` command an operator runs.

use latchkey::{
    App,
    crypto::{EncryptionKey, Keyring, envelope},
    domain::{authentications, catalog},
    error::Code,
    ids::{EnvironmentId, OrgId},
    keys::{files, fingerprint, rotation},
};
use reqwest::Method;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::support::{Storage, TestServer};

const API_TOKEN: &str = "zd-secret-token-0001";
const CLIENT_SECRET: &str = "rotating-client-secret";

struct Setup {
    server: TestServer,
    token: String,
    /// Three end-user credentials.
    ids: Vec<String>,
}

/// A running server (keys in the data dir's file unless `customize` says otherwise), with
/// full reads on, three credentials of one end user and one sealed OAuth client secret:
/// four sealed rows in all.
async fn setup_on(storage: Storage, customize: impl FnOnce(&mut latchkey::config::RawConfig)) -> Setup {
    let server = TestServer::start_on(storage, customize).await;
    server.enable_full_reads(&server.master).await;
    let user = server.create_user(&server.master, "rotating").await;
    let token = server.user_token(&server.master, &user).await;
    let (_, environment) = server.builtin_environment("zendesk").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(server.import_zendesk(&token, &environment, &format!("zd-{n}")).await);
    }
    let service = server.create_custom_service(&server.master, "rotating-app").await;
    let create = "mutation($s: ID!, $secret: String!) { createServiceEnvironment(input: {serviceId: $s, title: \"App\", authenticationType: oauth2,
        oauthApp: {clientId: \"cid\", clientSecret: $secret, authorizeUrl: \"https://a.test/authorize\", tokenUrl: \"https://a.test/token\"}}) { serviceEnvironment { id } } }";
    server.ok(&server.master, create, json!({"s": service, "secret": CLIENT_SECRET})).await;
    Setup { server, token, ids }
}

async fn setup() -> Setup {
    setup_on(Storage::new().await, |_| {}).await
}

const ROWS: u64 = 4;

fn key_file(storage: &Storage) -> std::path::PathBuf {
    storage.dir.path().join("encryption.keys")
}

/// The keyring as a restarted process would load it: fresh from the key file.
fn file_keyring(storage: &Storage) -> Keyring {
    Keyring::parse(&std::fs::read_to_string(key_file(storage)).unwrap()).unwrap()
}

fn copy(key: &EncryptionKey) -> EncryptionKey {
    EncryptionKey::from_bytes(*key.expose())
}

fn ring(keys: &[&EncryptionKey]) -> Keyring {
    Keyring::from_keys(keys.iter().map(|key| copy(key)).collect()).unwrap()
}

/// Opens every sealed value in the database with `keyring` alone (as a restarted
/// process would), checking each opens to what was stored; the first failure is returned.
async fn open_every_row(db: &DatabaseConnection, keyring: &Keyring) -> Result<(), envelope::EnvelopeError> {
    let rows = entity::authentication::Entity::find().all(db).await.unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        for (field, sealed) in [
            (authentications::Field::Credentials, &row.credentials),
            (authentications::Field::UserData, &row.user_data),
        ] {
            let opened = envelope::open(keyring, &authentications::binding(&row, field), sealed)?;
            let value: Value = serde_json::from_slice(opened.expose_secret()).unwrap();
            assert!(
                value == json!({"email": "agent@acme.test", "api_token": API_TOKEN})
                    || value == json!({"subdomain": "acme"})
            );
        }
    }
    let environments = entity::service_environment::Entity::find()
        .filter(entity::service_environment::Column::OauthClientSecret.is_not_null())
        .all(db)
        .await
        .unwrap();
    assert_eq!(environments.len(), 1);
    for row in environments {
        let binding = catalog::client_secret_binding(OrgId(row.org_id.unwrap()), EnvironmentId(row.id));
        let opened = envelope::open(keyring, &binding, row.oauth_client_secret.as_deref().unwrap())?;
        assert_eq!(opened.expose_secret().as_slice(), CLIENT_SECRET.as_bytes());
    }
    Ok(())
}

/// Every credential reads back in full through the running server.
async fn all_readable(s: &Setup) {
    for id in &s.ids {
        let (status, full) =
            s.server.rest(Method::GET, &format!("/authentications/{id}/full"), Some(&s.token), None).await;
        assert_eq!(status, 200, "{full}");
        assert_eq!(full["credentials"]["api_token"], API_TOKEN);
    }
}

/// The rows each key seals, as `(key id, rows)` sorted by id.
async fn usage(db: &DatabaseConnection) -> Vec<(String, u64)> {
    rotation::usage(db).await.unwrap()
}

fn only(key: &EncryptionKey, rows: u64) -> Vec<(String, u64)> {
    vec![(key.id().to_owned(), rows)]
}

/// The first half of a rotation, as `latchkey keys rotate` does it with the key file:
/// a new key written first, then recorded in the database. Returns the rotated ring.
async fn put_a_new_key_first(s: &Setup) -> Keyring {
    let old = file_keyring(&s.server.storage);
    let rotated = Keyring::from_keys(vec![EncryptionKey::generate(), copy(old.active())]).unwrap();
    files::write_key_file(&key_file(&s.server.storage), &rotated).unwrap();
    fingerprint::verify_keyring(&s.server.db, &rotated).await.unwrap();
    rotated
}

/// Runs the `latchkey` binary on the storage's data dir and database.
fn latchkey(storage: &Storage, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command
        .args(args)
        .env_remove("LATCHKEY_ENCRYPTION_KEY")
        .env_remove("LATCHKEY_DATABASE_URL")
        .env("LATCHKEY_DATA_DIR", storage.dir.path())
        .env("LATCHKEY_LOG", "warn");
    if let Some(url) = &storage.database_url {
        command.env("LATCHKEY_DATABASE_URL", url);
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

fn succeeded(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    stderr
}

/// A server built from scratch on the same storage (a restart or another replica),
/// served until dropped.
struct Replica {
    base: String,
    client: reqwest::Client,
    _shutdown: oneshot::Sender<()>,
}

impl Replica {
    async fn start(storage: &Storage, encryption_key: Option<String>) -> anyhow::Result<Self> {
        let app = App::build(&storage.config(|raw| raw.encryption_key = encryption_key.map(Into::into))).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, signal) = oneshot::channel::<()>();
        tokio::spawn(app.serve(listener, async move {
            let _ = signal.await;
        }));
        Ok(Self { base, client: reqwest::Client::new(), _shutdown: shutdown })
    }

    async fn full_read(&self, token: &str, id: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}/core/v1/authentications/{id}/full", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn reads_every_row(&self, s: &Setup) {
        for id in &s.ids {
            let (status, body) = self.full_read(&s.token, id).await;
            assert_eq!(status, 200, "{body}");
            assert!(body.contains(API_TOKEN), "{body}");
        }
    }
}

async fn audited(db: &DatabaseConnection, action: &str) -> usize {
    entity::audit_event::Entity::find()
        .filter(entity::audit_event::Column::Action.eq(action))
        .filter(entity::audit_event::Column::ActorKind.eq("system"))
        .all(db)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn rotation_re_seals_every_row_under_the_new_key_and_every_row_stays_readable() {
    let s = setup().await;
    let db = &s.server.db;
    let old = file_keyring(&s.server.storage);
    assert_eq!(usage(db).await, only(old.active(), ROWS));

    let rotated = put_a_new_key_first(&s).await;
    let moved = rotation::reseal_all(db, &rotated, 3).await.unwrap();

    assert_eq!(moved, ROWS, "three authentications and one OAuth client secret");
    assert_eq!(usage(db).await, only(rotated.active(), ROWS));
    open_every_row(db, &file_keyring(&s.server.storage)).await.unwrap();
    // The running server started with the old key alone and follows the key file.
    all_readable(&s).await;
    assert_eq!(rotation::reseal_all(db, &rotated, 3).await.unwrap(), 0, "a second run has nothing to do");
}

#[tokio::test]
async fn an_interrupted_rotation_leaves_every_row_readable_with_the_two_key_ring_and_running_it_again_finishes_it() {
    let s = setup().await;
    let db = &s.server.db;
    let old_id = file_keyring(&s.server.storage).active().id().to_owned();
    let rotated = put_a_new_key_first(&s).await;
    let new_id = rotated.active().id().to_owned();

    // Killed after one row.
    assert_eq!(rotation::reseal_batch(db, &rotated, 1).await.unwrap(), 1);
    drop(rotated);

    // "Restart": everything comes from the key file again.
    let restarted = file_keyring(&s.server.storage);
    assert_eq!(restarted.keys().iter().map(|key| key.id()).collect::<Vec<_>>(), [new_id.as_str(), old_id.as_str()]);
    let mut split = vec![(new_id.clone(), 1), (old_id.clone(), ROWS - 1)];
    split.sort();
    assert_eq!(usage(db).await, split);
    open_every_row(db, &restarted).await.unwrap();
    all_readable(&s).await;

    assert_eq!(rotation::reseal_all(db, &restarted, 500).await.unwrap(), ROWS - 1);
    assert_eq!(usage(db).await, vec![(new_id, ROWS)]);
    open_every_row(db, &restarted).await.unwrap();
    all_readable(&s).await;
}

#[tokio::test]
async fn a_row_a_server_rewrites_between_the_rotations_read_and_its_write_keeps_the_servers_value() {
    let s = setup().await;
    let db = &s.server.db;
    let old = file_keyring(&s.server.storage);
    let rotated = put_a_new_key_first(&s).await;
    let read = rotation::reseal_candidates(db, &rotated, ROWS).await.unwrap();

    // Meanwhile a server that has not picked up the new key yet replaces one credential,
    // sealing it under the old key: the key id stays, only the ciphertext changes.
    let row = entity::authentication::Entity::find().one(db).await.unwrap().unwrap();
    let changed = json!({"email": "agent@acme.test", "api_token": "rewritten-meanwhile"});
    let binding = authentications::binding(&row, authentications::Field::Credentials);
    let rewritten = envelope::seal(&old, &binding, changed.to_string().as_bytes());
    entity::authentication::Entity::update_many()
        .col_expr(entity::authentication::Column::Credentials, sea_orm::sea_query::Expr::value(rewritten.clone()))
        .filter(entity::authentication::Column::Id.eq(row.id))
        .exec(db)
        .await
        .unwrap();

    let moved = rotation::write_resealed(db, &rotated, read).await.unwrap();

    assert_eq!(moved, ROWS - 1, "every row but the rewritten one moved");
    let after = entity::authentication::Entity::find_by_id(row.id).one(db).await.unwrap().unwrap();
    assert_eq!(after.credentials, rewritten, "the server's write survives the rotation");
    assert_eq!(after.key_id, old.active().id());
    // The next pass moves it, with the server's value rather than the stale one.
    assert_eq!(rotation::reseal_all(db, &rotated, 500).await.unwrap(), 1);
    let after = entity::authentication::Entity::find_by_id(row.id).one(db).await.unwrap().unwrap();
    let opened = envelope::open(&ring(&[rotated.active()]), &binding, &after.credentials).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(opened.expose_secret()).unwrap(), changed);
}

#[tokio::test]
async fn a_sealed_value_without_a_key_id_is_listed_as_such_and_rotation_moves_it() {
    let s = setup().await;
    let db = &s.server.db;
    let old = file_keyring(&s.server.storage);
    let environments = || {
        entity::service_environment::Entity::find().filter(entity::service_environment::Column::KeyId.is_null()).all(db)
    };
    let without_secret = environments().await.unwrap().len();
    assert!(without_secret > 0, "built-in environments hold no secret and no key id");
    entity::service_environment::Entity::update_many()
        .col_expr(entity::service_environment::Column::KeyId, sea_orm::sea_query::Expr::value(Option::<String>::None))
        .filter(entity::service_environment::Column::OauthClientSecret.is_not_null())
        .exec(db)
        .await
        .unwrap();

    let mut expected = vec![(rotation::NO_KEY_ID.to_owned(), 1), (old.active().id().to_owned(), ROWS - 1)];
    expected.sort();
    assert_eq!(usage(db).await, expected, "counted, under no key, and only where a secret is held");
    let listed = latchkey(&s.server.storage, &[], &["keys", "list"]);
    succeeded(&listed);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains(&format!("{}\tMISSING\t1 row(s)", rotation::NO_KEY_ID)), "{listed}");

    let rotated = put_a_new_key_first(&s).await;
    assert_eq!(rotation::reseal_all(db, &rotated, 500).await.unwrap(), ROWS, "the row without a key id moved too");

    assert_eq!(usage(db).await, only(rotated.active(), ROWS));
    open_every_row(db, &ring(&[rotated.active()])).await.unwrap();
    let untouched = environments().await.unwrap();
    assert_eq!(untouched.len(), without_secret, "environments without a secret are left alone");
    assert!(untouched.iter().all(|row| row.oauth_client_secret.is_none()));
}

#[tokio::test]
async fn the_command_resumes_an_interrupted_rotation_without_generating_another_key() {
    let s = setup().await;
    let storage = &s.server.storage;
    let rotated = put_a_new_key_first(&s).await;
    assert_eq!(rotation::reseal_batch(&s.server.db, &rotated, 2).await.unwrap(), 2);

    let stderr = succeeded(&latchkey(storage, &[], &["keys", "rotate", "--resume", "--batch", "1"]));

    assert!(stderr.contains("2 row(s) re-sealed"), "{stderr}");
    let ring = file_keyring(storage);
    assert_eq!(ring.keys().len(), 2, "no third key");
    assert_eq!(ring.active().id(), rotated.active().id());
    assert_eq!(usage(&s.server.db).await, only(rotated.active(), ROWS));
}

#[tokio::test]
async fn retire_refuses_while_a_row_still_uses_the_key_and_succeeds_after() {
    let s = setup().await;
    let db = &s.server.db;
    let old = file_keyring(&s.server.storage);
    let old_id = old.active().id().to_owned();
    let rotated = put_a_new_key_first(&s).await;
    rotation::reseal_batch(db, &rotated, 1).await.unwrap();

    let refused = rotation::retire(db, &rotated, &old_id).await.unwrap_err();
    assert_eq!(refused.code(), Code::Conflict);
    assert!(refused.to_string().contains(&format!("key {old_id} still seals 3 row(s)")), "{refused}");
    let active = rotation::retire(db, &rotated, rotated.active().id()).await.unwrap_err();
    assert_eq!(active.code(), Code::Conflict, "the active key is never retired");
    let typo = rotation::retire(db, &rotated, "0123456789abcdef").await.unwrap_err();
    assert_eq!(typo.code(), Code::NotFound);
    assert_eq!(audited(db, "encryption_key.retired").await, 0);

    rotation::reseal_all(db, &rotated, 500).await.unwrap();
    rotation::retire(db, &rotated, &old_id).await.unwrap();

    let fingerprint = fingerprint::recorded(db, &old_id).await.unwrap();
    assert!(fingerprint.is_none(), "the database no longer expects the old key");
    assert_eq!(audited(db, "encryption_key.retired").await, 1, "one event in the one organization");
}

#[tokio::test]
async fn after_retiring_and_dropping_the_old_key_a_server_with_only_the_new_key_starts_and_reads_every_row() {
    let s = setup().await;
    let storage = &s.server.storage;
    let old_id = file_keyring(storage).active().id().to_owned();

    let stderr = succeeded(&latchkey(storage, &[], &["keys", "rotate", "--batch", "3"]));
    assert!(stderr.contains(&format!("{ROWS} row(s) re-sealed")), "{stderr}");
    let rotated = file_keyring(storage);
    assert_eq!(rotated.keys().len(), 2);
    assert_ne!(rotated.active().id(), old_id);
    assert_eq!(rotated.keys()[1].id(), old_id, "the old key stays until retired");
    assert_eq!(usage(&s.server.db).await, only(rotated.active(), ROWS));
    assert_eq!(audited(&s.server.db, "encryption_key.rotated").await, 1);

    let listed = latchkey(storage, &[], &["keys", "list"]);
    succeeded(&listed);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        format!("{}\tactive\t{ROWS} row(s)\n{old_id}\tretired\t0 row(s)\n", rotated.active().id())
    );

    let stderr = succeeded(&latchkey(storage, &[], &["keys", "retire", &old_id]));
    assert!(stderr.contains("removed from"), "{stderr}");
    let remaining = file_keyring(storage);
    assert_eq!(remaining.keys().len(), 1);
    assert_eq!(remaining.active().id(), rotated.active().id());

    // A restart with the new key alone: from the file, and from the environment.
    Replica::start(storage, None).await.expect("starts with the new key file").reads_every_row(&s).await;
    let new_only = remaining.active().to_base64();
    Replica::start(storage, Some(new_only))
        .await
        .expect("starts with LATCHKEY_ENCRYPTION_KEY=NEW")
        .reads_every_row(&s)
        .await;
    open_every_row(&s.server.db, &remaining).await.unwrap();
}

#[tokio::test]
async fn with_keys_in_the_environment_the_rolling_procedure_moves_every_row_and_leaves_the_list_to_the_operator() {
    let old = EncryptionKey::generate();
    let s = setup_on(Storage::new().await, |raw| raw.encryption_key = Some(old.to_base64().into())).await;
    let storage = &s.server.storage;
    let new = EncryptionKey::generate();
    let both = format!("{},{}", new.to_base64(), old.to_base64());

    // 1. Every replica gets NEW,OLD: it seals with NEW and still opens OLD.
    let replica = Replica::start(storage, Some(both.clone())).await.unwrap();
    replica.reads_every_row(&s).await;

    // 2. Re-seal: nothing is generated, the first key of the variable is the target.
    let env = [("LATCHKEY_ENCRYPTION_KEY", both.as_str())];
    succeeded(&latchkey(storage, &env, &["keys", "rotate", "--batch", "2"]));
    assert!(!key_file(storage).exists(), "no key file is written when keys come from the environment");
    assert_eq!(usage(&s.server.db).await, only(&new, ROWS));
    replica.reads_every_row(&s).await;

    // 3. Retire OLD: the operator is told to drop it from the variable.
    let stderr = succeeded(&latchkey(storage, &env, &["keys", "retire", old.id()]));
    assert!(stderr.contains("LATCHKEY_ENCRYPTION_KEY"), "{stderr}");

    // 4. NEW alone starts and reads everything.
    let latest = Replica::start(storage, Some(new.to_base64())).await.expect("starts with NEW alone");
    latest.reads_every_row(&s).await;
    open_every_row(&s.server.db, &ring(&[&new])).await.unwrap();
}

#[tokio::test]
async fn a_keyring_that_lacks_a_key_some_row_uses_cannot_open_that_row() {
    let s = setup().await;
    let db = &s.server.db;
    let old = file_keyring(&s.server.storage);
    let rotated = put_a_new_key_first(&s).await;
    assert_eq!(rotation::reseal_batch(db, &rotated, 1).await.unwrap(), 1);

    // Neither the old key alone nor the new key alone opens every row: each fails with an
    // error naming the missing key, never with garbage.
    for partial in [ring(&[old.active()]), ring(&[rotated.active()])] {
        let err = open_every_row(db, &partial).await.unwrap_err();
        assert!(matches!(err, envelope::EnvelopeError::UnknownKey(_)), "{err:?}");
    }

    // Re-sealing with a ring that cannot open a row stops at that row, changing nothing.
    let before = usage(db).await;
    let stranger = ring(&[&EncryptionKey::generate()]);
    let err = rotation::reseal_batch(db, &stranger, 500).await.unwrap_err();
    assert!(format!("{:#}", anyhow::Error::from(err)).contains("cannot be re-sealed"));
    assert_eq!(usage(db).await, before);

    // A server holding only the old key starts (it knows a key of the database) but
    // answers an error, without any of the secret, for rows sealed under the new key.
    let stale = Replica::start(&s.server.storage, Some(old.active().to_base64())).await.unwrap();
    let mut refused = 0;
    for id in &s.ids {
        let (status, body) = stale.full_read(&s.token, id).await;
        if status == 500 {
            assert!(!body.contains(API_TOKEN), "{body}");
            refused += 1;
        } else {
            assert_eq!(status, 200, "{body}");
        }
    }
    // Authentications come first in a batch, so the row that moved is one of them.
    assert_eq!(refused, 1);
    // And keys list names the key this installation's rows need but the ring lacks.
    let listed =
        latchkey(&s.server.storage, &[("LATCHKEY_ENCRYPTION_KEY", &old.active().to_base64())], &["keys", "list"]);
    succeeded(&listed);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains(&format!("{}\tMISSING\t1 row(s)", rotated.active().id())), "{listed}");
}

#[tokio::test]
async fn a_second_keys_command_is_refused_while_one_holds_the_key_file() {
    let s = setup().await;
    let storage = &s.server.storage;
    let before = std::fs::read_to_string(key_file(storage)).unwrap();
    let _held = files::lock_key_file(&key_file(storage)).unwrap();

    let output = latchkey(storage, &[], &["keys", "rotate"]);

    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("another `latchkey keys` command is running"));
    assert_eq!(std::fs::read_to_string(key_file(storage)).unwrap(), before, "the key file is untouched");
}

#[tokio::test]
async fn the_org_full_reads_command_turns_full_reads_on_and_off_and_audits_it() {
    let s = setup().await;
    let storage = &s.server.storage;
    let read = format!("/authentications/{}/full", s.ids[0]);

    succeeded(&latchkey(storage, &[], &["org", "full-reads", "default", "off"]));
    let (status, _) = s.server.rest(Method::GET, &read, Some(&s.token), None).await;
    assert_eq!(status, 403);

    succeeded(&latchkey(storage, &[], &["org", "full-reads", "default", "on"]));
    let (status, _) = s.server.rest(Method::GET, &read, Some(&s.token), None).await;
    assert_eq!(status, 200);

    assert_eq!(audited(&s.server.db, "organization.full_reads_disabled").await, 1);
    assert_eq!(audited(&s.server.db, "organization.full_reads_enabled").await, 1);
}

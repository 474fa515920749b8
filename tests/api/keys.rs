//! Key rotation: online, interruptible, and retiring the old key only once nothing uses it.

use latchkey::{
    App, app,
    crypto::{EncryptionKey, Keyring, envelope},
    domain::{authentications, installation, keys},
};
use reqwest::Method;
use sea_orm::EntityTrait;
use serde_json::json;

use crate::support::TestServer;

struct Setup {
    server: TestServer,
    token: String,
    ids: Vec<String>,
}

/// A running server on a file-managed keyring, three credentials imported, full reads on.
async fn setup() -> Setup {
    let server = TestServer::start().await;
    server.enable_full_reads(&server.master).await;
    let user = server.create_user(&server.master, "rotating").await;
    let token = server.user_token(&server.master, &user).await;
    let (_, environment) = server.builtin_environment("zendesk").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(server.import_zendesk(&token, &environment, &format!("zd-{n}")).await);
    }
    Setup { server, token, ids }
}

fn key_file(s: &Setup) -> std::path::PathBuf {
    s.server.storage.dir.path().join("encryption.keys")
}

fn file_keyring(s: &Setup) -> Keyring {
    Keyring::parse(&std::fs::read_to_string(key_file(s)).unwrap()).unwrap()
}

/// Every credential reads back in full through the running server.
async fn all_readable(s: &Setup) {
    for id in &s.ids {
        let (status, full) =
            s.server.rest(Method::GET, &format!("/authentications/{id}/full"), Some(&s.token), None).await;
        assert_eq!(status, 200, "{full}");
        assert_eq!(full["credentials"]["api_token"], "zd-secret-token-0001");
    }
}

fn copy(key: &EncryptionKey) -> EncryptionKey {
    EncryptionKey::from_bytes(*key.expose())
}

#[tokio::test]
async fn an_interrupted_rotation_keeps_every_row_readable_and_a_rerun_finishes_it() {
    let s = setup().await;
    let db = &s.server.db;
    let old = file_keyring(&s);
    let old_id = old.active().id().to_owned();
    let rotated = Keyring::from_keys(vec![EncryptionKey::generate(), copy(old.active())]).unwrap();
    let new_id = rotated.active().id().to_owned();
    app::write_key_file(&key_file(&s), &rotated).unwrap();
    installation::verify_keyring(db, &rotated).await.unwrap();

    // Killed after one row: the running server meets a key it did not start with.
    assert_eq!(keys::reseal_batch(db, &rotated, 1).await.unwrap(), 1);
    assert_eq!((keys::usage(db, &old_id).await.unwrap(), keys::usage(db, &new_id).await.unwrap()), (2, 1));
    all_readable(&s).await;
    let refused = keys::retire(db, &rotated, &old_id).await.unwrap_err();
    assert!(refused.to_string().contains("still seals 2 row(s)"), "{refused}");

    // Run again: it finishes, the old key seals nothing, and it can go.
    let moved = keys::reseal_all(db, &rotated, 2, |_| {}).await.unwrap();
    assert_eq!(moved, 2);
    assert_eq!(keys::usage(db, &old_id).await.unwrap(), 0);
    all_readable(&s).await;
    assert!(keys::retire(db, &rotated, &new_id).await.is_err(), "the active key cannot be retired");
    keys::retire(db, &rotated, &old_id).await.unwrap();

    // A restart with the new key alone starts and opens every row.
    let only_new = Keyring::from_keys(vec![copy(rotated.active())]).unwrap();
    app::write_key_file(&key_file(&s), &only_new).unwrap();
    let restarted = App::build(&s.server.storage.config(|_| {})).await.expect("starts with only the new key");
    for id in &s.ids {
        let row = entity::authentication::Entity::find_by_id(uuid::Uuid::parse_str(id).unwrap())
            .one(restarted.db())
            .await
            .unwrap()
            .unwrap();
        assert!(
            envelope::open(
                &restarted.keyring.current(),
                &authentications::binding(&row, authentications::Field::Credentials),
                &row.credentials
            )
            .is_ok()
        );
        // And the old key alone opens nothing any more: an error, never garbage.
        assert!(
            envelope::open(
                &old,
                &authentications::binding(&row, authentications::Field::Credentials),
                &row.credentials
            )
            .is_err()
        );
    }
}

#[tokio::test]
async fn the_keys_command_rotates_the_key_file_and_re_seals_every_row() {
    let s = setup().await;
    let service = s.server.create_custom_service(&s.server.master, "rotating-app").await;
    let create = "mutation($s: ID!) { createServiceEnvironment(input: {serviceId: $s, title: \"App\", authenticationType: oauth2,
        oauthApp: {clientId: \"cid\", clientSecret: \"rotating-client-secret\", authorizeUrl: \"https://a.test/authorize\", tokenUrl: \"https://a.test/token\"}}) { serviceEnvironment { id } } }";
    s.server.ok(&s.server.master, create, json!({"s": service})).await;
    let old_id = file_keyring(&s).active().id().to_owned();

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command
        .args(["keys", "rotate", "--batch", "2"])
        .env("LATCHKEY_DATA_DIR", s.server.storage.dir.path())
        .env("LATCHKEY_LOG", "warn");
    if let Some(url) = &s.server.storage.database_url {
        command.env("LATCHKEY_DATABASE_URL", url);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let ring = file_keyring(&s);
    assert_eq!(ring.keys().len(), 2);
    assert_ne!(ring.active().id(), old_id);
    assert_eq!(ring.keys()[1].id(), old_id, "the old key stays, retired");
    assert_eq!(
        keys::usage(&s.server.db, &old_id).await.unwrap(),
        0,
        "authentications and the OAuth client secret moved"
    );
    assert_eq!(keys::usage(&s.server.db, ring.active().id()).await.unwrap(), 4);
    all_readable(&s).await;
}

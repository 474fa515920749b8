//! Start-up: bootstrap, keys and secrets at rest.

use std::os::unix::fs::PermissionsExt;

use base64::{Engine, engine::general_purpose::STANDARD};
use latchkey::{App, crypto::EncryptionKey};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::support::{Storage, TestServer, captured_logs};

fn message(result: anyhow::Result<App>) -> String {
    match result {
        Ok(_) => panic!("the server started"),
        Err(err) => format!("{err:#}"),
    }
}

#[tokio::test]
async fn only_the_first_start_creates_the_default_organization_and_its_token() {
    let storage = Storage::new().await;
    let first = App::build(&storage.config(|_| {})).await.unwrap();
    let bootstrap = first.bootstrap.as_ref().expect("first start bootstraps");
    assert_eq!(bootstrap.org.name, "default");
    assert!(bootstrap.master_token.expose_secret().starts_with("lk_master_"));
    let again = App::build(&storage.config(|_| {})).await.unwrap();
    assert!(again.bootstrap.is_none(), "later starts never mint or print a token");
}

#[tokio::test]
async fn generated_keys_are_private_files_and_are_reused() {
    let storage = Storage::new().await;
    let app = App::build(&storage.config(|_| {})).await.unwrap();
    for file in ["encryption.keys", "jwt.secret"] {
        let mode = std::fs::metadata(storage.dir.path().join(file)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let again = App::build(&storage.config(|_| {})).await.unwrap();
    assert_eq!(app.keyring.current().active().id(), again.keyring.current().active().id());
}

#[tokio::test]
async fn a_key_that_does_not_match_the_database_refuses_to_start() {
    let storage = Storage::new().await;
    App::build(&storage.config(|_| {})).await.unwrap();
    let other = EncryptionKey::generate().to_base64();
    let err = message(App::build(&storage.config(|raw| raw.encryption_key = Some(other.into()))).await);
    assert!(err.contains("does not match this database"), "{err}");
}

#[tokio::test]
async fn missing_wrong_length_and_sample_keys_refuse_to_start_naming_the_variable() {
    let storage = Storage::new().await;
    for bad in [STANDARD.encode([9u8; 16]), STANDARD.encode([0u8; 32]), "not base64 at all".to_owned(), String::new()] {
        let err = message(App::build(&storage.config(|raw| raw.encryption_key = Some(bad.clone().into()))).await);
        assert!(err.contains("LATCHKEY_ENCRYPTION_KEY"), "{bad:?}: {err}");
    }
    let err = message(App::build(&storage.config(|raw| raw.jwt_secret = Some("short".to_owned().into()))).await);
    assert!(err.contains("LATCHKEY_JWT_SECRET"), "{err}");
}

#[tokio::test]
async fn tokens_and_keys_appear_nowhere_in_the_database_files_or_the_logs() {
    let server = TestServer::start().await;
    let user = server.create_user(&server.master, "secretive").await;
    let user_token = server.user_token(&server.master, &user).await;
    server.ok(&user_token, "{ viewer { details { name } } }", json!({})).await;
    let code = server
        .ok(
            &server.master,
            "mutation($u: ID!) { generateAuthorizationCode(input: {userId: $u}) { authorizationCode } }",
            json!({"u": user}),
        )
        .await["generateAuthorizationCode"]["authorizationCode"]
        .as_str()
        .unwrap()
        .to_owned();
    // A credential imported, read back in full and replaced, at trace level throughout.
    server.enable_full_reads(&server.master).await;
    let (_, zendesk) = server.builtin_environment("zendesk").await;
    let credential_id = server.import_zendesk(&user_token, &zendesk, "zd").await;
    server
        .ok(
            &user_token,
            "query($id: ID!) { authenticationCredentials(id: $id) { data } }",
            json!({"id": credential_id}),
        )
        .await;
    let replace = "mutation($id: ID!) { updateUserAuthentication(input: {authenticationId: $id, name: \"zd\", data: {email: \"a@acme.test\", api_token: \"zd-replaced-credential-77\"}, formData: {subdomain: \"acme\"}}) { authentication { id } } }";
    server.ok(&user_token, replace, json!({"id": credential_id})).await;
    let dir = server.storage.dir.path();
    let key = std::fs::read_to_string(dir.join("encryption.keys")).unwrap().trim().to_owned();
    let jwt_secret = std::fs::read_to_string(dir.join("jwt.secret")).unwrap();
    let secrets = [
        server.master.as_str(),
        user_token.as_str(),
        code.as_str(),
        key.as_str(),
        jwt_secret.trim(),
        "zd-secret-token-0001",
        "zd-replaced-credential-77",
    ];

    let logs = captured_logs();
    assert!(!logs.is_empty(), "the test server logs");
    for secret in secrets {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    if server.storage.is_sqlite() {
        let mut stored = Vec::new();
        for file in ["latchkey.db", "latchkey.db-wal"] {
            stored.extend(std::fs::read(dir.join(file)).unwrap_or_default());
        }
        assert!(!stored.is_empty());
        for secret in secrets {
            let found = stored.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "a secret reached the database files");
        }
    }
}

#[tokio::test]
async fn a_master_token_rotates_without_downtime() {
    let server = TestServer::start().await;
    let org = latchkey::ids::OrgId(server.org_of(&server.master).await);
    let (_, new_token) = latchkey::auth::master_tokens::create(&server.db, org, "rotation").await.unwrap();
    let new_token = new_token.expose_secret().to_owned();
    let details = "{ viewer { details { name } } }";
    server.ok(&server.master, details, json!({})).await;
    server.ok(&new_token, details, json!({})).await;
    let tokens = latchkey::auth::master_tokens::list(&server.db, org).await.unwrap();
    assert_eq!(tokens.len(), 2);
    latchkey::auth::master_tokens::revoke(&server.db, tokens[0].id).await.unwrap();
    let refused = server.graphql(Some(&server.master), details, json!({})).await;
    assert_eq!(crate::support::error_code(&refused).as_deref(), Some("UNAUTHENTICATED"));
    server.ok(&new_token, details, json!({})).await;
}

/// Runs `latchkey` until it says it is serving; returns what it printed on stderr.
fn serve_once(storage: &Storage) -> String {
    use std::io::{BufRead, BufReader};
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command
        .env("LATCHKEY_DATA_DIR", storage.dir.path())
        .env("LATCHKEY_BIND", "127.0.0.1:0")
        .env("LATCHKEY_LOG", "info")
        .stderr(std::process::Stdio::piped());
    if let Some(url) = &storage.database_url {
        command.env("LATCHKEY_DATABASE_URL", url);
    }
    let mut child = command.spawn().unwrap();
    let mut printed = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("latchkey is serving") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    printed
}

#[tokio::test]
async fn the_binary_prints_the_master_token_on_first_start_only() {
    let storage = Storage::new().await;
    let first = serve_once(&storage);
    let token =
        first.split_whitespace().find(|word| word.starts_with("lk_master_")).expect("the first start prints a token");
    assert!(first.contains("Authorization: Bearer"), "with a hint on how to use it");
    let second = serve_once(&storage);
    assert!(!second.contains("lk_master_"), "later starts never print it");
    assert!(second.contains("latchkey is serving"));
    // The printed token works.
    let app = App::build(&storage.config(|_| {})).await.unwrap();
    let principal = app.state.authenticator.authenticate(Some(&format!("Bearer {token}"))).await.unwrap();
    assert!(matches!(principal, latchkey::auth::Principal::Master(_)));
}

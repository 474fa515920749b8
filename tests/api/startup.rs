//! Start-up: bootstrap, keys and secrets at rest.

use std::{
    ffi::OsStr,
    io::{BufRead, BufReader, Read},
    os::unix::{ffi::OsStrExt, fs::PermissionsExt},
    path::Path,
    process::{Child, Stdio},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use latchkey::{App, config::RawConfig, crypto::EncryptionKey};
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
async fn missing_wrong_length_and_hand_made_keys_refuse_to_start_naming_the_variable() {
    let storage = Storage::new().await;
    let printable = STANDARD.encode(b"0123456789abcdef0123456789abcdef");
    let passphrase = STANDARD.encode(b"correct horse battery staple 42!");
    let mut patterned = [0u8; 32];
    patterned.iter_mut().enumerate().for_each(|(i, byte)| *byte = [0xd1, 0x07, 0x9a, 0xe3][i % 4]);
    let keys = [
        STANDARD.encode([9u8; 16]),
        STANDARD.encode([0u8; 32]),
        printable,
        passphrase,
        STANDARD.encode(patterned),
        "not base64 at all".to_owned(),
        String::new(),
    ];
    for bad in keys {
        let err = message(App::build(&storage.config(|raw| raw.encryption_key = Some(bad.clone().into()))).await);
        assert!(err.contains("LATCHKEY_ENCRYPTION_KEY"), "{bad:?}: {err}");
    }
    let secrets = [
        "short",
        "0123456789abcdef0123456789abcdef",
        "your-256-bit-secret-for-signing-tokens",
        "abcdefghijklmnopqrstuvwxyz0123456789",
    ];
    for bad in secrets {
        let err = message(App::build(&storage.config(|raw| raw.jwt_secret = Some(bad.to_owned().into()))).await);
        assert!(err.contains("LATCHKEY_JWT_SECRET"), "{bad:?}: {err}");
    }
}

#[tokio::test]
async fn a_weak_jwt_secret_file_refuses_to_start_naming_the_file() {
    let storage = Storage::new().await;
    std::fs::write(storage.dir.path().join("jwt.secret"), "0123456789abcdef0123456789abcdef\n").unwrap();
    let err = message(App::build(&storage.config(|_| {})).await);
    assert!(err.contains("jwt.secret"), "{err}");
}

/// A key and a JWT secret from the environment, as replicas are configured.
fn outside_secrets(key: &str) -> impl Fn(&mut RawConfig) + '_ {
    move |raw| {
        raw.encryption_key = Some(key.to_owned().into());
        raw.jwt_secret = Some(latchkey::crypto::random_token("").into());
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_refused_start_leaves_no_generated_secret_behind() {
    // A weak JWT secret is refused after the encryption key was generated.
    let storage = Storage::new().await;
    message(App::build(&storage.config(|raw| raw.jwt_secret = Some("x".repeat(40).into()))).await);
    let left = files_in(storage.dir.path());
    assert!(!left.iter().any(|name| name.starts_with("encryption.keys")), "{left:?}");

    // A database sealed under another key refuses the key and secret a fresh data dir would
    // generate; the next start must not find them and take them for this database's.
    let storage = Storage::new().await;
    let key = EncryptionKey::generate().to_base64();
    App::build(&storage.config(outside_secrets(&key))).await.unwrap();
    let before = files_in(storage.dir.path());
    let err = message(App::build(&storage.config(|_| {})).await);
    assert!(err.contains("does not match this database"), "{err}");
    assert_eq!(files_in(storage.dir.path()), before, "nothing was generated into the data dir");
}

#[tokio::test]
async fn replicas_starting_together_on_one_empty_database_all_start_and_bootstrap_once() {
    let storage = Storage::new().await;
    let key = EncryptionKey::generate().to_base64();
    let jwt_secret = latchkey::crypto::random_token("");
    // One database, a data dir each, the same secrets from outside: three replicas.
    let database_url = storage
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", storage.dir.path().join("shared.db").display()));
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let configs: Vec<latchkey::Config> = dirs
        .iter()
        .map(|dir| {
            storage.config(|raw| {
                raw.data_dir = Some(dir.path().display().to_string());
                raw.database_url = Some(database_url.clone());
                raw.encryption_key = Some(key.clone().into());
                raw.jwt_secret = Some(jwt_secret.clone().into());
            })
        })
        .collect();
    let started = tokio::join!(App::build(&configs[0]), App::build(&configs[1]), App::build(&configs[2]));
    let apps: Vec<App> =
        [started.0, started.1, started.2].into_iter().map(|result| result.expect("every replica starts")).collect();
    let bootstraps: Vec<&latchkey::domain::installation::Bootstrap> =
        apps.iter().filter_map(|app| app.bootstrap.as_ref()).collect();
    assert_eq!(bootstraps.len(), 1, "exactly one replica bootstraps");
    let orgs = latchkey::domain::orgs::list(apps[0].db()).await.unwrap();
    assert_eq!(orgs.len(), 1);
    let tokens = latchkey::auth::master_tokens::list(apps[0].db(), orgs[0].id).await.unwrap();
    assert_eq!(tokens.len(), 1, "one master token");
    for app in &apps {
        let token = format!("Bearer {}", bootstraps[0].master_token.expose_secret());
        assert!(app.state.authenticator.authenticate(Some(&token)).await.is_ok());
    }
}

#[tokio::test]
async fn tokens_and_keys_appear_nowhere_in_the_database_files_or_the_logs() {
    let server = TestServer::start().await;
    let user = server.create_user(&server.master, "secretive").await;
    let user_token = server.user_token(&server.master, &user).await;
    server.ok(&user_token, "{ viewer { details { name } } }", json!({})).await;
    let code = server.authorization_code(&server.master, &user).await;
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
    // As `latchkey master-token revoke` does it: another connection than the server's.
    latchkey::auth::master_tokens::revoke(&server.db, tokens[0].id).await.unwrap();
    let refused = crate::support::eventually_refused(&server.base, &server.master).await;
    assert_eq!(crate::support::error_code(&refused).as_deref(), Some("UNAUTHENTICATED"));
    server.ok(&new_token, details, json!({})).await;
}

/// The `latchkey` binary set up for `storage`: its data dir, and its PostgreSQL database
/// when the suite runs on PostgreSQL.
pub fn latchkey(storage: &Storage) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command.env("LATCHKEY_DATA_DIR", storage.dir.path()).env("LATCHKEY_LOG", "info").stdin(Stdio::null());
    if let Some(url) = &storage.database_url {
        command.env("LATCHKEY_DATABASE_URL", url);
    }
    command
}

/// Reads lines until one says the server is serving or the stream ends, then stops the
/// server; returns everything read.
fn read_until_serving(mut child: Child, output: impl Read) -> String {
    let mut printed = String::new();
    for line in BufReader::new(output).lines() {
        let Ok(line) = line else { break };
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

/// Runs `latchkey` with standard error piped (as under systemd, Docker or Kubernetes)
/// until it says it is serving; returns what it printed on stderr.
fn serve_once(storage: &Storage) -> String {
    let mut child = latchkey(storage).env("LATCHKEY_BIND", "127.0.0.1:0").stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    read_until_serving(child, stderr)
}

/// Runs `latchkey` with standard error on a terminal until it says it is serving;
/// returns what it printed there.
fn serve_once_on_a_terminal(storage: &Storage) -> String {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let controller = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&controller).unwrap();
    unlockpt(&controller).unwrap();
    let terminal_path = ptsname(&controller, Vec::new()).unwrap();
    let terminal =
        std::fs::OpenOptions::new().read(true).write(true).open(OsStr::from_bytes(terminal_path.as_bytes())).unwrap();
    let child = latchkey(storage).env("LATCHKEY_BIND", "127.0.0.1:0").stderr(terminal).spawn().unwrap();
    read_until_serving(child, std::fs::File::from(controller))
}

async fn authenticates(storage: &Storage, token: &str) -> bool {
    let app = App::build(&storage.config(|_| {})).await.unwrap();
    let principal = app.state.authenticator.authenticate(Some(&format!("Bearer {token}"))).await;
    matches!(principal, Ok(latchkey::auth::Principal::Master(_)))
}

#[tokio::test]
async fn off_a_terminal_the_first_master_token_goes_to_a_private_file_and_never_to_the_log() {
    let storage = Storage::new().await;
    let first = serve_once(&storage);
    assert!(!first.contains("lk_master_"), "the log stream never carries the token: {first}");
    let file = storage.dir.path().join("initial-master-token");
    assert!(first.contains(&file.display().to_string()), "the log names the file: {first}");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(token.starts_with("lk_master_"));

    std::fs::remove_file(&file).unwrap();
    let second = serve_once(&storage);
    assert!(second.contains("latchkey is serving"));
    assert!(!file.exists(), "later starts never write a token");
    assert!(authenticates(&storage, &token).await, "the saved token works");
}

#[tokio::test]
async fn on_a_terminal_the_first_master_token_is_shown_once_and_not_saved() {
    let storage = Storage::new().await;
    let first = serve_once_on_a_terminal(&storage);
    let token =
        first.split_whitespace().find(|word| word.starts_with("lk_master_")).expect("the first start shows a token");
    assert!(first.contains("Authorization: Bearer"), "with a hint on how to use it");
    assert!(!storage.dir.path().join("initial-master-token").exists());
    let second = serve_once_on_a_terminal(&storage);
    assert!(!second.contains("lk_master_"), "later starts never show it");
    assert!(second.contains("latchkey is serving"));
    assert!(authenticates(&storage, token).await, "the shown token works");
}

#[tokio::test]
async fn a_start_on_a_busy_port_creates_nothing_and_the_next_start_still_hands_over_the_token() {
    let storage = Storage::new().await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let output = latchkey(&storage).env("LATCHKEY_BIND", busy.local_addr().unwrap().to_string()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("cannot listen") && stderr.contains("LATCHKEY_BIND"), "{stderr}");
    assert!(!stderr.contains("lk_master_"), "{stderr}");
    assert_eq!(files_in(storage.dir.path()), Vec::<String>::new(), "nothing was created");
    drop(busy);

    serve_once(&storage);
    let token = std::fs::read_to_string(storage.dir.path().join("initial-master-token")).unwrap();
    assert!(authenticates(&storage, token.trim()).await);
}

#[tokio::test]
async fn database_files_are_private_even_in_a_data_dir_that_already_exists() {
    let storage = Storage::new().await;
    if !storage.is_sqlite() {
        return;
    }
    std::fs::set_permissions(storage.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    serve_once(&storage);
    for file in ["latchkey.db", "latchkey.db-wal", "latchkey.db-shm", "encryption.keys", "jwt.secret"] {
        let mode = std::fs::metadata(storage.dir.path().join(file)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

/// The bundled SQLite is built as `.cargo/config.toml` says: with the query planner
/// stability guarantee, so a cached statement with a bound LIMIT or range is not prepared
/// again on every execution, and without memory statistics, so its allocations take no
/// global lock.
#[tokio::test]
async fn the_bundled_sqlite_keeps_its_plans_whatever_is_bound_and_allocates_without_a_lock() {
    use sea_orm::{ConnectionTrait, Statement};
    let server = TestServer::start().await;
    if !server.storage.is_sqlite() {
        return;
    }
    let options = server
        .db
        .query_all_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Sqlite,
            "SELECT compile_options FROM pragma_compile_options",
        ))
        .await
        .expect("compile options");
    let options: Vec<String> =
        options.iter().map(|row| row.try_get::<String>("", "compile_options").unwrap()).collect();
    assert!(options.iter().any(|option| option == "ENABLE_QPSG"), "{options:?}");
    assert!(options.iter().any(|option| option == "DEFAULT_MEMSTATUS=0"), "{options:?}");
}

//! The operator's command line: `latchkey migrate`, `org`, `master-token`, `keys`.

use std::os::unix::fs::PermissionsExt;

use latchkey::{
    App,
    auth::master_tokens,
    domain::orgs::{self, Organization},
    error::Error,
};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::{
    startup::latchkey,
    support::{Storage, TestServer},
};

/// Runs `latchkey ARGS` on `storage`; returns whether it succeeded, and its stdout and
/// stderr.
fn run(storage: &Storage, args: &[&str]) -> (bool, String, String) {
    let output = latchkey(storage).args(args).output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[tokio::test]
async fn operator_commands_create_a_missing_data_dir_privately() {
    let storage = Storage::new().await;
    let dir = storage.dir.path();
    let commands: [&[&str]; 5] = [
        &["migrate"],
        &["org", "list"],
        &["org", "create", "acme"],
        &["master-token", "list", "--org", "acme"],
        &["keys", "list"],
    ];
    for args in commands {
        std::fs::remove_dir_all(dir).unwrap();
        let (ok, _, stderr) = run(&storage, args);
        assert!(!stderr.contains("unable to open database file"), "{args:?}: {stderr}");
        if args[0] == "keys" {
            // No key exists before the first `serve`: the error names where it looked.
            assert!(stderr.contains(&dir.join("encryption.keys").display().to_string()), "{stderr}");
        } else if args[0] == "master-token" {
            // The organization is gone with the SQLite file, not with a PostgreSQL database.
            assert!(ok || stderr.contains("no organization \"acme\""), "{stderr}");
        } else {
            assert!(ok, "{args:?}: {stderr}");
        }
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{args:?}");
    }
}

async fn organizations_named(db: &DatabaseConnection, name: &str) -> Vec<Organization> {
    orgs::list(db).await.unwrap().into_iter().filter(|org| org.name == name).collect()
}

#[tokio::test]
async fn an_organization_is_never_left_without_its_master_token() {
    let server = TestServer::start().await;
    let db = &server.db;
    // Any failure after the organization's row is written: here the token's insert.
    let refuse_tokens = if server.storage.is_sqlite() {
        vec!["CREATE TRIGGER refuse_tokens BEFORE INSERT ON master_tokens BEGIN SELECT RAISE(ABORT, 'refused'); END"]
    } else {
        vec![
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_tokens BEFORE INSERT ON master_tokens FOR EACH ROW EXECUTE FUNCTION refuse()",
        ]
    };
    for statement in refuse_tokens {
        db.execute_unprepared(statement).await.unwrap();
    }
    assert!(orgs::create_with_master_token(db, "half-made", "initial").await.is_err());
    assert!(organizations_named(db, "half-made").await.is_empty(), "the organization was rolled back");
    let drop = if server.storage.is_sqlite() {
        "DROP TRIGGER refuse_tokens"
    } else {
        "DROP TRIGGER refuse_tokens ON master_tokens"
    };
    db.execute_unprepared(drop).await.unwrap();

    // A duplicate name fails as a whole, and leaves the first organization as it was.
    orgs::create_with_master_token(db, "acme", "initial").await.unwrap();
    let again = orgs::create_with_master_token(db, "acme", "initial").await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{:?}", again.err());
    let acme = organizations_named(db, "acme").await;
    assert_eq!(acme.len(), 1);
    assert_eq!(master_tokens::list(db, acme[0].id).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_name_make_one_organization_with_one_token() {
    let server = TestServer::start().await;
    let db = &server.db;
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let db = db.clone();
        attempts.spawn(async move { orgs::create_with_master_token(&db, "racing", "initial").await });
    }
    let results = attempts.join_all().await;
    assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 1);
    for result in &results {
        assert!(matches!(result, Ok(_) | Err(Error::Conflict(_))), "{:?}", result.as_ref().err());
    }
    let racing = organizations_named(db, "racing").await;
    assert_eq!(racing.len(), 1);
    assert_eq!(master_tokens::list(db, racing[0].id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn org_create_prints_a_working_master_token() {
    let storage = Storage::new().await;
    let (ok, stdout, stderr) = run(&storage, &["org", "create", "acme"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("acme"));
    let token = stderr.split_whitespace().find(|word| word.starts_with("lk_master_")).expect("a token");
    let (ok, _, stderr) = run(&storage, &["org", "create", "acme"]);
    assert!(!ok && stderr.contains("already exists"), "{stderr}");
    let app = App::build(&storage.config(|_| {})).await.unwrap();
    let principal = app.state.authenticator.authenticate(Some(&format!("Bearer {token}"))).await;
    assert!(matches!(principal, Ok(latchkey::auth::Principal::Master(_))));
}

//! Secrets at rest: what the database holds is useless without the key, and any
//! tampering is detected rather than read as garbage.

use reqwest::Method;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use serde_json::json;
use uuid::Uuid;

use crate::support::{TestServer, error_code};

const SECRET: &str = "zd-secret-token-0001";
const CLIENT_SECRET: &str = "oauth-client-secret-at-rest-77";

struct Setup {
    server: TestServer,
    token: String,
    environment: String,
}

async fn setup() -> Setup {
    let server = TestServer::start().await;
    server.enable_full_reads(&server.master).await;
    let user = server.create_user(&server.master, "at-rest").await;
    let token = server.user_token(&server.master, &user).await;
    let (_, environment) = server.builtin_environment("zendesk").await;
    Setup { server, token, environment }
}

async fn row(server: &TestServer, id: &str) -> entity::authentication::Model {
    entity::authentication::Entity::find_by_id(Uuid::parse_str(id).unwrap()).one(&server.db).await.unwrap().unwrap()
}

async fn set_credentials(server: &TestServer, id: &str, bytes: Vec<u8>) {
    let mut active: entity::authentication::ActiveModel = row(server, id).await.into();
    active.credentials = Set(bytes);
    active.update(&server.db).await.unwrap();
}

async fn full_read_code(s: &Setup, id: &str) -> (u16, Option<String>) {
    let (status, body) = s.server.rest(Method::GET, &format!("/authentications/{id}/full"), Some(&s.token), None).await;
    assert!(!body.to_string().contains("sqlx") && !body.to_string().contains("envelope"), "no internals: {body}");
    let graphql = s
        .server
        .graphql(Some(&s.token), "query($id: ID!) { authenticationCredentials(id: $id) { data } }", json!({"id": id}))
        .await;
    (status, error_code(&graphql))
}

#[tokio::test]
async fn the_database_holds_no_plaintext_nor_any_eight_byte_run_of_it() {
    let s = setup().await;
    let id = s.server.import_zendesk(&s.token, &s.environment, "zd").await;
    let stored = row(&s.server, &id).await;
    let plaintext = format!("{{\"api_token\":\"{SECRET}\",\"email\":\"agent@acme.test\"}}");
    for sealed in [&stored.credentials, &stored.user_data] {
        for window in plaintext.as_bytes().windows(8) {
            assert!(!sealed.windows(8).any(|w| w == window), "an 8-byte run of the plaintext is stored");
        }
    }
    assert_eq!(stored.key_id.len(), 16);
    if s.server.storage.is_sqlite() {
        let dir = s.server.storage.dir.path();
        let files: Vec<u8> = ["latchkey.db", "latchkey.db-wal"]
            .iter()
            .flat_map(|f| std::fs::read(dir.join(f)).unwrap_or_default())
            .collect();
        assert!(!files.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    }
}

#[tokio::test]
async fn the_same_credential_sealed_twice_gives_different_ciphertexts() {
    let s = setup().await;
    let first = s.server.import_zendesk(&s.token, &s.environment, "one").await;
    let second = s.server.import_zendesk(&s.token, &s.environment, "two").await;
    assert_ne!(row(&s.server, &first).await.credentials, row(&s.server, &second).await.credentials);
}

#[tokio::test]
async fn a_tampered_ciphertext_fails_to_open_with_a_generic_error() {
    let s = setup().await;
    let id = s.server.import_zendesk(&s.token, &s.environment, "zd").await;
    let original = row(&s.server, &id).await.credentials;
    for index in [0, 1, 20, original.len() / 2, original.len() - 1] {
        let mut tampered = original.clone();
        tampered[index] ^= 0x01;
        set_credentials(&s.server, &id, tampered).await;
        assert_eq!(full_read_code(&s, &id).await, (500, Some("INTERNAL".to_owned())), "byte {index}");
    }
    set_credentials(&s.server, &id, original).await;
    assert_eq!(full_read_code(&s, &id).await, (200, None), "the untouched value opens again");
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_row_or_organization_fails_to_open() {
    let s = setup().await;
    let first = s.server.import_zendesk(&s.token, &s.environment, "one").await;
    let second = s.server.import_zendesk(&s.token, &s.environment, "two").await;
    let master_b = s.server.other_org().await;
    let theirs = s.server.import_zendesk(&master_b, &s.environment, "theirs").await;

    set_credentials(&s.server, &second, row(&s.server, &first).await.credentials).await;
    assert_eq!(full_read_code(&s, &second).await.0, 500, "another row's ciphertext");
    let mut user_data_swap: entity::authentication::ActiveModel = row(&s.server, &first).await.into();
    user_data_swap.credentials = Set(row(&s.server, &first).await.user_data);
    user_data_swap.update(&s.server.db).await.unwrap();
    assert_eq!(full_read_code(&s, &first).await.0, 500, "another field's ciphertext");

    let fresh = s.server.import_zendesk(&s.token, &s.environment, "fresh").await;
    set_credentials(&s.server, &fresh, row(&s.server, &theirs).await.credentials).await;
    assert_eq!(full_read_code(&s, &fresh).await.0, 500, "another organization's ciphertext");
}

#[tokio::test]
async fn plaintext_null_and_unknown_versions_in_the_column_are_refused() {
    let s = setup().await;
    let id = s.server.import_zendesk(&s.token, &s.environment, "zd").await;
    let mut unknown_version = row(&s.server, &id).await.credentials;
    unknown_version[0] = 9;
    for bytes in [format!("{{\"api_token\":\"{SECRET}\"}}").into_bytes(), Vec::new(), unknown_version] {
        set_credentials(&s.server, &id, bytes).await;
        assert_eq!(full_read_code(&s, &id).await.0, 500);
    }
}

#[tokio::test]
async fn an_oauth_client_secret_is_sealed_at_rest() {
    let s = setup().await;
    let service = s.server.create_custom_service(&s.server.master, "sealed-app").await;
    let create = "mutation($s: ID!, $secret: String!) { createServiceEnvironment(input: {serviceId: $s, title: \"App\", authenticationType: oauth2,
        oauthApp: {clientId: \"cid\", clientSecret: $secret, authorizeUrl: \"https://a.test/authorize\", tokenUrl: \"https://a.test/token\"}}) { serviceEnvironment { id } } }";
    let data = s.server.ok(&s.server.master, create, json!({"s": service, "secret": CLIENT_SECRET})).await;
    let id = Uuid::parse_str(data["createServiceEnvironment"]["serviceEnvironment"]["id"].as_str().unwrap()).unwrap();
    let stored = entity::service_environment::Entity::find_by_id(id).one(&s.server.db).await.unwrap().unwrap();
    let sealed = stored.oauth_client_secret.clone().expect("sealed secret");
    assert!(!sealed.windows(8).any(|w| CLIENT_SECRET.as_bytes().windows(8).any(|p| p == w)));
    assert!(!format!("{stored:?}").contains(CLIENT_SECRET));
    let env = latchkey::domain::catalog::client_secret_binding(
        latchkey::ids::OrgId(s.server.org_of(&s.server.master).await),
        latchkey::ids::EnvironmentId(id),
    );
    let keyring = latchkey::crypto::Keyring::parse(
        &std::fs::read_to_string(s.server.storage.dir.path().join("encryption.keys")).unwrap(),
    )
    .unwrap();
    let opened = latchkey::crypto::envelope::open(&keyring, &env, &sealed).unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(opened.expose_secret().as_slice(), CLIENT_SECRET.as_bytes());
}

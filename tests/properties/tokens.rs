//! Bearer tokens: no string a client can send is taken for a token it was not given.

use std::sync::OnceLock;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use latchkey::{
    Error,
    auth::{Authenticator, Principal, UserTokens, master_tokens},
    config::{Config, RawConfig},
    crypto, db,
    domain::orgs,
    ids::{OrgId, UserId},
};
use proptest::prelude::*;
use secrecy::{ExposeSecret, SecretString};

const ISSUER: &str = "http://latchkey.test";

fn user_tokens() -> UserTokens {
    UserTokens::new(&SecretString::from(crypto::random_token("")), ISSUER).expect("a strong secret")
}

/// One database with one organization and its master token, shared by every case.
struct World {
    runtime: tokio::runtime::Runtime,
    authenticator: Authenticator,
    master_token: String,
    user_token: String,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("temporary dir");
        let config =
            Config::from_raw(RawConfig { data_dir: Some(dir.path().display().to_string()), ..RawConfig::default() })
                .expect("a SQLite configuration");
        let tokens = user_tokens();
        let (authenticator, master_token) = runtime.block_on(async {
            let conn = db::connect(&config).await.expect("database");
            db::migrate(&conn).await.expect("migrations");
            let org = orgs::create(&conn, "properties").await.expect("organization");
            let (_, token) = master_tokens::create(&conn, org.id, "properties").await.expect("master token");
            (
                Authenticator::new(conn, tokens.clone(), latchkey::auth::Revocations::new()),
                token.expose_secret().to_owned(),
            )
        });
        // A well-signed user token of a user that does not exist: refused all the same.
        let user_token = tokens.mint(OrgId::generate(), UserId::generate(), 0).expect("minted").token;
        World { runtime, authenticator, master_token, user_token: user_token.expose_secret().to_owned(), _dir: dir }
    })
}

fn authenticate(header: &str) -> Result<Principal, Error> {
    let world = world();
    world.runtime.block_on(world.authenticator.authenticate(Some(header)))
}

/// Refused as a caller without valid credentials: never taken for anyone, never an
/// internal error.
fn refused(result: &Result<Principal, Error>) -> bool {
    matches!(result, Err(Error::Unauthenticated) | Ok(Principal::Anonymous))
}

/// `token` with the character at `at` replaced by a different one.
fn changed(token: &str, at: prop::sample::Index, to: char) -> Option<String> {
    let mut chars: Vec<char> = token.chars().collect();
    let at = at.index(chars.len());
    (chars[at] != to).then(|| {
        chars[at] = to;
        chars.into_iter().collect()
    })
}

/// Characters a token is made of, and a few it is not.
fn token_char() -> impl Strategy<Value = char> {
    prop_oneof![4 => prop::char::ranges(vec!['a'..='z', 'A'..='Z', '0'..='9'].into()), 1 => prop::sample::select(vec!['-', '_', '.', '=', '+', '/', ' ', 'é'])]
}

/// Three dot-separated base64url parts, shaped like a JWT.
fn jwt_shaped() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 3)
        .prop_map(|parts| parts.iter().map(|part| URL_SAFE_NO_PAD.encode(part)).collect::<Vec<_>>().join("."))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn no_arbitrary_authorization_header_authenticates(
        header in prop_oneof![
            any::<String>(),
            any::<String>().prop_map(|token| format!("Bearer {token}")),
            any::<String>().prop_map(|token| format!("Bearer {}{token}", master_tokens::PREFIX)),
            jwt_shaped().prop_map(|token| format!("bearer {token}")),
        ],
    ) {
        let result = authenticate(&header);
        prop_assert!(refused(&result), "{header:?} gave {result:?}");
    }

    #[test]
    fn a_master_token_with_any_character_changed_is_refused(at in any::<prop::sample::Index>(), to in token_char()) {
        let world = world();
        let genuine = authenticate(&format!("Bearer {}", world.master_token));
        prop_assert!(matches!(genuine, Ok(Principal::Master(_))));
        if let Some(forged) = changed(&world.master_token, at, to) {
            let result = authenticate(&format!("Bearer {forged}"));
            prop_assert!(refused(&result), "{forged} gave {result:?}");
        }
    }

    #[test]
    fn arbitrary_strings_never_verify_as_user_tokens(token in prop_oneof![any::<String>(), jwt_shaped()]) {
        prop_assert!(user_tokens().verify(&token).is_err());
    }

    #[test]
    fn a_user_token_with_any_character_changed_is_refused(at in any::<prop::sample::Index>(), to in token_char()) {
        let tokens = user_tokens();
        let minted = tokens.mint(OrgId::generate(), UserId::generate(), 0).expect("minted");
        let token = minted.token.expose_secret();
        prop_assert!(tokens.verify(token).is_ok());
        if let Some(forged) = changed(token, at, to) {
            prop_assert!(tokens.verify(&forged).is_err(), "{forged} verified");
        }
        // Nor does a user token stand in for a user that does not exist.
        let stranger = authenticate(&format!("Bearer {}", world().user_token));
        prop_assert!(refused(&stranger));
    }

    #[test]
    fn a_user_token_is_verified_only_with_the_secret_that_signed_it(version in any::<i64>()) {
        let minted = user_tokens().mint(OrgId::generate(), UserId::generate(), version).expect("minted");
        prop_assert!(user_tokens().verify(minted.token.expose_secret()).is_err());
    }
}

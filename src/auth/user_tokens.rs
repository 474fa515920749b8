//! User tokens: HS256 JWTs, algorithm pinned, every registered claim required.

use std::{fmt, sync::Arc};

use chrono::{Duration, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::{
    crypto,
    ids::{OrgId, UserId},
};

/// How long a user token lives (the public API's promise: two days).
pub const LIFETIME: Duration = Duration::days(2);
const AUDIENCE: &str = "latchkey:user";
/// The shortest signing secret accepted.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: Uuid,
    org: Uuid,
    exp: i64,
    iat: i64,
    jti: Uuid,
    /// The user's token version when minted; bumping it revokes the token.
    ver: i64,
}

/// What a valid user token says.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedClaims {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub version: i64,
}

/// A freshly minted token; the string is the bearer secret.
pub struct MintedToken {
    pub token: SecretString,
    pub id: Uuid,
    pub expires_at: chrono::DateTime<Utc>,
}

#[derive(Clone)]
pub struct UserTokens {
    inner: Arc<Inner>,
}

struct Inner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    issuer: String,
    validation: Validation,
}

impl fmt::Debug for UserTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserTokens").field("kid", &self.inner.kid).finish_non_exhaustive()
    }
}

/// Words of the secrets that tutorials and sample configurations ship with. Long enough
/// that a random secret of 48 base64 characters contains one with odds below 1 in 10^6.
const SAMPLE_WORDS: &[&str] = &[
    "secret",
    "changeme",
    "change-me",
    "change_me",
    "changethis",
    "password",
    "passw0rd",
    "example",
    "sample",
    "placeholder",
    "your-256-bit",
    "qwerty",
];

/// A hand-made secret: a tutorial's sample, a repeated pattern, a counting sequence, or
/// too little variety. The bounds accept every random secret of at least 32 hex digits
/// (`openssl rand -hex 16`, whose character frequencies carry about 110 bits, rarely
/// under 90), and refuse text that repeats a few characters.
fn looks_weak(secret: &[u8]) -> bool {
    use crypto::strength::{distinct_bytes, frequency_bits, longest_counting_run, repeats_a_pattern};
    let lower = secret.to_ascii_lowercase();
    SAMPLE_WORDS.iter().any(|word| lower.windows(word.len()).any(|window| window == word.as_bytes()))
        || repeats_a_pattern(secret)
        || longest_counting_run(secret) >= 8
        || distinct_bytes(secret) < 8
        || frequency_bits(secret) < 80.0
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the JWT signing secret must be at least {MIN_SECRET_LEN} bytes")]
    TooShort,
    #[error(
        "the JWT signing secret is a sample, a repeated pattern, a sequence or too little variety; generate a random \
         one (e.g. `openssl rand -base64 48`)"
    )]
    Weak,
}

impl UserTokens {
    pub fn new(secret: &SecretString, issuer: &str) -> Result<Self, SecretError> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort);
        }
        if looks_weak(bytes) {
            return Err(SecretError::Weak);
        }
        // The key id names the secret without revealing it, so a token signed by
        // another installation's secret is refused before its signature is checked.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(bytes).expect("HMAC takes keys of any length");
        mac.update(b"latchkey/jwt-kid/v1");
        let kid = crypto::hex(&mac.finalize().into_bytes()[..8]);

        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.leeway = 30;

        Ok(Self {
            inner: Arc::new(Inner {
                encoding: EncodingKey::from_secret(bytes),
                decoding: DecodingKey::from_secret(bytes),
                kid,
                issuer: issuer.to_owned(),
                validation,
            }),
        })
    }

    pub fn mint(&self, org_id: OrgId, user_id: UserId, version: i64) -> anyhow::Result<MintedToken> {
        let now = Utc::now();
        let expires_at = now + LIFETIME;
        let id = Uuid::new_v4();
        let claims = Claims {
            iss: self.inner.issuer.clone(),
            aud: AUDIENCE.to_owned(),
            sub: user_id.0,
            org: org_id.0,
            exp: expires_at.timestamp(),
            iat: now.timestamp(),
            jti: id,
            ver: version,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.inner.kid.clone());
        let token = encode(&header, &claims, &self.inner.encoding)?;
        Ok(MintedToken { token: token.into(), id, expires_at })
    }

    /// Checks signature, algorithm, key id and claims. The error says why, for the
    /// debug log only.
    pub fn verify(&self, token: &str) -> Result<VerifiedClaims, String> {
        let header = decode_header(token).map_err(|err| format!("malformed header: {err}"))?;
        if header.alg != Algorithm::HS256 {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        }
        if header.kid.as_deref() != Some(self.inner.kid.as_str()) {
            return Err("unknown key id".to_owned());
        }
        let data =
            decode::<Claims>(token, &self.inner.decoding, &self.inner.validation).map_err(|err| err.to_string())?;
        Ok(VerifiedClaims {
            user_id: UserId(data.claims.sub),
            org_id: OrgId(data.claims.org),
            version: data.claims.ver,
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "http://latchkey.test";

    fn tokens() -> UserTokens {
        UserTokens::new(&SecretString::from(crypto::random_token("")), ISSUER).unwrap()
    }

    fn sign(tokens: &UserTokens, header: serde_json::Value, claims: serde_json::Value) -> String {
        let head = URL_SAFE_NO_PAD.encode(header.to_string());
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{head}.{body}");
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &tokens.inner.encoding, Algorithm::HS256).unwrap();
        format!("{signing_input}.{signature}")
    }

    fn valid_claims() -> serde_json::Value {
        let now = Utc::now().timestamp();
        json!({"iss": ISSUER, "aud": AUDIENCE, "sub": Uuid::now_v7(), "org": Uuid::now_v7(),
               "exp": now + 600, "iat": now, "jti": Uuid::new_v4(), "ver": 0})
    }

    fn header(tokens: &UserTokens) -> serde_json::Value {
        json!({"alg": "HS256", "typ": "JWT", "kid": tokens.inner.kid})
    }

    #[test]
    fn a_minted_token_verifies_with_its_claims() {
        let tokens = tokens();
        let (org, user) = (OrgId::generate(), UserId::generate());
        let minted = tokens.mint(org, user, 3).unwrap();
        let claims = tokens.verify(minted.token.expose_secret()).unwrap();
        assert_eq!((claims.org_id, claims.user_id, claims.version), (org, user, 3));
        assert!(minted.expires_at > Utc::now() + Duration::hours(47));
    }

    #[test]
    fn a_hand_signed_valid_token_is_accepted() {
        let tokens = tokens();
        assert!(tokens.verify(&sign(&tokens, header(&tokens), valid_claims())).is_ok());
    }

    #[test]
    fn tampered_forged_and_foreign_tokens_are_refused() {
        let tokens = tokens();
        let other = self::tokens();
        let minted = tokens.mint(OrgId::generate(), UserId::generate(), 0).unwrap();
        let token = minted.token.expose_secret().to_owned();
        // another installation's secret
        assert!(other.verify(&token).is_err());
        // a forged signature
        let (unsigned, _) = token.rsplit_once('.').unwrap();
        assert!(tokens.verify(&format!("{unsigned}.AAAA")).is_err());
        // alg: none
        let none_header =
            URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": tokens.inner.kid}).to_string());
        let body = URL_SAFE_NO_PAD.encode(valid_claims().to_string());
        assert!(tokens.verify(&format!("{none_header}.{body}.")).is_err());
        // another algorithm, even signed with the right secret
        let hs512 = json!({"alg": "HS512", "typ": "JWT", "kid": tokens.inner.kid});
        assert!(tokens.verify(&sign(&tokens, hs512, valid_claims())).is_err());
        // unknown kid
        let unknown_kid = json!({"alg": "HS256", "typ": "JWT", "kid": "0000000000000000"});
        assert!(tokens.verify(&sign(&tokens, unknown_kid, valid_claims())).is_err());
        let no_kid = json!({"alg": "HS256", "typ": "JWT"});
        assert!(tokens.verify(&sign(&tokens, no_kid, valid_claims())).is_err());
    }

    #[test]
    fn missing_wrong_or_expired_claims_are_refused() {
        let tokens = tokens();
        let now = Utc::now().timestamp();
        let mut cases = Vec::new();
        for missing in ["exp", "iat", "iss", "aud", "sub", "org", "jti", "ver"] {
            let mut claims = valid_claims();
            claims.as_object_mut().unwrap().remove(missing);
            cases.push((format!("missing {missing}"), claims));
        }
        for (field, value) in [
            ("iss", json!("http://elsewhere")),
            ("aud", json!("someone-else")),
            ("sub", json!("not-a-uuid")),
            ("exp", json!(now - 3600)),
            // the string-`exp` bypass of old JWT libraries
            ("exp", json!((now + 3600).to_string())),
        ] {
            let mut claims = valid_claims();
            claims[field] = value.clone();
            cases.push((format!("{field} = {value}"), claims));
        }
        for (case, claims) in cases {
            assert!(tokens.verify(&sign(&tokens, header(&tokens), claims)).is_err(), "{case} was accepted");
        }
    }

    #[test]
    fn short_or_sample_secrets_are_refused() {
        assert!(matches!(UserTokens::new(&SecretString::from("short"), ISSUER), Err(SecretError::TooShort)));
        let samples = [
            "a".repeat(64),
            "0123456789abcdef0123456789abcdef".to_owned(),
            "your-256-bit-secret-your-256-bit-secret".to_owned(),
            "my-Super-SECRET-key-for-jwt-tokens-2024".to_owned(),
            "abcdefghijklmnopqrstuvwxyz-Kq7#pL9@wZ".to_owned(),
            format!("{}b1c2d3e4", "a".repeat(40)),
        ];
        for sample in samples {
            let refused = UserTokens::new(&SecretString::from(sample.clone()), ISSUER);
            assert!(matches!(refused, Err(SecretError::Weak)), "{sample}");
        }
    }

    #[test]
    fn random_secrets_of_the_documented_shapes_are_accepted() {
        for _ in 0..2_000 {
            for secret in [
                crypto::hex(&crypto::random_bytes::<16>()),
                crypto::hex(&crypto::random_bytes::<32>()),
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, crypto::random_bytes::<24>()),
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, crypto::random_bytes::<48>()),
            ] {
                assert!(UserTokens::new(&SecretString::from(secret), ISSUER).is_ok());
            }
        }
    }
}

//! latchkey's OAuth 2.0 client, on the `oauth2` crate, sending through
//! [`crate::outbound::Outbound`]: the authorization URL (PKCE S256, `state`, scopes), the
//! code exchange, the client-credentials grant and the refresh, and the mapping of a token
//! answer into an environment's credentials.
//!
//! Failures come in three kinds a caller acts on differently (see [`OAuthError`]): the
//! provider's refusal (`invalid_grant`, `access_denied`, ...), which will repeat; an
//! outage (network, timeout, 5xx, 429), which may pass; and a call that cannot be made or
//! answered in OAuth terms (a refused address, a malformed answer). No message carries a
//! token, a code, a secret or an answer's body.

mod tokens;
mod transport;

use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardRevocableToken,
    TokenUrl,
    basic::{BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse},
};
use secrecy::{ExposeSecret, SecretString};

pub use tokens::{Mapped, Previous, TokenSet, map};
pub use transport::SendError;

use crate::{domain::catalog::OAuthApp, outbound::Outbound};

/// The OAuth client latchkey acts as: an organization's OAuth app, or the client id and
/// secret an end user gave for the client-credentials grant. The secret is sent in the
/// token request's body (`client_secret_post`).
#[derive(Clone, Debug)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    /// Needed only for the authorization code flow.
    pub authorize_url: Option<String>,
    pub token_url: String,
}

impl OAuthClient {
    /// An organization's OAuth app with its opened client secret.
    pub fn of_app(app: &OAuthApp, client_secret: SecretString) -> Self {
        Self {
            client_id: app.client_id.clone(),
            client_secret: Some(client_secret),
            authorize_url: Some(app.authorize_url.clone()),
            token_url: app.token_url.clone(),
        }
    }
}

/// Why a grant gave no token.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The provider answered with an OAuth error code (`invalid_grant`, `invalid_client`,
    /// `access_denied`, ...): asking again the same way gets the same answer.
    #[error("the provider refused: {error}")]
    Refused { error: String },
    /// No answer, a timeout, a 5xx or a 429: it may pass; the credential in hand stays good.
    #[error(transparent)]
    Unavailable(SendError),
    /// The call was not made (a refused address, a malformed URL) or its answer is not an
    /// OAuth answer latchkey can read. The message names at most a host.
    #[error("{0}")]
    Failed(String),
}

impl OAuthError {
    /// A failure that may pass on its own: retry later, keep the current credential.
    pub fn is_transient(&self) -> bool {
        matches!(self, OAuthError::Unavailable(_))
    }

    /// The provider's OAuth error code, when it refused.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            OAuthError::Refused { error } => Some(error),
            _ => None,
        }
    }

    /// A provider's error code as received (in a token answer or on the redirect back),
    /// reduced to the characters RFC 6749 allows in one and bounded, so it can be shown and
    /// logged.
    pub fn refused(code: &str) -> Self {
        let error: String =
            code.chars().filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\').take(64).collect();
        OAuthError::Refused { error: if error.is_empty() { "unknown_error".to_owned() } else { error } }
    }
}

impl From<RequestTokenError<SendError, BasicErrorResponse>> for OAuthError {
    fn from(err: RequestTokenError<SendError, BasicErrorResponse>) -> Self {
        match err {
            RequestTokenError::ServerResponse(answer) => OAuthError::refused(answer.error().as_ref()),
            RequestTokenError::Request(err) if err.is_transient() => OAuthError::Unavailable(err),
            RequestTokenError::Request(err) => OAuthError::Failed(err.to_string()),
            // The body may hold a token: it is dropped here, never shown or logged.
            RequestTokenError::Parse(_, _) => {
                OAuthError::Failed("the token endpoint's answer is not an OAuth token answer".to_owned())
            }
            RequestTokenError::Other(_) => {
                OAuthError::Failed("the token endpoint answered without a JSON token answer".to_owned())
            }
        }
    }
}

type TokenAnswer = oauth2::StandardTokenResponse<tokens::Extras, oauth2::basic::BasicTokenType>;

type Oauth2Client<HasAuthUrl, HasTokenUrl> = Client<
    BasicErrorResponse,
    TokenAnswer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    HasAuthUrl,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    HasTokenUrl,
>;

fn bad_url(what: &str) -> OAuthError {
    OAuthError::Failed(format!("the {what} is not a valid URL"))
}

fn client(client: &OAuthClient) -> Oauth2Client<EndpointNotSet, EndpointNotSet> {
    let mut built = Client::new(ClientId::new(client.client_id.clone())).set_auth_type(AuthType::RequestBody);
    if let Some(secret) = &client.client_secret {
        built = built.set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()));
    }
    built
}

fn token_client(of: &OAuthClient) -> Result<Oauth2Client<EndpointNotSet, EndpointSet>, OAuthError> {
    Ok(client(of).set_token_uri(TokenUrl::new(of.token_url.clone()).map_err(|_| bad_url("token URL"))?))
}

/// Where to send the end user, and the PKCE verifier to keep (secret) until the code
/// comes back.
pub struct AuthorizationStart {
    /// Holds the `state`, the PKCE challenge (S256), the scopes and the redirect URI:
    /// nothing secret.
    pub url: url::Url,
    pub pkce_verifier: SecretString,
}

/// The authorization URL of the code flow, with a fresh PKCE pair (S256) and `state`.
pub fn authorization_url(
    of: &OAuthClient,
    redirect_uri: &str,
    scopes: &[String],
    state: &str,
) -> Result<AuthorizationStart, OAuthError> {
    let authorize_url = of.authorize_url.as_deref().ok_or_else(|| bad_url("authorization URL"))?;
    let built = client(of)
        .set_auth_uri(AuthUrl::new(authorize_url.to_owned()).map_err(|_| bad_url("authorization URL"))?)
        .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| bad_url("redirect URI"))?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state = state.to_owned();
    let (url, _) = built
        .authorize_url(move || CsrfToken::new(state))
        .add_scopes(scopes.iter().map(|scope| Scope::new(scope.clone())))
        .set_pkce_challenge(challenge)
        .url();
    Ok(AuthorizationStart { url, pkce_verifier: SecretString::from(verifier.secret().clone()) })
}

/// Exchanges an authorization code (with its PKCE verifier) at the token URL.
pub async fn exchange_code(
    outbound: &Outbound,
    of: &OAuthClient,
    redirect_uri: &str,
    code: &str,
    pkce_verifier: &SecretString,
) -> Result<TokenSet, OAuthError> {
    let redirect = RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| bad_url("redirect URI"))?;
    let transport = transport::Transport(outbound);
    let answer = token_client(of)?
        .set_redirect_uri(redirect)
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.expose_secret().to_owned()))
        .request_async(&transport)
        .await?;
    Ok(TokenSet::from_answer(answer))
}

/// The client-credentials grant: a token for the client itself.
pub async fn client_credentials(
    outbound: &Outbound,
    of: &OAuthClient,
    scopes: &[String],
) -> Result<TokenSet, OAuthError> {
    let transport = transport::Transport(outbound);
    let answer = token_client(of)?
        .exchange_client_credentials()
        .add_scopes(scopes.iter().map(|scope| Scope::new(scope.clone())))
        .request_async(&transport)
        .await?;
    Ok(TokenSet::from_answer(answer))
}

/// A new access token for a refresh token. `scopes` empty asks for the scopes granted
/// before. Providers that rotate refresh tokens answer with a new one and retire the old
/// one at once; a token answer without one means the old one stays good
/// ([`map`] with a [`Previous`] keeps it).
pub async fn refresh(
    outbound: &Outbound,
    of: &OAuthClient,
    refresh_token: &SecretString,
    scopes: &[String],
) -> Result<TokenSet, OAuthError> {
    let transport = transport::Transport(outbound);
    let refresh_token = RefreshToken::new(refresh_token.expose_secret().to_owned());
    let answer = token_client(of)?
        .exchange_refresh_token(&refresh_token)
        .add_scopes(scopes.iter().map(|scope| Scope::new(scope.clone())))
        .request_async(&transport)
        .await?;
    Ok(TokenSet::from_answer(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> OAuthClient {
        OAuthClient {
            client_id: "client-1".into(),
            client_secret: Some("very-secret".to_owned().into()),
            authorize_url: Some("https://id.example.com/authorize?audience=api".into()),
            token_url: "https://id.example.com/token".into(),
        }
    }

    #[test]
    fn the_authorization_url_carries_pkce_s256_state_and_scopes_but_no_secret() {
        let start =
            authorization_url(&app(), "https://keys.example.com/cb", &["read".into(), "write".into()], "st-1").unwrap();
        let query: std::collections::HashMap<String, String> = start.url.query_pairs().into_owned().collect();
        assert_eq!(query["audience"], "api", "the authorize URL's own query stays");
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["client_id"], "client-1");
        assert_eq!(query["state"], "st-1");
        assert_eq!(query["scope"], "read write");
        assert_eq!(query["redirect_uri"], "https://keys.example.com/cb");
        assert_eq!(query["code_challenge_method"], "S256");
        let verifier = start.pkce_verifier.expose_secret();
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(verifier.to_owned()));
        assert_eq!(&query["code_challenge"], challenge.as_str());
        assert!(!start.url.as_str().contains("very-secret") && !start.url.as_str().contains(verifier));
    }

    #[test]
    fn provider_error_codes_are_reduced_to_printable_text() {
        assert_eq!(OAuthError::refused("invalid_grant").refusal(), Some("invalid_grant"));
        assert_eq!(OAuthError::refused("a\"b\u{1b}c<d").refusal(), Some("abc<d"));
        assert_eq!(OAuthError::refused("").refusal(), Some("unknown_error"));
        assert_eq!(OAuthError::refused(&"x".repeat(500)).refusal().map(str::len), Some(64));
    }
}

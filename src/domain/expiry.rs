//! When an authentication's access token expires, whether latchkey can renew it, when a
//! refresh is due, and the status a metadata read shows.
//!
//! All of it is worked out from the credentials whenever they are written (an import, a
//! replacement, a refresh) and kept in plain columns, so metadata reads and the background
//! job never open a sealed value.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::catalog::{AuthenticationType, Environment};
use crate::oauth::TokenSet;

/// The longest lifetime read from `expires_in`-style fields: ten years. Anything longer is
/// taken as no expiry rather than risking an overflow.
const MAX_LIFETIME_SECS: i64 = 10 * 365 * 24 * 3600;

/// How latchkey renews an access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// With the refresh token, at the token URL of the organization's OAuth app.
    RefreshToken,
    /// With the client id and secret the credentials hold (`oauth2client_credentials`).
    ClientCredentials,
}

impl Renewal {
    pub fn as_str(self) -> &'static str {
        match self {
            Renewal::RefreshToken => "refresh_token",
            Renewal::ClientCredentials => "client_credentials",
        }
    }

    pub fn parse(text: Option<&str>) -> Option<Self> {
        match text? {
            "refresh_token" => Some(Renewal::RefreshToken),
            "client_credentials" => Some(Renewal::ClientCredentials),
            _ => None,
        }
    }
}

/// What a metadata read says of an authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Usable: unexpired, or renewable the next time it is read.
    Active,
    /// The provider refused to renew it (`invalid_grant`, ...); latchkey stops trying until
    /// it is replaced or reconnected.
    RefreshFailed,
    /// Its access token has expired and latchkey cannot renew it now.
    Expired,
    /// The provider no longer accepts the client id and secret it holds.
    Revoked,
}

impl Status {
    /// The stored form; `EXPIRED` is never stored but worked out when read.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "ACTIVE",
            Status::RefreshFailed => "REFRESH_FAILED",
            Status::Expired => "EXPIRED",
            Status::Revoked => "REVOKED",
        }
    }

    fn stored(text: &str) -> Self {
        match text {
            "REFRESH_FAILED" => Status::RefreshFailed,
            "REVOKED" => Status::Revoked,
            "EXPIRED" => Status::Expired,
            _ => Status::Active,
        }
    }
}

/// What an authentication's status is read from: its stored status and its expiry.
#[derive(Clone, Copy, Debug)]
pub struct Standing<'a> {
    pub stored: &'a str,
    pub renewal: Option<&'a str>,
    pub refresh_attempts: i32,
    pub expires_at: Option<DateTime<Utc>>,
    pub hard_expires_at: Option<DateTime<Utc>>,
}

/// The status of a row at `now`: the stored one, except that an active authentication
/// whose hard expiry has passed, or whose access token has expired while latchkey cannot
/// renew it (no way to, or its attempts are failing), reads `EXPIRED`.
pub fn status(standing: Standing<'_>, now: DateTime<Utc>) -> Status {
    let stored = Status::stored(standing.stored);
    if stored != Status::Active {
        return stored;
    }
    let passed = |at: Option<DateTime<Utc>>| at.is_some_and(|at| at <= now);
    let renewable = Renewal::parse(standing.renewal).is_some() && standing.refresh_attempts == 0;
    if passed(standing.hard_expires_at) || (passed(standing.expires_at) && !renewable) {
        Status::Expired
    } else {
        Status::Active
    }
}

/// When refreshes are due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long before its expiry an access token is renewed (at most half its lifetime).
    pub before: Duration,
    /// A refresh token unused for this long is used anyway, before the provider lets it lapse.
    pub idle_after: Duration,
}

/// An authentication's expiry and renewal, from its credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    pub expires_at: Option<DateTime<Utc>>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub renewal: Option<Renewal>,
    /// Whether the credentials hold an access token yet (client credentials may not).
    has_access_token: bool,
}

fn text<'a>(credentials: &'a Value, key: &str) -> Option<&'a str> {
    credentials.get(key)?.as_str().map(str::trim).filter(|text| !text.is_empty())
}

/// A number of seconds, as a JSON number or numeric text.
fn seconds(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64().or_else(|| number.as_f64().map(|f| f as i64)),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// A point in time: RFC 3339 text, or Unix seconds (milliseconds when that large).
fn instant(value: &Value) -> Option<DateTime<Utc>> {
    if let Some(text) = value.as_str()
        && let Ok(at) = DateTime::parse_from_rfc3339(text.trim())
    {
        return Some(at.with_timezone(&Utc));
    }
    let number = seconds(value)?;
    let (secs, millis) = if number > 100_000_000_000 { (number / 1000, number % 1000) } else { (number, 0) };
    DateTime::from_timestamp(secs, u32::try_from(millis).ok()? * 1_000_000)
}

/// The first of `absolute` (a time) or `relative` (seconds from `at`) the document holds.
fn expiry(document: &Value, absolute: &[&str], relative: &[&str], at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let absolute = absolute.iter().find_map(|key| document.get(key).and_then(instant));
    absolute.or_else(|| {
        let lifetime = relative.iter().find_map(|key| document.get(key).and_then(seconds))?;
        (0..=MAX_LIFETIME_SECS).contains(&lifetime).then(|| at + Duration::seconds(lifetime))
    })
}

const ACCESS_ABSOLUTE: &[&str] = &["expires_at"];
const ACCESS_RELATIVE: &[&str] = &["expires_in"];
const REFRESH_ABSOLUTE: &[&str] = &["refresh_token_expires_at", "refresh_expires_at"];
const REFRESH_RELATIVE: &[&str] = &["refresh_token_expires_in", "refresh_expires_in"];

impl Lifecycle {
    /// From credentials written at `at`: the access token's expiry from `expires_at` (RFC
    /// 3339 or Unix seconds) or `expires_in` (seconds from `at`), the refresh token's from
    /// `refresh_token_expires_at`/`_in` (or `refresh_expires_at`/`_in`), and the renewal
    /// the environment allows: the client-credentials grant with a client id and secret,
    /// or a refresh token where the organization's OAuth app gives a token URL.
    pub fn of(environment: &Environment, credentials: &Value, at: DateTime<Utc>) -> Self {
        let renewal = if environment.authentication_type == AuthenticationType::Oauth2clientCredentials {
            (environment.oauth_app.is_some()
                && text(credentials, "client_id").is_some()
                && text(credentials, "client_secret").is_some())
            .then_some(Renewal::ClientCredentials)
        } else {
            (matches!(environment.authentication_type, AuthenticationType::Oauth2 | AuthenticationType::Oauth2password)
                && environment.oauth_app.is_some()
                && text(credentials, "refresh_token").is_some())
            .then_some(Renewal::RefreshToken)
        };
        Self {
            expires_at: expiry(credentials, ACCESS_ABSOLUTE, ACCESS_RELATIVE, at),
            refresh_expires_at: expiry(credentials, REFRESH_ABSOLUTE, REFRESH_RELATIVE, at),
            renewal,
            has_access_token: text(credentials, "access_token").is_some(),
        }
    }

    /// After a refresh: as [`Lifecycle::of`] the new credentials, except the expiries,
    /// which only the answer can state: the access token's is the answer's `expires_in`
    /// (none without one), and the refresh token's moves only with the answer. An answer that states one sets it;
    /// one with a new refresh token but no expiry makes it unknown; one without a new
    /// refresh token keeps the old token and its old expiry.
    pub fn after_refresh(
        environment: &Environment,
        credentials: &Value,
        answer: &TokenSet,
        before: Option<DateTime<Utc>>,
    ) -> Self {
        let mut lifecycle = Self::of(environment, credentials, answer.received_at);
        // The answer's own `expires_in`, to the millisecond (the credentials' `expires_at`
        // is rounded to the second).
        lifecycle.expires_at = answer.expires_at();
        let stated = Value::Object(answer.extras.expose().clone());
        lifecycle.refresh_expires_at = expiry(&stated, REFRESH_ABSOLUTE, REFRESH_RELATIVE, answer.received_at)
            .or(if answer.refresh_token.is_some() { None } else { before });
        lifecycle
    }

    /// The expiry no refresh can move: the access token's when latchkey cannot renew it,
    /// the refresh token's when that is how it renews; none for client credentials, which
    /// mint a new token whenever needed.
    pub fn hard_expires_at(&self) -> Option<DateTime<Utc>> {
        match self.renewal {
            None => self.expires_at,
            Some(Renewal::RefreshToken) => self.refresh_expires_at,
            Some(Renewal::ClientCredentials) => None,
        }
    }

    /// When a refresh of credentials obtained at `obtained` is due: `timing.before` ahead
    /// of the expiry, but never earlier than half-way through the token's life, so each
    /// expiry is renewed once; for a refresh token, also after `timing.idle_after`
    /// without one; for client credentials without an access token, at once.
    pub fn due_at(&self, obtained: DateTime<Utc>, timing: Timing) -> Option<DateTime<Utc>> {
        let renewal = self.renewal?;
        let ahead = self.expires_at.map(|expires_at| {
            let half_life = (expires_at - obtained).max(Duration::zero()) / 2;
            expires_at - timing.before.min(half_life)
        });
        match renewal {
            Renewal::ClientCredentials if !self.has_access_token => Some(obtained),
            Renewal::ClientCredentials => ahead,
            Renewal::RefreshToken => {
                let idle = obtained + timing.idle_after;
                Some(ahead.map_or(idle, |ahead| ahead.min(idle)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{
        domain::catalog::OAuthApp,
        ids::{EnvironmentId, ServiceId},
    };

    fn environment(kind: AuthenticationType, app: bool) -> Environment {
        Environment {
            id: EnvironmentId::generate(),
            service_id: ServiceId::generate(),
            title: "Own app".into(),
            authentication_type: kind,
            credentials_schema: json!({}),
            user_data_schema: json!({}),
            scopes: Vec::new(),
            oauth_app: app.then(|| OAuthApp {
                client_id: "c".into(),
                authorize_url: "https://id.example/authorize".into(),
                token_url: "https://id.example/token".into(),
            }),
            builtin: false,
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    const TIMING: Timing = Timing { before: Duration::minutes(5), idle_after: Duration::days(30) };

    #[test]
    fn the_expiry_comes_from_expires_at_or_expires_in_or_is_unknown() {
        let env = environment(AuthenticationType::Oauth2, true);
        let now = at("2030-01-01T12:00:00Z");
        let of = |credentials| Lifecycle::of(&env, &credentials, now).expires_at;
        assert_eq!(of(json!({"expires_at": "2030-01-01T13:00:00Z"})), Some(at("2030-01-01T13:00:00Z")));
        assert_eq!(of(json!({"expires_at": 1_893_502_800})), Some(at("2030-01-01T13:00:00Z")), "Unix seconds");
        assert_eq!(of(json!({"expires_at": 1_893_502_800_000_i64})), Some(at("2030-01-01T13:00:00Z")), "milliseconds");
        assert_eq!(of(json!({"expires_in": 3600})), Some(at("2030-01-01T13:00:00Z")));
        assert_eq!(of(json!({"expires_in": "3600"})), Some(at("2030-01-01T13:00:00Z")));
        assert_eq!(of(json!({"access_token": "x"})), None);
        assert_eq!(of(json!({"expires_in": -5})), None);
        assert_eq!(of(json!({"expires_in": "soon"})), None);
    }

    #[test]
    fn renewal_needs_a_refresh_token_and_a_token_url_or_a_client_id_and_secret() {
        let now = Utc::now();
        let oauth = environment(AuthenticationType::Oauth2, true);
        let builtin = environment(AuthenticationType::Oauth2, false);
        let client = environment(AuthenticationType::Oauth2clientCredentials, true);
        let with_refresh = json!({"access_token": "a", "refresh_token": "r"});
        assert_eq!(Lifecycle::of(&oauth, &with_refresh, now).renewal, Some(Renewal::RefreshToken));
        assert_eq!(Lifecycle::of(&builtin, &with_refresh, now).renewal, None, "no app, no token URL");
        assert_eq!(Lifecycle::of(&oauth, &json!({"access_token": "a"}), now).renewal, None);
        let pair = json!({"client_id": "c", "client_secret": "s"});
        assert_eq!(Lifecycle::of(&client, &pair, now).renewal, Some(Renewal::ClientCredentials));
        assert_eq!(Lifecycle::of(&client, &json!({"client_id": "c"}), now).renewal, None);
    }

    #[test]
    fn a_refresh_is_due_ahead_of_expiry_but_not_before_half_the_tokens_life() {
        let env = environment(AuthenticationType::Oauth2, true);
        let now = at("2030-01-01T12:00:00Z");
        let hour = Lifecycle::of(&env, &json!({"refresh_token": "r", "expires_in": 3600}), now);
        assert_eq!(hour.due_at(now, TIMING), Some(at("2030-01-01T12:55:00Z")));
        let short = Lifecycle::of(&env, &json!({"refresh_token": "r", "expires_in": 10}), now);
        assert_eq!(short.due_at(now, TIMING), Some(at("2030-01-01T12:00:05Z")), "half of a 10 s life");
        let unknown = Lifecycle::of(&env, &json!({"refresh_token": "r"}), now);
        assert_eq!(unknown.due_at(now, TIMING), Some(at("2030-01-31T12:00:00Z")), "an idle refresh token");
        let expired = Lifecycle::of(&env, &json!({"refresh_token": "r", "expires_at": "2029-12-31T00:00:00Z"}), now);
        assert_eq!(expired.due_at(now, TIMING), Some(at("2029-12-31T00:00:00Z")), "due at once");
        let none = Lifecycle::of(&env, &json!({"access_token": "a", "expires_in": 60}), now);
        assert_eq!(none.due_at(now, TIMING), None);
        assert_eq!(none.hard_expires_at(), Some(at("2030-01-01T12:01:00Z")), "no refresh: a hard expiry");
    }

    #[test]
    fn client_credentials_are_minted_when_there_is_no_token_and_have_no_hard_expiry() {
        let env = environment(AuthenticationType::Oauth2clientCredentials, true);
        let now = at("2030-01-01T12:00:00Z");
        let bare = Lifecycle::of(&env, &json!({"client_id": "c", "client_secret": "s"}), now);
        assert_eq!(bare.due_at(now, TIMING), Some(now));
        let minted = Lifecycle::of(
            &env,
            &json!({"client_id": "c", "client_secret": "s", "access_token": "a", "expires_in": 3600}),
            now,
        );
        assert_eq!(minted.due_at(now, TIMING), Some(at("2030-01-01T12:55:00Z")));
        assert_eq!(minted.hard_expires_at(), None);
    }

    #[test]
    fn the_refresh_tokens_expiry_is_hard_and_only_an_answer_moves_it() {
        let env = environment(AuthenticationType::Oauth2, true);
        let now = at("2030-01-01T12:00:00Z");
        let imported = Lifecycle::of(&env, &json!({"refresh_token": "r", "refresh_token_expires_in": 86400}), now);
        assert_eq!(imported.hard_expires_at(), Some(at("2030-01-02T12:00:00Z")));
        let answer = |refresh: Option<&str>, extras: Value| TokenSet {
            access_token: "a".to_owned().into(),
            token_type: "Bearer".into(),
            refresh_token: refresh.map(|token| token.to_owned().into()),
            expires_in: Some(60),
            scope: None,
            extras: crate::crypto::Sensitive::new(extras.as_object().cloned().unwrap_or_default()),
            received_at: at("2030-01-01T18:00:00Z"),
        };
        // The kept credentials still say `refresh_token_expires_in`; only the answer counts.
        let kept = json!({"refresh_token": "r", "refresh_token_expires_in": 86400});
        let before = imported.refresh_expires_at;
        let same = Lifecycle::after_refresh(&env, &kept, &answer(None, json!({})), before);
        assert_eq!(same.refresh_expires_at, before, "the old refresh token keeps its expiry");
        let rotated = Lifecycle::after_refresh(&env, &kept, &answer(Some("r2"), json!({})), before);
        assert_eq!(rotated.refresh_expires_at, None, "a new refresh token without an expiry");
        let stated = Lifecycle::after_refresh(
            &env,
            &kept,
            &answer(Some("r2"), json!({"refresh_token_expires_in": 3600})),
            before,
        );
        assert_eq!(stated.refresh_expires_at, Some(at("2030-01-01T19:00:00Z")));
    }
}

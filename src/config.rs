//! Runtime configuration. Values arrive as text (flags or `LATCHKEY_*` variables, read
//! by the CLI) and are validated here; an invalid value names its variable.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use secrecy::SecretString;

/// Raw values as given by flags or environment variables.
#[derive(Default)]
pub struct RawConfig {
    pub bind: Option<String>,
    pub data_dir: Option<String>,
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    pub encryption_key: Option<SecretString>,
    pub jwt_secret: Option<SecretString>,
    pub log: Option<String>,
    pub introspection: Option<String>,
    pub database_max_connections: Option<String>,
    pub rate_limit_per_second: Option<String>,
    pub rate_limit_burst: Option<String>,
    pub max_connections: Option<String>,
    pub header_timeout: Option<String>,
    pub outbound_allow_private: Option<String>,
    pub refresh_interval: Option<String>,
    pub refresh_before: Option<String>,
    pub refresh_idle_days: Option<String>,
    pub refresh_backoff: Option<String>,
    pub refresh_lease: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub webhook_retry_schedule: Option<String>,
    pub webhook_expiring_days: Option<String>,
}

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "latchkey-data";
pub const DEFAULT_LOG: &str = "info";
pub const DEFAULT_SQLITE_CONNECTIONS: u32 = 8;
pub const DEFAULT_POSTGRES_CONNECTIONS: u32 = 16;
const MAX_DATABASE_CONNECTIONS: u32 = 1000;
/// The public API's promise: 30 requests per second per token, bursts of 50.
pub const DEFAULT_RATE_LIMIT_PER_SECOND: u32 = 30;
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 50;
/// Well under the usual 1024 open files, leaving room for the database pool and files.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_REFRESH_INTERVAL_SECS: u64 = 60;
pub const DEFAULT_REFRESH_BEFORE_SECS: u64 = 300;
pub const DEFAULT_REFRESH_IDLE_DAYS: u64 = 30;
pub const DEFAULT_REFRESH_BACKOFF_SECS: u64 = 30;
pub const DEFAULT_REFRESH_LEASE_SECS: u64 = 60;
/// A lease must outlast the longest call to a token URL, with room to store the answer.
pub const MIN_REFRESH_LEASE_SECS: u64 = 20;
/// Bounds that keep the durations representable and sensible.
const MAX_REFRESH_SECS: u64 = 7 * 24 * 3600;
const MAX_DAYS: u64 = 3650;
pub const DEFAULT_WEBHOOK_EXPIRING_DAYS: u64 = 7;
const MAX_WEBHOOK_EXPIRING_DAYS: u64 = 365;

/// Validated configuration. Secret values stay wrapped; `Debug` never shows them.
pub struct Config {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    /// May hold a database password, so it is kept as a secret.
    pub database_url: SecretString,
    pub database_kind: DatabaseKind,
    /// The most database connections this process holds; requests beyond wait for one.
    pub database_max_connections: u32,
    pub public_url: String,
    pub encryption_key: Option<SecretString>,
    pub jwt_secret: Option<SecretString>,
    pub log: String,
    pub introspection: bool,
    /// `None` when rate limiting is off.
    pub rate_limit: Option<RateLimit>,
    pub connections: ConnectionLimits,
    /// Which addresses calls to token URLs and webhook endpoints may reach.
    pub outbound: crate::outbound::AddressPolicy,
    /// `Some` when latchkey serves HTTPS itself.
    pub tls: Option<crate::tls::Tls>,
    /// Retries of webhook deliveries, and how early expiries are warned of.
    pub webhooks: crate::workers::webhooks::WebhookSettings,
    /// When and how authentications are kept alive.
    pub refresh: RefreshConfig,
}

/// When and how authentications are kept alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshConfig {
    /// Between two passes of the background job; `None`: no background job (refreshes
    /// then happen only when a credential is read or a refresh is forced).
    pub interval: Option<Duration>,
    /// How long before its expiry an access token is renewed.
    pub before: Duration,
    /// A refresh token unused this long is used anyway.
    pub idle_after: Duration,
    /// The wait before the first retry after a transient failure; it doubles per attempt.
    pub backoff: Duration,
    /// How long one process's claim on a refresh lasts.
    pub lease: Duration,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        let days = |days: u64| Duration::from_secs(days * 24 * 3600);
        Self {
            interval: Some(Duration::from_secs(DEFAULT_REFRESH_INTERVAL_SECS)),
            before: Duration::from_secs(DEFAULT_REFRESH_BEFORE_SECS),
            idle_after: days(DEFAULT_REFRESH_IDLE_DAYS),
            backoff: Duration::from_secs(DEFAULT_REFRESH_BACKOFF_SECS),
            lease: Duration::from_secs(DEFAULT_REFRESH_LEASE_SECS),
        }
    }
}

/// Requests per second each caller may make, with the burst it may spend at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, counted from when the
    /// connection opens or its previous response was sent; an idle connection is closed then.
    pub header_timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            .field("database_kind", &self.database_kind)
            .field("database_max_connections", &self.database_max_connections)
            .field("public_url", &self.public_url)
            .field("encryption_key", &self.encryption_key.as_ref().map(|_| "[redacted]"))
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "[redacted]"))
            .field("log", &self.log)
            .field("introspection", &self.introspection)
            .field("rate_limit", &self.rate_limit)
            .field("connections", &self.connections)
            .field("outbound", &self.outbound)
            .field("refresh", &self.refresh)
            .field("tls", &self.tls)
            .field("webhooks", &self.webhooks)
            .finish_non_exhaustive()
    }
}

/// A configuration value that cannot be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {variable}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

fn invalid(variable: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError { variable, reason: reason.into() }
}

impl Config {
    pub fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        let refresh = refresh_config(&raw)?;
        let bind_text = raw.bind.unwrap_or_else(|| DEFAULT_BIND.to_owned());
        let bind: SocketAddr = bind_text
            .trim()
            .parse()
            .map_err(|_| invalid("LATCHKEY_BIND", format!("{bind_text:?} is not an address like 127.0.0.1:8080")))?;

        let data_dir = PathBuf::from(raw.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned()));
        if data_dir.as_os_str().is_empty() {
            return Err(invalid("LATCHKEY_DATA_DIR", "must not be empty"));
        }

        let database_url = match raw.database_url.filter(|url| !url.trim().is_empty()) {
            Some(url) => url.trim().to_owned(),
            None => format!("sqlite://{}?mode=rwc", data_dir.join("latchkey.db").display()),
        };
        let database_kind = if database_url.starts_with("sqlite:") {
            DatabaseKind::Sqlite
        } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            DatabaseKind::Postgres
        } else {
            return Err(invalid(
                "LATCHKEY_DATABASE_URL",
                "must start with sqlite: or postgres:// (the value is not shown: it may hold a password)",
            ));
        };

        let database_max_connections = match raw.database_max_connections.as_deref().map(str::trim) {
            None | Some("") => match database_kind {
                DatabaseKind::Sqlite => DEFAULT_SQLITE_CONNECTIONS,
                DatabaseKind::Postgres => DEFAULT_POSTGRES_CONNECTIONS,
            },
            Some(text) => {
                text.parse().ok().filter(|n| (1..=MAX_DATABASE_CONNECTIONS).contains(n)).ok_or_else(|| {
                    invalid(
                        "LATCHKEY_DATABASE_MAX_CONNECTIONS",
                        format!("{text:?} is not a whole number from 1 to {MAX_DATABASE_CONNECTIONS}"),
                    )
                })?
            }
        };

        let tls = crate::tls::Tls::from_files(raw.tls_cert.as_deref(), raw.tls_key.as_deref())?;
        let public_url = match raw.public_url {
            Some(url) => {
                let url = url.trim().trim_end_matches('/').to_owned();
                if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len() {
                    return Err(invalid("LATCHKEY_PUBLIC_URL", format!("{url:?} is not an http(s) URL")));
                }
                url
            }
            None if tls.is_some() => format!("https://{bind}"),
            None => format!("http://{bind}"),
        };

        let log = raw.log.unwrap_or_else(|| DEFAULT_LOG.to_owned());
        tracing_subscriber::EnvFilter::try_new(&log)
            .map_err(|err| invalid("LATCHKEY_LOG", format!("{log:?} is not a log filter: {err}")))?;

        let introspection = flag(raw.introspection, "LATCHKEY_INTROSPECTION", true)?;
        let outbound = if flag(raw.outbound_allow_private, "LATCHKEY_OUTBOUND_ALLOW_PRIVATE", false)? {
            crate::outbound::AddressPolicy::AllowPrivate
        } else {
            crate::outbound::AddressPolicy::PublicOnly
        };

        let per_second =
            number(raw.rate_limit_per_second, "LATCHKEY_RATE_LIMIT_PER_SECOND", DEFAULT_RATE_LIMIT_PER_SECOND)?;
        let burst = number(raw.rate_limit_burst, "LATCHKEY_RATE_LIMIT_BURST", DEFAULT_RATE_LIMIT_BURST)?;
        let rate_limit = match (per_second, burst) {
            (0, _) => None,
            (_, 0) => return Err(invalid("LATCHKEY_RATE_LIMIT_BURST", "must be at least 1 while rate limits are on")),
            (per_second, burst) => Some(RateLimit { per_second, burst }),
        };
        let max_connections = number(raw.max_connections, "LATCHKEY_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS)?;
        if max_connections == 0 {
            return Err(invalid("LATCHKEY_MAX_CONNECTIONS", "must be at least 1"));
        }
        let header_timeout = number(raw.header_timeout, "LATCHKEY_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT.as_secs())?;
        if header_timeout == 0 {
            return Err(invalid("LATCHKEY_HEADER_TIMEOUT", "must be at least 1 second"));
        }
        let connections = ConnectionLimits { max_connections, header_timeout: Duration::from_secs(header_timeout) };

        let schedule = match raw.webhook_retry_schedule {
            None => crate::domain::webhooks::RetrySchedule::default(),
            Some(text) => crate::domain::webhooks::RetrySchedule::parse(&text)
                .map_err(|reason| invalid("LATCHKEY_WEBHOOK_RETRY_SCHEDULE", reason))?,
        };
        let expiring_days =
            number(raw.webhook_expiring_days, "LATCHKEY_WEBHOOK_EXPIRING_DAYS", DEFAULT_WEBHOOK_EXPIRING_DAYS)?;
        if !(1..=MAX_WEBHOOK_EXPIRING_DAYS).contains(&expiring_days) {
            return Err(invalid(
                "LATCHKEY_WEBHOOK_EXPIRING_DAYS",
                format!("must be from 1 to {MAX_WEBHOOK_EXPIRING_DAYS} days"),
            ));
        }
        let webhooks = crate::workers::webhooks::WebhookSettings {
            schedule,
            expiring_within: Duration::from_secs(expiring_days * 24 * 3600),
        };

        Ok(Config {
            bind,
            data_dir,
            database_url: database_url.into(),
            database_kind,
            database_max_connections,
            public_url,
            encryption_key: raw.encryption_key,
            jwt_secret: raw.jwt_secret,
            log,
            introspection,
            rate_limit,
            connections,
            outbound,
            refresh,
            tls,
            webhooks,
        })
    }
}

/// A whole number within `range`, or `default` when absent.
fn bounded(
    raw: &Option<String>,
    variable: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let value = number(raw.clone(), variable, default)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(variable, format!("must be from {} to {}", range.start(), range.end())))
    }
}

fn refresh_config(raw: &RawConfig) -> Result<RefreshConfig, ConfigError> {
    let secs = Duration::from_secs;
    let days = |days: u64| Duration::from_secs(days * 24 * 3600);
    let interval = bounded(
        &raw.refresh_interval,
        "LATCHKEY_REFRESH_INTERVAL",
        DEFAULT_REFRESH_INTERVAL_SECS,
        0..=MAX_REFRESH_SECS,
    )?;
    Ok(RefreshConfig {
        interval: (interval > 0).then(|| secs(interval)),
        before: secs(bounded(
            &raw.refresh_before,
            "LATCHKEY_REFRESH_BEFORE",
            DEFAULT_REFRESH_BEFORE_SECS,
            0..=MAX_REFRESH_SECS,
        )?),
        idle_after: days(bounded(
            &raw.refresh_idle_days,
            "LATCHKEY_REFRESH_IDLE_DAYS",
            DEFAULT_REFRESH_IDLE_DAYS,
            1..=MAX_DAYS,
        )?),
        backoff: secs(bounded(
            &raw.refresh_backoff,
            "LATCHKEY_REFRESH_BACKOFF",
            DEFAULT_REFRESH_BACKOFF_SECS,
            1..=MAX_REFRESH_SECS,
        )?),
        lease: secs(bounded(
            &raw.refresh_lease,
            "LATCHKEY_REFRESH_LEASE",
            DEFAULT_REFRESH_LEASE_SECS,
            MIN_REFRESH_LEASE_SECS..=MAX_REFRESH_SECS,
        )?),
    })
}

/// A yes-or-no setting, or `default` when the value is absent.
fn flag(raw: Option<String>, variable: &'static str, default: bool) -> Result<bool, ConfigError> {
    match raw.as_deref().map(str::trim) {
        None => Ok(default),
        Some("true" | "1" | "on" | "yes") => Ok(true),
        Some("false" | "0" | "off" | "no") => Ok(false),
        Some(other) => Err(invalid(variable, format!("{other:?} is not true or false"))),
    }
}

/// A whole number, or `default` when the value is absent.
fn number<T: std::str::FromStr>(raw: Option<String>, variable: &'static str, default: T) -> Result<T, ConfigError> {
    match raw.as_deref().map(str::trim) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| invalid(variable, format!("{text:?} is not a whole number"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_locally_on_sqlite_in_the_data_dir() {
        let config = Config::from_raw(RawConfig::default()).unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database_kind, DatabaseKind::Sqlite);
        assert_eq!(config.public_url, "http://127.0.0.1:8080");
        assert!(config.introspection);
        assert_eq!(config.rate_limit, Some(RateLimit { per_second: 30, burst: 50 }));
        assert_eq!(config.connections.max_connections, 512);
    }

    #[test]
    fn with_tls_the_default_public_url_is_https_and_a_given_one_still_wins() {
        let dir = tempfile::tempdir().unwrap();
        let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, pair.cert.pem()).unwrap();
        std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
        let tls = || RawConfig {
            tls_cert: Some(cert.display().to_string()),
            tls_key: Some(key.display().to_string()),
            ..Default::default()
        };
        let config = Config::from_raw(tls()).unwrap();
        assert!(config.tls.is_some());
        assert_eq!(config.public_url, "https://127.0.0.1:8080");
        let behind_proxy = RawConfig { public_url: Some("https://keys.example.com".into()), ..tls() };
        assert_eq!(Config::from_raw(behind_proxy).unwrap().public_url, "https://keys.example.com");
        let half = RawConfig { tls_key: None, ..tls() };
        assert_eq!(Config::from_raw(half).unwrap_err().variable, "LATCHKEY_TLS_KEY");
    }

    #[test]
    fn a_rate_limit_of_zero_turns_rate_limiting_off() {
        let raw = RawConfig { rate_limit_per_second: Some("0".into()), ..Default::default() };
        assert_eq!(Config::from_raw(raw).unwrap().rate_limit, None);
    }

    #[test]
    fn invalid_values_name_their_variable() {
        let cases: Vec<(RawConfig, &str)> = vec![
            (RawConfig { bind: Some("nowhere".into()), ..Default::default() }, "LATCHKEY_BIND"),
            (RawConfig { database_url: Some("mysql://x".into()), ..Default::default() }, "LATCHKEY_DATABASE_URL"),
            (RawConfig { public_url: Some("ftp://x".into()), ..Default::default() }, "LATCHKEY_PUBLIC_URL"),
            (RawConfig { log: Some("[[[".into()), ..Default::default() }, "LATCHKEY_LOG"),
            (
                RawConfig { database_max_connections: Some("0".into()), ..Default::default() },
                "LATCHKEY_DATABASE_MAX_CONNECTIONS",
            ),
            (RawConfig { introspection: Some("maybe".into()), ..Default::default() }, "LATCHKEY_INTROSPECTION"),
            (
                RawConfig { rate_limit_per_second: Some("-1".into()), ..Default::default() },
                "LATCHKEY_RATE_LIMIT_PER_SECOND",
            ),
            (RawConfig { rate_limit_burst: Some("0".into()), ..Default::default() }, "LATCHKEY_RATE_LIMIT_BURST"),
            (RawConfig { max_connections: Some("0".into()), ..Default::default() }, "LATCHKEY_MAX_CONNECTIONS"),
            (RawConfig { header_timeout: Some("10s".into()), ..Default::default() }, "LATCHKEY_HEADER_TIMEOUT"),
            (RawConfig { refresh_interval: Some("1m".into()), ..Default::default() }, "LATCHKEY_REFRESH_INTERVAL"),
            (RawConfig { refresh_lease: Some("5".into()), ..Default::default() }, "LATCHKEY_REFRESH_LEASE"),
            (RawConfig { refresh_idle_days: Some("0".into()), ..Default::default() }, "LATCHKEY_REFRESH_IDLE_DAYS"),
            (RawConfig { refresh_backoff: Some("0".into()), ..Default::default() }, "LATCHKEY_REFRESH_BACKOFF"),
            (
                RawConfig { webhook_retry_schedule: Some("soon".into()), ..Default::default() },
                "LATCHKEY_WEBHOOK_RETRY_SCHEDULE",
            ),
            (
                RawConfig { webhook_expiring_days: Some("0".into()), ..Default::default() },
                "LATCHKEY_WEBHOOK_EXPIRING_DAYS",
            ),
        ];
        for (raw, variable) in cases {
            let err = Config::from_raw(raw).unwrap_err();
            assert_eq!(err.variable, variable);
            assert!(err.to_string().contains(variable));
        }
    }

    #[test]
    fn a_bad_database_url_is_not_echoed() {
        let raw = RawConfig { database_url: Some("mysql://root:hunter2@db".into()), ..Default::default() };
        let err = Config::from_raw(raw).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }
}

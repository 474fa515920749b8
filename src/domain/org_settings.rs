//! An organization's settings for its hosted pages: the brand the pages show (display
//! name, logo, accent colour) and the origins the pages may post window messages to.
//! The pages put these strings into HTML and into `postMessage` targets, so each is
//! checked here, once, to a narrow shape.

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, EntityTrait, QuerySelect, TransactionSession, TransactionTrait,
    sea_query::OnConflict,
};

use super::{audit, required_text};
use crate::{
    auth::{Caller, MasterScope},
    error::{Error, Result},
    ids::OrgId,
};
use entity::organization_settings;

pub const MAX_DISPLAY_NAME: usize = 100;
pub const MAX_LOGO_URL: usize = 2048;
pub const MAX_ALLOWED_ORIGINS: usize = 20;
pub const MAX_ORIGIN: usize = 255;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrgSettings {
    pub display_name: Option<String>,
    pub logo_url: Option<String>,
    pub accent_color: Option<String>,
    pub allowed_origins: Vec<String>,
}

impl OrgSettings {
    /// Whether a page of this organization may post a message to `origin`: exact match
    /// of the serialized origin, nothing else.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|allowed| allowed == origin)
    }
}

/// A change: `None` keeps a field, `Some(None)` clears it; `allowed_origins` replaces
/// the whole list.
#[derive(Clone, Debug, Default)]
pub struct SettingsPatch {
    pub display_name: Option<Option<String>>,
    pub logo_url: Option<Option<String>>,
    pub accent_color: Option<Option<String>>,
    pub allowed_origins: Option<Vec<String>>,
}

fn from_row(row: organization_settings::Model) -> Result<OrgSettings> {
    Ok(OrgSettings {
        display_name: row.display_name,
        logo_url: row.logo_url,
        accent_color: row.accent_color,
        allowed_origins: serde_json::from_str(&row.allowed_origins)
            .map_err(|_| Error::Internal(anyhow::anyhow!("stored allowed origins are not a JSON list")))?,
    })
}

/// The organization's settings; an organization that never set any has the defaults.
pub async fn get(conn: &impl ConnectionTrait, caller: Caller<'_>) -> Result<OrgSettings> {
    of_org(conn, caller.org_id()).await
}

/// The settings of the organization a hosted page was opened for (the page's session
/// has already established the organization).
pub async fn of_org(conn: &impl ConnectionTrait, org_id: OrgId) -> Result<OrgSettings> {
    match organization_settings::Entity::find_by_id(org_id.0).one(conn).await? {
        Some(row) => from_row(row),
        None => Ok(OrgSettings::default()),
    }
}

/// Applies `patch` in one transaction: every field is checked before anything is written,
/// and concurrent updates of different fields all survive (the row is locked while read).
pub async fn update(conn: &impl TransactionTrait, scope: &MasterScope, patch: SettingsPatch) -> Result<OrgSettings> {
    let display_name = patch.display_name.map(|v| v.map(|v| display_name(&v)).transpose()).transpose()?;
    let logo_url = patch.logo_url.map(|v| v.map(|v| logo_url(&v)).transpose()).transpose()?;
    let accent_color = patch.accent_color.map(|v| v.map(|v| accent_color(&v)).transpose()).transpose()?;
    let allowed_origins = patch.allowed_origins.map(|v| origins(&v)).transpose()?;

    let org_id = scope.org_id();
    let txn = crate::db::write(conn).await?;
    let now = Utc::now();
    // Make the row first, so two first updates meet on one row instead of racing inserts.
    organization_settings::Entity::insert(organization_settings::ActiveModel {
        org_id: Set(org_id.0),
        display_name: Set(None),
        logo_url: Set(None),
        accent_color: Set(None),
        allowed_origins: Set("[]".to_owned()),
        updated_at: Set(now),
    })
    .on_conflict(OnConflict::column(organization_settings::Column::OrgId).do_nothing().to_owned())
    .exec_without_returning(&txn)
    .await?;
    let row = organization_settings::Entity::find_by_id(org_id.0)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or(Error::NotFound("organization"))?;
    let mut settings = from_row(row)?;
    if let Some(value) = display_name {
        settings.display_name = value;
    }
    if let Some(value) = logo_url {
        settings.logo_url = value;
    }
    if let Some(value) = accent_color {
        settings.accent_color = value;
    }
    if let Some(value) = allowed_origins {
        settings.allowed_origins = value;
    }
    let origins_json = serde_json::to_string(&settings.allowed_origins)
        .map_err(|_| Error::Internal(anyhow::anyhow!("cannot encode allowed origins")))?;
    organization_settings::Entity::update(organization_settings::ActiveModel {
        org_id: Set(org_id.0),
        display_name: Set(settings.display_name.clone()),
        logo_url: Set(settings.logo_url.clone()),
        accent_color: Set(settings.accent_color.clone()),
        allowed_origins: Set(origins_json),
        updated_at: Set(now),
    })
    .exec(&txn)
    .await?;
    audit::record(&txn, org_id, scope.into(), "organization.settings_updated", Some(org_id.0)).await?;
    txn.commit().await?;
    Ok(settings)
}

fn display_name(value: &str) -> Result<String> {
    let value = required_text("displayName", value, MAX_DISPLAY_NAME)?;
    if value.chars().any(char::is_control) {
        return Err(Error::bad_input("displayName must not contain control characters"));
    }
    Ok(value)
}

fn logo_url(value: &str) -> Result<String> {
    let invalid = || Error::bad_input("logoUrl must be an absolute https URL without credentials");
    if value.len() > MAX_LOGO_URL {
        return Err(Error::bad_input(format!("logoUrl must be at most {MAX_LOGO_URL} characters")));
    }
    let url = url::Url::parse(value.trim()).map_err(|_| invalid())?;
    if url.scheme() != "https" || url.host().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid());
    }
    Ok(url.to_string())
}

fn accent_color(value: &str) -> Result<String> {
    let value = value.trim();
    let hex = value.strip_prefix('#').filter(|hex| hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    match hex {
        Some(hex) => Ok(format!("#{}", hex.to_ascii_lowercase())),
        None => Err(Error::bad_input("accentColor must be a colour of the form #rrggbb")),
    }
}

fn origins(values: &[String]) -> Result<Vec<String>> {
    if values.len() > MAX_ALLOWED_ORIGINS {
        return Err(Error::bad_input(format!("allowedOrigins holds at most {MAX_ALLOWED_ORIGINS} origins")));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        let origin = origin(value)?;
        if !out.contains(&origin) {
            out.push(origin);
        }
    }
    Ok(out)
}

/// An exact web origin, `scheme://host[:port]`, in its serialized form (so it compares
/// equal to a browser's `event.origin`/`targetOrigin`). A path, query, fragment,
/// credentials or a wildcard is refused rather than dropped: the partner meant something
/// else and should know.
fn origin(value: &str) -> Result<String> {
    let invalid = || {
        Error::bad_input(format!(
            "allowedOrigins: {:?} is not an origin of the form scheme://host[:port]",
            value.chars().take(MAX_ORIGIN).collect::<String>()
        ))
    };
    let trimmed = value.trim();
    if trimmed.len() > MAX_ORIGIN || trimmed.contains('*') {
        return Err(invalid());
    }
    let url = url::Url::parse(trimmed).map_err(|_| invalid())?;
    let plain = url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && matches!(url.scheme(), "http" | "https")
        && url.host().is_some();
    if !plain {
        return Err(invalid());
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_kept_in_its_serialized_form() {
        assert_eq!(origin("https://App.Example.com").unwrap(), "https://app.example.com");
        assert_eq!(origin("http://localhost:3000/").unwrap(), "http://localhost:3000");
        assert_eq!(origin("https://a.example:443").unwrap(), "https://a.example");
    }

    #[test]
    fn anything_but_a_bare_origin_is_refused() {
        for bad in [
            "https://a.example/path",
            "https://a.example?x=1",
            "https://a.example#f",
            "https://user@a.example",
            "https://*.example.com",
            "ftp://a.example",
            "javascript:alert(1)",
            "null",
            "a.example",
            "https://a.example//",
        ] {
            assert!(origin(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_colour_is_hex_and_lower_case() {
        assert_eq!(accent_color("#A0b1C2").unwrap(), "#a0b1c2");
        for bad in ["a0b1c2", "#abc", "#gggggg", "#a0b1c2ff", "red", "#a0b1c\u{e9}"] {
            assert!(accent_color(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_logo_must_be_https() {
        assert!(logo_url("https://cdn.example/logo.png").is_ok());
        for bad in [
            "http://cdn.example/logo.png",
            "data:image/png;base64,AAAA",
            "https://u:p@cdn.example/l.png",
            "//cdn.example/l",
        ] {
            assert!(logo_url(bad).is_err(), "{bad} was accepted");
        }
    }
}

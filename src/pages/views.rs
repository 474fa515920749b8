//! The pages' HTML. maud escapes every interpolated string; nothing here uses
//! `PreEscaped`, so no user-supplied text can become markup.

use maud::{DOCTYPE, Markup, html};

use crate::domain::{catalog, org_settings::OrgSettings, orgs::Organization};

/// The partner's brand, as its settings give it.
pub struct Brand {
    pub name: String,
    pub logo_url: Option<String>,
    /// `rrggbb`, without the `#`.
    pub accent: Option<String>,
}

impl Brand {
    pub fn of(org: &Organization, settings: OrgSettings) -> Self {
        Self {
            name: settings.display_name.unwrap_or_else(|| org.name.clone()),
            logo_url: settings.logo_url,
            accent: settings.accent_color.map(|colour| colour.trim_start_matches('#').to_owned()),
        }
    }
}

fn layout(brand: Option<&Brand>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) }
                link rel="stylesheet" href="/external/assets/page.css";
                @if let Some(accent) = brand.and_then(|brand| brand.accent.as_deref()) {
                    link rel="stylesheet" href={ "/external/assets/accent/" (accent) ".css" };
                }
            }
            body {
                @if let Some(brand) = brand {
                    header class="brand" {
                        @if let Some(logo) = &brand.logo_url {
                            img src=(logo) alt="" class="logo";
                        }
                        span class="brand-name" { (brand.name) }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn error(title: &str, message: &str) -> Markup {
    layout(
        None,
        title,
        html! {
            div role="alert" {
                h1 { (title) }
                p { (message) }
            }
        },
    )
}

pub fn create_authentication(brand: &Brand, service: &catalog::Service, environment: &catalog::Environment) -> Markup {
    let title = format!("Connect {}", service.title);
    layout(
        Some(brand),
        &title,
        html! {
            h1 { (title) }
            p class="environment" { (environment.title) }
        },
    )
}

//! The pages' HTML. maud escapes every interpolated string; nothing here uses
//! `PreEscaped`, so no user-supplied text can become markup.

use std::collections::BTreeMap;

use maud::{DOCTYPE, Markup, html};

use super::forms::{Field, Kind};
use crate::domain::{catalog, org_settings::OrgSettings, orgs::Organization};

/// The partner's brand, as its settings give it.
pub struct Brand {
    pub name: String,
    pub logo_url: Option<String>,
    /// `rrggbb`, without the `#`.
    pub accent: Option<String>,
    /// Where the pages may post their window messages.
    pub origins: Vec<String>,
}

impl Brand {
    pub fn of(org: &Organization, settings: OrgSettings) -> Self {
        Self {
            name: settings.display_name.unwrap_or_else(|| org.name.clone()),
            logo_url: settings.logo_url,
            accent: settings.accent_color.map(|colour| colour.trim_start_matches('#').to_owned()),
            origins: settings.allowed_origins,
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
                script src="/external/assets/popup.js" {}
            }
        }
    }
}

pub fn error(brand: Option<&Brand>, title: &str, message: &str) -> Markup {
    layout(
        brand,
        title,
        html! {
            div role="alert" {
                h1 { (title) }
                p { (message) }
            }
            @if let Some(brand) = brand {
                (popup_data(brand, Some(("tray.authPopup.error", "data-error", message))))
            }
        },
    )
}

/// What the auth dialog shows: the environment's fields, and after a refused post, the
/// values sent (never a secret) and the errors.
pub struct AuthForm<'a> {
    pub brand: &'a Brand,
    pub service: &'a catalog::Service,
    pub environment: &'a catalog::Environment,
    pub fields: &'a [Field],
    pub csrf: &'a str,
    pub name: &'a str,
    pub values: &'a BTreeMap<String, String>,
    pub scopes: &'a [String],
    pub extra_scopes: &'a str,
    /// By control name.
    pub errors: &'a BTreeMap<String, String>,
    /// What no single field is to blame for.
    pub form_error: Option<&'a str>,
}

/// The element the popup script reads its messages and target origins from.
fn popup_data(brand: &Brand, message: Option<(&str, &str, &str)>) -> Markup {
    let origins = serde_json::to_string(&brand.origins).unwrap_or_else(|_| "[]".to_owned());
    html! {
        @match message {
            Some((kind, attribute, value)) => {
                @if attribute == "data-auth-id" {
                    div id="lk-popup" hidden data-origins=(origins) data-message=(kind) data-auth-id=(value) {}
                } @else {
                    div id="lk-popup" hidden data-origins=(origins) data-message=(kind) data-error=(value) {}
                }
            }
            None => { div id="lk-popup" hidden data-origins=(origins) {} }
        }
    }
}

pub(super) fn field(field: &Field, value: &str, error: Option<&String>) -> Markup {
    let name = field.name();
    let id = format!("f-{name}");
    let description_id = format!("d-{name}");
    let error_id = format!("e-{name}");
    let described_by = match (&field.description, error) {
        (Some(_), Some(_)) => Some(format!("{error_id} {description_id}")),
        (Some(_), None) => Some(description_id.clone()),
        (None, Some(_)) => Some(error_id.clone()),
        (None, None) => None,
    };
    let invalid = error.map(|_| "true");
    html! {
        div class="field" {
            @if field.kind == Kind::Boolean {
                label for=(id) {
                    input type="checkbox" id=(id) name=(name) checked[!value.is_empty()] aria-describedby=[described_by.as_deref()] aria-invalid=[invalid];
                    (field.label)
                }
            } @else {
                label for=(id) {
                    (field.label)
                    @if field.required { " " span class="required" aria-hidden="true" { "*" } span class="visually-hidden" { "(required)" } }
                }
                @match &field.kind {
                    Kind::Select(options) => {
                        select id=(id) name=(name) required[field.required] aria-describedby=[described_by.as_deref()] aria-invalid=[invalid] {
                            @if !field.required { option value="" { "—" } }
                            @for option in options {
                                option value=(option) selected[option == value] { (option) }
                            }
                        }
                    }
                    Kind::Json => {
                        textarea id=(id) name=(name) rows="4" required[field.required] aria-describedby=[described_by.as_deref()] aria-invalid=[invalid] { (value) }
                    }
                    Kind::Number { integer } => {
                        input type="number" step=(if *integer { "1" } else { "any" }) id=(id) name=(name) value=(value) required[field.required] aria-describedby=[described_by.as_deref()] aria-invalid=[invalid];
                    }
                    Kind::Input(input_type) => {
                        input type=(input_type) id=(id) name=(name) value=(value) required[field.required]
                            autocomplete=(if field.secret() { "new-password" } else { "off" })
                            aria-describedby=[described_by.as_deref()] aria-invalid=[invalid];
                    }
                    Kind::Boolean => {}
                }
            }
            @if let Some(error) = error {
                p id=(error_id) class="field-error" { (error) }
            }
            @if let Some(description) = &field.description {
                p id=(description_id) class="hint" { (description) }
            }
        }
    }
}

/// A dialog connecting `service`: its heading, `body`, and the element the popup script
/// reads its origins from.
pub(super) fn dialog(
    brand: &Brand,
    service: &catalog::Service,
    environment: &catalog::Environment,
    body: Markup,
) -> Markup {
    let title = format!("Connect {}", service.title);
    layout(
        Some(brand),
        &title,
        html! {
            h1 { (title) }
            p class="environment" { (environment.title) }
            (body)
            (popup_data(brand, None))
        },
    )
}

/// What was wrong with a refused post, where the popup script takes the focus.
pub(super) fn error_summary(form_error: Option<&str>, field_errors: bool) -> Markup {
    html! {
        @if form_error.is_some() || field_errors {
            div id="error-summary" class="error-summary" role="alert" tabindex="-1" {
                @if field_errors { p { "Please correct the fields marked below." } }
                @if let Some(error) = form_error { p { (error) } }
            }
        }
    }
}

pub fn create_authentication(form: &AuthForm<'_>) -> Markup {
    let empty = String::new();
    dialog(
        form.brand,
        form.service,
        form.environment,
        html! {
            (error_summary(form.form_error, !form.errors.is_empty()))
            form method="post" novalidate {
                input type="hidden" name="_csrf" value=(form.csrf);
                div class="field" {
                    label for="f-name" { "Name of this connection" }
                    input type="text" id="f-name" name="name" value=(form.name) maxlength="256" autocomplete="off";
                }
                @for each in form.fields {
                    (field(each, if each.secret() { &empty } else { form.values.get(&each.name()).unwrap_or(&empty) }, form.errors.get(&each.name())))
                }
                @if !form.environment.scopes.is_empty() {
                    fieldset {
                        legend { "Permissions" }
                        @for (n, scope) in form.environment.scopes.iter().enumerate() {
                            @let id = format!("scope-{n}");
                            label for=(id) class="scope" {
                                input type="checkbox" id=(id) name="scopes" value=(scope.scope) checked[form.scopes.contains(&scope.scope)];
                                (scope.scope)
                                @if !scope.description.is_empty() { span class="hint" { " — " (scope.description) } }
                            }
                        }
                    }
                }
                div class="field" {
                    label for="f-extra-scopes" { "Extra permissions" }
                    input type="text" id="f-extra-scopes" name="extraScopes" value=(form.extra_scopes) aria-describedby="d-extra-scopes" autocomplete="off";
                    p id="d-extra-scopes" class="hint" { "Further permissions to request, separated by spaces." }
                }
                div class="actions" {
                    button type="submit" { "Connect" }
                    button type="button" id="cancel" class="secondary" { "Cancel" }
                }
            }
        },
    )
}

/// After a connection is saved: tells the opener, then closes (by script).
pub fn finished(brand: &Brand, service: &catalog::Service, authentication_id: &str) -> Markup {
    let title = format!("{} is connected", service.title);
    layout(
        Some(brand),
        &title,
        html! {
            div role="status" {
                h1 { (title) }
                p { "You can close this window." }
            }
            (popup_data(brand, Some(("tray.authpopup.finish", "data-auth-id", authentication_id))))
        },
    )
}

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
                // Else the browser asks for /favicon.ico, outside the pages.
                link rel="icon" href="/external/assets/icon.svg" type="image/svg+xml";
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

pub fn error(brand: Option<&Brand>, message_type: &str, title: &str, message: &str) -> Markup {
    layout(
        brand,
        title,
        html! {
            div role="alert" {
                h1 { (title) }
                p { (message) }
            }
            @if let Some(brand) = brand {
                (popup_data(brand, &Popup { message: Some((message_type, message)), cancel: None }))
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
    /// Editing a stored authentication: a secret left blank keeps its value (but in a
    /// client-credentials form, which checks what it is given at once).
    pub editing: bool,
    /// The client id and secret of the client-credentials grant, checked with the
    /// service before anything is saved.
    pub client_credentials: bool,
    /// Opened from the config wizard: where Cancel goes back to, and the form's own key.
    pub wizard: Option<(&'a str, &'a str)>,
}

/// What the popup script tells the opener.
#[derive(Default)]
pub struct Popup<'a> {
    /// Sent as the page loads: its type and value.
    pub message: Option<(&'a str, &'a str)>,
    /// Sent by the Cancel button, which then closes the window: its type and value.
    pub cancel: Option<(&'a str, &'a str)>,
}

/// The element the popup script reads its messages and target origins from.
fn popup_data(brand: &Brand, popup: &Popup<'_>) -> Markup {
    let origins = serde_json::to_string(&brand.origins).unwrap_or_else(|_| "[]".to_owned());
    html! {
        div id="lk-popup" hidden data-origins=(origins)
            data-message=[popup.message.map(|m| m.0)] data-value=[popup.message.map(|m| m.1)]
            data-cancel=[popup.cancel.map(|c| c.0)] data-cancel-value=[popup.cancel.map(|c| c.1)] {}
    }
}

/// One labelled form control, with its error and description. With `blank_keeps`, a
/// secret shows empty and says that left blank it keeps its stored value.
pub fn field(field: &Field, value: &str, error: Option<&String>, blank_keeps: bool) -> Markup {
    let name = field.name();
    let id = format!("f-{name}");
    let description_id = format!("d-{name}");
    let error_id = format!("e-{name}");
    let keep_id = format!("k-{name}");
    let keeps = blank_keeps && field.secret();
    let described_by: Vec<&str> = [
        error.map(|_| error_id.as_str()),
        keeps.then_some(keep_id.as_str()),
        field.description.as_ref().map(|_| description_id.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let described_by = (!described_by.is_empty()).then(|| described_by.join(" "));
    let invalid = error.map(|_| "true");
    let required = field.required && !keeps;
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
                    @if required { " " span class="required" aria-hidden="true" { "*" } span class="visually-hidden" { "(required)" } }
                }
                @match &field.kind {
                    Kind::Select(options) => {
                        select id=(id) name=(name) required[required] aria-describedby=[described_by.as_deref()] aria-invalid=[invalid] {
                            @if !required { option value="" { "—" } }
                            @for option in options {
                                option value=(option) selected[option == value] { (option) }
                            }
                        }
                    }
                    Kind::Json => {
                        textarea id=(id) name=(name) rows="4" required[required] aria-describedby=[described_by.as_deref()] aria-invalid=[invalid] { (value) }
                    }
                    Kind::Number { integer } => {
                        input type="number" step=(if *integer { "1" } else { "any" }) id=(id) name=(name) value=(value) required[required] aria-describedby=[described_by.as_deref()] aria-invalid=[invalid];
                    }
                    Kind::Input(input_type) => {
                        input type=(input_type) id=(id) name=(name) value=(value) required[required]
                            autocomplete=(if field.secret() { "new-password" } else { "off" })
                            aria-describedby=[described_by.as_deref()] aria-invalid=[invalid];
                    }
                    Kind::Boolean => {}
                }
            }
            @if let Some(error) = error {
                p id=(error_id) class="field-error" { (error) }
            }
            @if keeps {
                p id=(keep_id) class="hint" { "Stored and not shown. Leave blank to keep it." }
            }
            @if let Some(description) = &field.description {
                p id=(description_id) class="hint" { (description) }
            }
        }
    }
}

/// The summary at the top of a refused form, focused by the script.
pub(super) fn error_summary(errors: &BTreeMap<String, String>, form_error: Option<&str>) -> Markup {
    html! {
        @if form_error.is_some() || !errors.is_empty() {
            div id="error-summary" class="error-summary" role="alert" tabindex="-1" {
                p { "Please correct the fields marked below." }
                @if let Some(error) = form_error { p { (error) } }
            }
        }
    }
}

pub fn auth_form(form: &AuthForm<'_>) -> Markup {
    let empty = String::new();
    let back = form.wizard.map(|(back, _)| back);
    let blank_keeps = form.editing && !form.client_credentials;
    dialog(
        form.brand,
        &dialog_title(form.service, form.editing),
        form.environment,
        html! {
            (error_summary(form.errors, form.form_error))
            @if form.client_credentials {
                p { (form.service.title) " is checked with these at once: nothing is saved unless it gives a token." }
            }
            form method="post" novalidate {
                input type="hidden" name="_csrf" value=(form.csrf);
                @if let Some((_, key)) = form.wizard {
                    input type="hidden" name="_form" value=(key);
                }
                div class="field" {
                    label for="f-name" { "Name of this connection" }
                    input type="text" id="f-name" name="name" value=(form.name) maxlength="256" autocomplete="off";
                }
                @for each in form.fields {
                    (field(each, if each.secret() { &empty } else { form.values.get(&each.name()).unwrap_or(&empty) }, form.errors.get(&each.name()), blank_keeps))
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
                    button type="submit" { (if form.editing { "Save" } else { "Connect" }) }
                    (back_or_cancel(back, "Cancel"))
                }
            }
        },
        &cancel_popup(back, None),
    )
}

fn dialog_title(service: &catalog::Service, editing: bool) -> String {
    if editing { format!("Update your {} connection", service.title) } else { format!("Connect {}", service.title) }
}

/// In the config wizard, a link back to its step; else a button that closes the window.
fn back_or_cancel(back: Option<&str>, cancel: &str) -> Markup {
    html! {
        @match back {
            Some(back) => a class="button secondary" href=(back) { "Back" },
            None => button type="button" id="cancel" class="secondary" { (cancel) },
        }
    }
}

/// What an auth dialog tells the opener: `message` as it loads, and on Cancel
/// `tray.authpopup.close`. In the config wizard, nothing: the wizard speaks for itself.
fn cancel_popup<'a>(back: Option<&str>, message: Option<(&'a str, &'a str)>) -> Popup<'a> {
    match back {
        Some(_) => Popup::default(),
        None => Popup { message, cancel: Some(("tray.authpopup.close", "")) },
    }
}

/// A dialog about one service environment: its heading, the environment's title, `body`,
/// and what the popup script tells the opener.
fn dialog(brand: &Brand, title: &str, environment: &catalog::Environment, body: Markup, popup: &Popup<'_>) -> Markup {
    layout(
        Some(brand),
        title,
        html! {
            h1 { (title) }
            p class="environment" { (environment.title) }
            (body)
            (popup_data(brand, popup))
        },
    )
}

/// The dialog of an OAuth 2.0 environment: a link that starts the sign-in at the service,
/// or, where the organization has not set up its OAuth app, a plain word saying so.
pub struct Connect<'a> {
    pub brand: &'a Brand,
    pub service: &'a catalog::Service,
    pub environment: &'a catalog::Environment,
    /// The permissions the sign-in asks for.
    pub scopes: &'a [String],
    /// latchkey's own link that starts the sign-in (it carries the session's CSRF token,
    /// never a secret of the provider's); `None` where the environment has no OAuth app.
    pub start_url: Option<&'a str>,
    /// Reconnecting a stored authentication: its tokens are replaced.
    pub editing: bool,
    /// Opened from the config wizard: where Back goes.
    pub back: Option<&'a str>,
}

/// A link, not a form: the provider's page is reached by a plain navigation, which
/// `form-action 'self'` does not govern.
pub fn connect(connect: &Connect<'_>) -> Markup {
    let service = &connect.service.title;
    let brand = &connect.brand.name;
    let Some(start_url) = connect.start_url else {
        let missing = match connect.environment.authentication_type {
            catalog::AuthenticationType::Oauth2clientCredentials => "the token URL",
            _ => "its OAuth app",
        };
        let message = format!(
            "{brand} has not set up {missing} for {service} yet, so it cannot be connected here. Please let {brand} know."
        );
        return dialog(
            connect.brand,
            &dialog_title(connect.service, connect.editing),
            connect.environment,
            html! {
                div role="alert" { p { (message) } }
                div class="actions" { (back_or_cancel(connect.back, "Close")) }
            },
            &cancel_popup(connect.back, Some(("tray.authPopup.error", &message))),
        );
    };
    let title =
        if connect.editing { format!("Reconnect your {service} connection") } else { format!("Connect {service}") };
    dialog(
        connect.brand,
        &title,
        connect.environment,
        html! {
            p {
                "You will sign in to " (service) " and allow access for " (brand)
                ". Then this window comes back here"
                (if connect.back.is_some() { "." } else { " and closes." })
            }
            @if connect.editing {
                p { "The connection keeps its name; its tokens are replaced." }
            }
            @if !connect.scopes.is_empty() {
                h2 id="permissions" { "Permissions requested" }
                ul aria-labelledby="permissions" {
                    @for scope in connect.scopes {
                        li {
                            code { (scope) }
                            @if let Some(known) = connect.environment.scopes.iter().find(|known| &known.scope == scope).filter(|known| !known.description.is_empty()) {
                                span class="hint" { " — " (known.description) }
                            }
                        }
                    }
                }
            }
            div class="actions" {
                a class="button" href=(start_url) { "Connect to " (service) }
                (back_or_cancel(connect.back, "Cancel"))
            }
        },
        &cancel_popup(connect.back, None),
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
            (popup_data(brand, &Popup { message: Some(("tray.authpopup.finish", authentication_id)), cancel: None }))
        },
    )
}

// ---------------------------------------------------------------------------------------
// The config wizard

/// What every step of the wizard shows.
pub struct WizardStep<'a> {
    pub brand: &'a Brand,
    pub title: &'a str,
    pub instance_id: &'a str,
    pub csrf: &'a str,
    /// 0-based, and how many there are.
    pub step: usize,
    pub steps: usize,
    pub errors: &'a BTreeMap<String, String>,
    pub form_error: Option<&'a str>,
}

/// One connection the end user may pick for an auth slot.
pub struct Choice<'a> {
    pub id: String,
    pub name: &'a str,
    pub environment: &'a str,
}

/// A step for one auth slot: pick a connection, or make one.
pub struct AuthStep<'a> {
    pub slot_title: &'a str,
    pub service: &'a catalog::Service,
    pub control: &'a str,
    pub required: bool,
    pub choices: Vec<Choice<'a>>,
    pub picked: &'a str,
    pub create_url: &'a str,
}

fn wizard_layout(step: &WizardStep<'_>, heading: &str, body: Markup, finish: bool) -> Markup {
    let cancel = Popup { message: None, cancel: Some(("tray.configPopup.cancel", step.instance_id)) };
    layout(
        Some(step.brand),
        step.title,
        html! {
            p class="environment" { (step.title) " · Step " (step.step + 1) " of " (step.steps) }
            h1 { (heading) }
            (error_summary(step.errors, step.form_error))
            form method="post" novalidate id="wizard" data-finish=[finish.then_some("true")] {
                input type="hidden" name="_csrf" value=(step.csrf);
                (body)
                p id="wizard-status" class="hint" role="status" aria-live="polite" {}
                div class="actions" {
                    button type="submit" name="_action" value=(if finish { "finish" } else { "next" }) id="next" {
                        (if finish { "Finish" } else { "Next" })
                    }
                    @if step.step > 0 {
                        button type="submit" name="_action" value="back" class="secondary" formnovalidate { "Back" }
                    }
                    button type="button" id="cancel" class="secondary" { "Cancel" }
                }
            }
            (popup_data(step.brand, &cancel))
        },
    )
}

pub fn wizard_auth_step(step: &WizardStep<'_>, auth: &AuthStep<'_>) -> Markup {
    let error = step.errors.get(auth.control);
    let error_id = format!("e-{}", auth.control);
    let body = html! {
        fieldset aria-describedby=[error.map(|_| error_id.as_str())] {
            legend { "Choose your " (auth.service.title) " connection" }
            @if auth.choices.is_empty() {
                p class="hint" { "You have no " (auth.service.title) " connection yet." }
            }
            @for (n, choice) in auth.choices.iter().enumerate() {
                @let id = format!("pick-{n}");
                label for=(id) class="scope" {
                    input type="radio" id=(id) name=(auth.control) value=(choice.id) checked[choice.id == auth.picked];
                    (choice.name)
                    span class="hint" { " — " (choice.environment) }
                }
            }
            @if !auth.required && !auth.choices.is_empty() {
                label for="pick-none" class="scope" {
                    input type="radio" id="pick-none" name=(auth.control) value="" checked[auth.picked.is_empty()];
                    "None"
                }
            }
            @if let Some(error) = error {
                p id=(error_id) class="field-error" { (error) }
            }
        }
        p { a href=(auth.create_url) { "Create a new " (auth.service.title) " connection" } }
    };
    wizard_layout(step, auth.slot_title, body, false)
}

/// The last step: the visible config slots, then Finish.
pub fn wizard_settings(step: &WizardStep<'_>, fields: &[Field], values: &BTreeMap<String, String>) -> Markup {
    let empty = String::new();
    let body = html! {
        @if fields.is_empty() {
            p { "Everything is set. Finish to save it." }
        }
        @for each in fields {
            (field(each, values.get(&each.name()).unwrap_or(&empty), step.errors.get(&each.name()), false))
        }
    };
    wizard_layout(step, "Settings", body, true)
}

/// After the wizard saved: tells the opener, then closes (by script).
pub fn wizard_finished(brand: &Brand, title: &str, instance_id: &str) -> Markup {
    layout(
        Some(brand),
        title,
        html! {
            div role="status" {
                h1 { (title) " is set up" }
                p { "You can close this window." }
            }
            (popup_data(brand, &Popup { message: Some(("tray.configPopup.finish", instance_id)), cancel: None }))
        },
    )
}

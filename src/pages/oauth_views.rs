//! The auth dialog's pages for OAuth 2.0 environments: the "Connect to …" step of the
//! authorization code flow, and the client id and secret form of the client-credentials
//! grant. maud escapes every interpolated string.

use std::collections::BTreeMap;

use maud::{Markup, html};

use super::{
    forms::Field,
    views::{Brand, Popup, dialog, error_summary, field},
};
use crate::domain::catalog;

/// What a dialog connects.
pub struct Subject<'a> {
    pub brand: &'a Brand,
    pub service: &'a catalog::Service,
    pub environment: &'a catalog::Environment,
}

impl Subject<'_> {
    fn dialog(&self, body: Markup) -> Markup {
        let title = format!("Connect {}", self.service.title);
        let cancel = Popup { message: None, cancel: Some(("tray.authpopup.close", "")) };
        dialog(self.brand, &title, self.environment, body, &cancel)
    }
}

/// The permissions requested, with the environment's descriptions where it has them.
fn permissions(environment: &catalog::Environment, scopes: &[String]) -> Markup {
    html! {
        @if !scopes.is_empty() {
            h2 id="permissions" { "Permissions requested" }
            ul aria-labelledby="permissions" {
                @for scope in scopes {
                    li {
                        code { (scope) }
                        @if let Some(known) = environment.scopes.iter().find(|known| &known.scope == scope).filter(|known| !known.description.is_empty()) {
                            span class="hint" { " — " (known.description) }
                        }
                    }
                }
            }
        }
    }
}

/// The authorization code flow's first step. A link, not a form: the provider's page is
/// reached by a plain navigation, which `form-action 'self'` does not govern. The link is
/// latchkey's own start link: it carries the session's CSRF token, never a secret of the
/// provider's.
pub fn connect(subject: &Subject<'_>, scopes: &[String], start_url: &str) -> Markup {
    let service = &subject.service.title;
    subject.dialog(html! {
            p {
                "You will sign in to " (service) " and allow access for " (subject.brand.name)
                ". Then this window comes back here and closes."
            }
            (permissions(subject.environment, scopes))
            div class="actions" {
                a class="button" href=(start_url) { "Connect to " (service) }
                button type="button" id="cancel" class="secondary" { "Cancel" }
            }
    })
}

/// The client id and secret form of the client-credentials grant, and after a refused post,
/// the values sent (never a secret) and what was wrong.
pub struct ClientCredentials<'a> {
    pub fields: &'a [Field],
    /// Where the form posts: latchkey's own route, so `form-action 'self'` holds.
    pub action: &'a str,
    pub csrf: &'a str,
    pub scopes: &'a [String],
    pub values: &'a BTreeMap<String, String>,
    pub errors: &'a BTreeMap<String, String>,
    pub form_error: Option<&'a str>,
}

pub fn client_credentials(subject: &Subject<'_>, form: &ClientCredentials<'_>) -> Markup {
    let empty = String::new();
    subject.dialog(html! {
            (error_summary(form.errors, form.form_error))
            p { (subject.service.title) " is checked with these at once: nothing is saved unless it gives a token." }
            form method="post" action=(form.action) novalidate {
                input type="hidden" name="_csrf" value=(form.csrf);
                @for scope in form.scopes {
                    input type="hidden" name="scopes" value=(scope);
                }
                @for each in form.fields {
                    (field(each, if each.secret() { &empty } else { form.values.get(&each.name()).unwrap_or(&empty) }, form.errors.get(&each.name()), false))
                }
                (permissions(subject.environment, form.scopes))
                div class="actions" {
                    button type="submit" { "Connect" }
                    button type="button" id="cancel" class="secondary" { "Cancel" }
                }
            }
    })
}

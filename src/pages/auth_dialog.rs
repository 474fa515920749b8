//! The auth dialogs, one form and one save path for all of them:
//! - one service environment: `/external/auth/create/{partner}?serviceId&serviceEnvironmentId&scopes[]`;
//! - one auth slot of an instance: `/external/auth/create/{partner}/{solutionInstanceId}/{externalAuthId}`,
//!   which also sets the new authentication as the instance's value for the slot;
//! - editing an authentication: `/external/auth/edit/{partner}/{authenticationId}`;
//! - in the config wizard, a new authentication for one of its auth slots:
//!   `/external/solutions/{partner}/configure/{solutionInstanceId}/auth/{externalAuthId}`,
//!   under the wizard's session, back to the wizard with it picked.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use serde_json::Value;

use super::{
    Entry, Incoming, MAX_SCOPES, Opener, Posted, Query, Refusal, Session, brand, enter, forms, not_found, oauth, page,
    posted, respond, session, views, wizard,
};
use crate::{
    auth::Caller,
    domain::{
        authentications::{self, Edit, NewAuthentication},
        catalog, instances, json_schema,
        page_sessions::{self, PageTarget, Save},
    },
    error::Error,
    http::AppState,
    ids::{AuthenticationId, EnvironmentId, InstanceId, ServiceId},
};

/// Which dialog a URL asks for.
struct Dialog {
    target: PageTarget,
    /// In the config wizard: the auth slot the new authentication is for.
    wizard_slot: Option<String>,
    query: Query,
    /// The URL's path, as sent: where the page reloads itself.
    path: String,
}

impl Dialog {
    /// The dialog of a route: its kind by its path, its ids from the path's segments.
    fn parse(path: String, segments: &[String], query: Query) -> Option<Self> {
        let (target, wizard_slot) = match segments {
            [_] => {
                let service_id = ServiceId::parse(query.get("serviceId")?).ok()?;
                let environment_id = EnvironmentId::parse(query.get("serviceEnvironmentId")?).ok()?;
                (PageTarget::CreateAuthentication { service_id, environment_id }, None)
            }
            [_, id] => (PageTarget::EditAuthentication { authentication_id: AuthenticationId::parse(id).ok()? }, None),
            [_, instance, slot] if path.starts_with("/external/solutions/") => {
                (PageTarget::ConfigureInstance { instance_id: InstanceId::parse(instance).ok()? }, Some(slot.clone()))
            }
            [_, instance, slot] => {
                let instance_id = InstanceId::parse(instance).ok()?;
                (PageTarget::SlotAuthentication { instance_id, external_id: slot.clone() }, None)
            }
            _ => return None,
        };
        Some(Self { target, wizard_slot, query, path })
    }

    fn opener(&self) -> Opener {
        if self.wizard_slot.is_some() { Opener::Wizard } else { Opener::AuthDialog }
    }
}

/// `GET` shows the dialog's form; `POST` checks it and saves (see [`save`]).
pub async fn handle(State(state): State<AppState>, Path(segments): Path<Vec<String>>, incoming: Incoming) -> Response {
    let partner = segments.first().map_or("", String::as_str);
    let Incoming { query, post, path, headers, body } = incoming;
    let dialog = Dialog::parse(path, &segments, query);
    let opener = dialog.as_ref().map_or(Opener::AuthDialog, Dialog::opener);
    let outcome = match dialog {
        Some(dialog) if post => save(&state, partner, &dialog, &headers, &body).await,
        Some(dialog) => show(&state, partner, &dialog, &headers).await,
        None => Err(not_found()),
    };
    respond(&state, partner, opener, outcome).await
}

async fn show(state: &AppState, partner: &str, dialog: &Dialog, headers: &HeaderMap) -> Result<Response, Refusal> {
    // The wizard's own forms open under its session; only the wizard redeems a code.
    let session = match dialog.wizard_slot {
        Some(_) => session(state, partner, headers, &dialog.target).await?,
        None => match enter(state, partner, &dialog.target, &dialog.query, &dialog.path, headers).await? {
            Entry::Redirect(response) => return Ok(response),
            Entry::Page(session) => session,
        },
    };
    let subject = subject(state, &session, dialog).await?;
    if let Some(connect) = connect_view(partner, dialog, &session, &subject) {
        return Ok(connect);
    }
    let form = subject.prefilled.clone();
    Ok(page(StatusCode::OK, render(&subject, &session, &form)))
}

/// What the dialog is about, as the session's end user sees it.
struct Subject {
    brand: views::Brand,
    service: catalog::Service,
    environment: catalog::Environment,
    fields: Vec<forms::Field>,
    prefilled: FormState,
    /// The authentication being edited.
    editing: Option<AuthenticationId>,
    /// In the config wizard: the step to go back to.
    wizard: Option<String>,
}

async fn subject(state: &AppState, session: &Session, dialog: &Dialog) -> Result<Subject, Error> {
    let db = &state.unscoped_db;
    let scope = session.scope();
    let caller = Caller::User(scope);
    let mut name = None;
    let mut editing = None;
    let mut wizard = None;
    let (environment, scopes) = match &dialog.target {
        PageTarget::CreateAuthentication { environment_id, .. } => {
            let scopes = dialog.query.pairs.iter().filter(|(key, _)| key == "scopes[]" || key == "scopes");
            (catalog::environment(db, caller, *environment_id).await?, scopes.map(|(_, s)| s.clone()).collect())
        }
        PageTarget::SlotAuthentication { instance_id, external_id } => {
            let (slot, environment) = instances::slot_environment(db, scope, *instance_id, external_id).await?;
            (environment, slot.scopes)
        }
        PageTarget::EditAuthentication { authentication_id } => {
            let authentication = authentications::get(db, caller, *authentication_id).await?;
            name = Some(authentication.name);
            editing = Some(authentication.id);
            (authentication.environment, authentication.scopes)
        }
        PageTarget::ConfigureInstance { instance_id } => {
            let slot = dialog.wizard_slot.as_deref().unwrap_or_default();
            let (step, slot) = wizard::auth_slot(db, scope, *instance_id, slot).await?;
            wizard = Some(wizard::step_url(&dialog.path, step));
            (instances::environment_of(db, scope, &slot).await?, slot.scopes)
        }
    };
    let service = catalog::service(db, caller, environment.service_id).await?;
    let mut fields = forms::fields(forms::Document::Credentials, &environment.credentials_schema);
    fields.extend(forms::fields(forms::Document::UserData, &environment.user_data_schema));
    let mut values = BTreeMap::new();
    if let Some(id) = editing {
        let shown = |document| -> Vec<String> {
            fields.iter().filter(|f| f.document == document && !f.secret()).map(|f| f.property.clone()).collect()
        };
        let (credentials, user_data) = authentications::shown_values(
            db,
            &state.keyring,
            caller,
            id,
            &shown(forms::Document::Credentials),
            &shown(forms::Document::UserData),
        )
        .await?;
        for field in &fields {
            let document = if field.document == forms::Document::Credentials { &credentials } else { &user_data };
            if let Some(value) = document.get(&field.property) {
                values.insert(field.name(), forms::text_of(value));
            }
        }
    }
    // Scopes the environment does not list go in the free field where it lists none.
    let (listed, extra): (Vec<String>, Vec<String>) =
        scopes.into_iter().partition(|scope| environment.scopes.iter().any(|known| &known.scope == scope));
    let extra_scopes = if environment.scopes.is_empty() { extra.join(" ") } else { String::new() };
    let prefilled = FormState {
        name: name.unwrap_or_else(|| service.title.clone()),
        values,
        scopes: listed,
        extra_scopes,
        ..FormState::default()
    };
    Ok(Subject { brand: brand(state, scope).await?, service, environment, fields, prefilled, editing, wizard })
}

/// The one place where an environment that connects through OAuth leaves the token form:
/// the single-environment dialog hands it to [`oauth::dialog`]; the other dialogs show a
/// notice instead of a form, and save nothing.
fn connect_view(partner: &str, dialog: &Dialog, session: &Session, subject: &Subject) -> Option<Response> {
    if !oauth::handles(&subject.environment) {
        return None;
    }
    if let (PageTarget::CreateAuthentication { .. }, None) = (&dialog.target, &dialog.wizard_slot) {
        let mut scopes = subject.prefilled.scopes.clone();
        scopes.extend(subject.prefilled.extra_scopes.split_whitespace().map(str::to_owned));
        return Some(oauth::dialog(&oauth::Dialog {
            partner,
            target: &dialog.target,
            brand: &subject.brand,
            service: &subject.service,
            environment: &subject.environment,
            csrf: &session.csrf(),
            scopes: &scopes,
        }));
    }
    let back = subject.wizard.as_deref();
    Some(page(StatusCode::OK, views::connect_notice(&subject.brand, &subject.service, back)))
}

/// A form's state: what was posted (or the pre-filled values) and what was wrong with it.
#[derive(Clone, Default)]
struct FormState {
    name: String,
    values: BTreeMap<String, String>,
    scopes: Vec<String>,
    extra_scopes: String,
    /// The wizard's key of this form, so one form sent twice saves once.
    key: String,
    errors: BTreeMap<String, String>,
    form_error: Option<String>,
}

fn render(subject: &Subject, session: &Session, state: &FormState) -> maud::Markup {
    let key = if state.key.is_empty() { crate::crypto::random_token("") } else { state.key.clone() };
    views::auth_form(&views::AuthForm {
        brand: &subject.brand,
        service: &subject.service,
        environment: &subject.environment,
        fields: &subject.fields,
        csrf: &session.csrf(),
        name: &state.name,
        values: &state.values,
        scopes: &state.scopes,
        extra_scopes: &state.extra_scopes,
        errors: &state.errors,
        form_error: state.form_error.as_deref(),
        editing: subject.editing.is_some(),
        wizard: subject.wizard.as_deref().map(|back| (back, key.as_str())),
    })
}

fn refused(subject: &Subject, session: &Session, form: &FormState) -> Response {
    page(StatusCode::UNPROCESSABLE_ENTITY, render(subject, session, form))
}

/// A form's key: at most this long, of the characters the page makes them from.
const MAX_FORM_KEY: usize = 64;

/// `POST` to any dialog: checks the CSRF token, reads the fields as the schemas type them,
/// shows schema violations on their fields, and saves through [`page_sessions::save`]:
/// once per session (per form in the wizard), in one transaction with all it changes.
async fn save(
    state: &AppState,
    partner: &str,
    dialog: &Dialog,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Refusal> {
    let session = session(state, partner, headers, &dialog.target).await?;
    let posted = posted(&session, body)?;
    let subject = subject(state, &session, dialog).await?;
    if let Some(connect) = connect_view(partner, dialog, &session, &subject) {
        return Ok(connect);
    }
    let (mut form, credentials, user_data) = read(&subject, posted)?;
    if form.form_error.is_some() || !form.errors.is_empty() {
        return Ok(refused(&subject, &session, &form));
    }
    // Editing, the secrets left blank: each keeps its stored value.
    let kept = |document, posted: &Value| -> Vec<String> {
        let blank = |f: &&forms::Field| f.document == document && f.secret() && posted.get(&f.property).is_none();
        subject.fields.iter().filter(blank).map(|f| f.property.clone()).collect()
    };
    let mut scopes = form.scopes.clone();
    scopes.extend(form.extra_scopes.split_whitespace().take(MAX_SCOPES).map(str::to_owned));
    let new = |credentials, user_data| NewAuthentication {
        name: form.name.clone(),
        service_id: Some(subject.environment.service_id),
        environment_id: subject.environment.id,
        credentials,
        user_data: Some(user_data),
        scopes: Some(scopes.clone()),
        hidden: None,
        custom_fields: None,
    };
    let (key, change) = match (&dialog.target, &subject.wizard) {
        (PageTarget::EditAuthentication { authentication_id }, _) => {
            let edit = Edit {
                name: form.name.clone(),
                keep_credentials: kept(forms::Document::Credentials, &credentials),
                keep_user_data: kept(forms::Document::UserData, &user_data),
                credentials,
                user_data,
                scopes: scopes.clone(),
            };
            ("auth".to_owned(), Save::Edit { id: *authentication_id, edit })
        }
        (PageTarget::SlotAuthentication { instance_id, external_id }, _) => {
            let slot = Some((*instance_id, external_id.clone()));
            ("auth".to_owned(), Save::Create { new: new(credentials, user_data), slot })
        }
        (_, Some(_)) => {
            let slot = dialog.wizard_slot.clone().unwrap_or_default();
            let key = format!("create:{slot}:{}", form.key);
            (key, Save::CreateForDraft { new: new(credentials, user_data), control: wizard::auth_control(&slot) })
        }
        _ => ("auth".to_owned(), Save::Create { new: new(credentials, user_data), slot: None }),
    };
    match page_sessions::save(&state.unscoped_db, &state.keyring, &session.page, &key, change).await {
        Ok(id) => Ok(match &subject.wizard {
            Some(back) => Redirect::to(back).into_response(),
            None => page(StatusCode::OK, views::finished(&subject.brand, &subject.service, &id.to_string())),
        }),
        // The import's own checks (name, scopes, the schemas, an instance's slot): their
        // messages name fields, never values.
        Err(Error::BadInput(message)) => {
            form.form_error = Some(message);
            Ok(refused(&subject, &session, &form))
        }
        Err(err) => Err(err.into()),
    }
}

/// The posted form as the two documents, with each value that could not be read and each
/// schema violation on its field. Editing, a secret left blank keeps its stored value, so
/// its absence is no violation here (the save checks the documents it makes).
fn read(subject: &Subject, posted: Posted) -> Result<(FormState, Value, Value), Error> {
    let Posted { fields: posted, scopes } = posted;
    let key = posted.get("_form").cloned().unwrap_or_default();
    let key_ok = key.len() <= MAX_FORM_KEY && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if subject.wizard.is_some() && (key.is_empty() || !key_ok) {
        return Err(Error::bad_input("the form has no key"));
    }
    let of =
        |document| -> Vec<forms::Field> { subject.fields.iter().filter(|f| f.document == document).cloned().collect() };
    let (credentials, mut errors) = forms::read(&of(forms::Document::Credentials), &posted);
    let (user_data, user_data_errors) = forms::read(&of(forms::Document::UserData), &posted);
    errors.extend(user_data_errors);
    let kept_blank = |property: &str| {
        subject.editing.is_some()
            && subject
                .fields
                .iter()
                .any(|f| f.secret() && f.property == property && posted.get(&f.name()).is_none_or(|v| v.is_empty()))
    };
    for (document, schema, value, prefix) in [
        ("credentials", &subject.environment.credentials_schema, &credentials, "credentials."),
        ("userData", &subject.environment.user_data_schema, &user_data, "userData."),
    ] {
        for violation in json_schema::violations(document, schema, value)? {
            if violation.missing.as_deref().is_some_and(kept_blank) {
                continue;
            }
            let control = violation.property().map(|property| format!("{prefix}{property}"));
            if let Some(control) = control.filter(|control| subject.fields.iter().any(|f| &f.name() == control)) {
                errors.entry(control).or_insert(violation.message);
            } else {
                errors
                    .entry(String::new())
                    .or_insert(format!("{document}{}: {}", violation.pointer, violation.message));
            }
        }
    }
    let form_error = errors.remove("");
    let form = FormState {
        name: posted.get("name").cloned().unwrap_or_default(),
        // Secrets never go back into the page.
        values: posted
            .iter()
            .filter(|(key, _)| !subject.fields.iter().any(|f| f.secret() && &&f.name() == key))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        scopes,
        extra_scopes: posted.get("extraScopes").cloned().unwrap_or_default(),
        key,
        errors,
        form_error,
    };
    Ok((form, credentials, user_data))
}

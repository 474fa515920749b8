//! The auth dialogs, one form and one save path for all of them:
//! - one service environment: `/external/auth/create/{partner}?serviceId&serviceEnvironmentId&scopes[]`;
//! - one auth slot of an instance: `/external/auth/create/{partner}/{solutionInstanceId}/{externalAuthId}`,
//!   which also sets the new authentication as the instance's value for the slot;
//! - editing an authentication: `/external/auth/edit/{partner}/{authenticationId}`;
//! - in the config wizard, a new authentication for one of its auth slots:
//!   `/external/solutions/{partner}/configure/{solutionInstanceId}/auth/{externalAuthId}`,
//!   under the wizard's session, back to the wizard with it picked.
//!
//! An OAuth 2.0 environment's dialog is the same dialog: its authorization code flow
//! starts from the dialog's own URL (`_action=connect`) and, once the provider sends the
//! end user back, saves through the same [`store`] as a post; its client-credentials
//! form is this form with the client's fields, checked with the provider first.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{
    Entry, Incoming, MAX_SCOPES, Opener, Posted, Query, Refusal, Session, brand, enter, form_expired, forms, not_found,
    oauth, page, posted, respond, session, views, wizard,
};
use crate::{
    auth::Caller,
    domain::{
        authentications::{self, Edit, NewAuthentication, Reconnect},
        catalog::{self, AuthenticationType},
        instances, json_schema,
        page_sessions::{self, PageTarget, Save},
    },
    error::Error,
    http::AppState,
    ids::{AuthenticationId, EnvironmentId, InstanceId, ServiceId},
    oauth::Mapped,
};

/// Which dialog a URL asks for.
pub(super) struct Dialog {
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

    pub(super) fn opener(&self) -> Opener {
        if self.wizard_slot.is_some() { Opener::Wizard } else { Opener::AuthDialog }
    }

    /// What an OAuth flow started here keeps, to finish here: see [`Dialog::resumed`].
    fn origin(&self, form_key: &str) -> String {
        let origin =
            Origin { path: self.path.clone(), wizard_slot: self.wizard_slot.clone(), form: form_key.to_owned() };
        serde_json::to_string(&origin).unwrap_or_default()
    }

    /// The dialog an OAuth flow was started from, by its session's target key and what
    /// it kept ([`Dialog::origin`]), and the form's key.
    pub(super) fn resumed(target_key: &str, origin: &str) -> Option<(Self, String)> {
        let target = PageTarget::from_key(target_key)?;
        let Origin { path, wizard_slot, form } = serde_json::from_str(origin).ok()?;
        Some((Self { target, wizard_slot, query: Query::parse(None), path }, form))
    }
}

/// What an OAuth flow keeps of the dialog that started it.
#[derive(Serialize, Deserialize)]
struct Origin {
    path: String,
    wizard_slot: Option<String>,
    form: String,
}

/// `GET` shows the dialog's form; `POST` checks it and saves (see [`save`]); `GET` with
/// `_action=connect` starts an OAuth sign-in (see [`connect`]).
pub async fn handle(State(state): State<AppState>, Path(segments): Path<Vec<String>>, incoming: Incoming) -> Response {
    let partner = segments.first().map_or("", String::as_str);
    let Incoming { query, post, path, headers, body } = incoming;
    let dialog = Dialog::parse(path, &segments, query);
    let opener = dialog.as_ref().map_or(Opener::AuthDialog, Dialog::opener);
    let outcome = match dialog {
        Some(dialog) if post => save(&state, partner, &dialog, &headers, &body).await,
        Some(dialog) if dialog.query.get("_action") == Some("connect") => {
            connect(&state, partner, &dialog, &headers).await
        }
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
    if let Some(connect) = connect_view(dialog, &session, &subject) {
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
            (Arc::unwrap_or_clone(authentication.environment), authentication.scopes)
        }
        PageTarget::ConfigureInstance { instance_id } => {
            let slot = dialog.wizard_slot.as_deref().unwrap_or_default();
            let (step, slot) = wizard::auth_slot(db, scope, *instance_id, slot).await?;
            wizard = Some(wizard::step_url(&dialog.path, step));
            (instances::environment_of(db, scope, &slot).await?, slot.scopes)
        }
    };
    let service = catalog::service(db, caller, environment.service_id).await?;
    let mut fields = match environment.authentication_type {
        AuthenticationType::Oauth2clientCredentials => oauth::client_credentials_fields(&environment),
        _ => forms::fields(forms::Document::Credentials, &environment.credentials_schema),
    };
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

impl Subject {
    /// A client-credentials environment with its token URL: its form checks the client
    /// id and secret with the provider before it saves.
    fn client_credentials(&self) -> bool {
        self.environment.authentication_type == AuthenticationType::Oauth2clientCredentials
            && self.environment.oauth_app.is_some()
    }

    /// The scopes asked for: the checked ones and the extra ones.
    fn scopes(&self, form: &FormState) -> Vec<String> {
        let mut scopes = form.scopes.clone();
        scopes.extend(form.extra_scopes.split_whitespace().take(MAX_SCOPES).map(str::to_owned));
        scopes
    }
}

/// The one place where an environment that connects through OAuth leaves the token form:
/// an authorization code environment shows the link that starts the sign-in, and one
/// without its OAuth app (or token URL) says so; either saves nothing from a post. A
/// client-credentials environment keeps the form, with the client's fields.
fn connect_view(dialog: &Dialog, session: &Session, subject: &Subject) -> Option<Response> {
    if !oauth::handles(&subject.environment) || subject.client_credentials() {
        return None;
    }
    let start_url = subject.environment.oauth_app.as_ref().map(|_| {
        let mut link = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in dialog.query.pairs.iter().filter(|(key, _)| !key.starts_with('_')) {
            link.append_pair(key, value);
        }
        let form_key = crate::crypto::random_token("");
        link.append_pair("_action", "connect").append_pair("_csrf", &session.csrf()).append_pair("_form", &form_key);
        format!("{}?{}", dialog.path, link.finish())
    });
    let connect = views::Connect {
        brand: &subject.brand,
        service: &subject.service,
        environment: &subject.environment,
        scopes: &subject.scopes(&subject.prefilled),
        start_url: start_url.as_deref(),
        editing: subject.editing.is_some(),
        back: subject.wizard.as_deref(),
    };
    Some(page(StatusCode::OK, views::connect(&connect)))
}

/// `GET {dialog}?…&_action=connect&_csrf=…&_form=…`: the link of [`connect_view`]. With
/// the session's CSRF token, starts an OAuth flow that finishes in this dialog, with the
/// dialog's scopes, and sends the browser to the provider. A dialog that has saved
/// already shows that instead.
async fn connect(state: &AppState, partner: &str, dialog: &Dialog, headers: &HeaderMap) -> Result<Response, Refusal> {
    let session = session(state, partner, headers, &dialog.target).await?;
    if !dialog.query.get("_csrf").is_some_and(|csrf| session.csrf_matches(csrf)) {
        return Err(form_expired());
    }
    let form_key = dialog.query.get("_form").unwrap_or_default();
    if !form_key_ok(form_key) {
        return Err(not_found());
    }
    let subject = subject(state, &session, dialog).await?;
    if subject.environment.authentication_type != AuthenticationType::Oauth2 {
        return Err(not_found());
    }
    if let Some(id) = saved(state, &session, &save_key(dialog, form_key)).await? {
        return Ok(finished(&subject, id));
    }
    let start = oauth::Start {
        target: &dialog.target,
        origin: dialog.origin(form_key),
        environment: &subject.environment,
        scopes: subject.scopes(&subject.prefilled),
    };
    oauth::start(state, &session, start).await
}

/// What a dialog saves, however it was given.
enum Documents {
    /// The form's documents; editing, the properties whose stored values stay.
    Form {
        name: String,
        credentials: Value,
        user_data: Value,
        scopes: Vec<String>,
        keep_credentials: Vec<String>,
        keep_user_data: Vec<String>,
    },
    /// A provider's tokens after a sign-in: a new authentication named as the dialog
    /// names it, or, editing, the stored one's new tokens.
    Connected(Mapped),
}

/// The key under which a dialog's save is kept in the session: one per dialog, and in
/// the wizard one per form shown.
fn save_key(dialog: &Dialog, form_key: &str) -> String {
    match &dialog.wizard_slot {
        Some(slot) => format!("create:{slot}:{form_key}"),
        None => "auth".to_owned(),
    }
}

/// What the session saved under `key` already, if anything.
async fn saved(state: &AppState, session: &Session, key: &str) -> Result<Option<Uuid>, Error> {
    Ok(page_sessions::draft(&state.unscoped_db, &session.page).await?.saved.get(key).copied())
}

/// What `documents` change, for the dialog's target.
fn change(dialog: &Dialog, subject: &Subject, documents: Documents) -> Save {
    let (name, credentials, user_data, scopes) = match documents {
        Documents::Connected(mapped) => {
            if let PageTarget::EditAuthentication { authentication_id } = &dialog.target {
                let reconnect = Reconnect {
                    credentials: mapped.credentials.expose().clone(),
                    user_data: mapped.user_data,
                    scopes: mapped.scopes,
                };
                return Save::Reconnect { id: *authentication_id, reconnect };
            }
            (subject.prefilled.name.clone(), mapped.credentials.expose().clone(), mapped.user_data, mapped.scopes)
        }
        Documents::Form { name, credentials, user_data, scopes, keep_credentials, keep_user_data } => {
            if let PageTarget::EditAuthentication { authentication_id } = &dialog.target {
                let edit = Edit { name, credentials, user_data, keep_credentials, keep_user_data, scopes };
                return Save::Edit { id: *authentication_id, edit };
            }
            (name, credentials, user_data, scopes)
        }
    };
    let new = NewAuthentication {
        name,
        service_id: Some(subject.environment.service_id),
        environment_id: subject.environment.id,
        credentials,
        user_data: Some(user_data),
        scopes: Some(scopes),
        hidden: None,
        custom_fields: None,
    };
    match (&dialog.target, &dialog.wizard_slot) {
        (PageTarget::SlotAuthentication { instance_id, external_id }, _) => {
            Save::Create { new, slot: Some((*instance_id, external_id.clone())) }
        }
        (_, Some(slot)) => Save::CreateForDraft { new, control: wizard::auth_control(slot) },
        _ => Save::Create { new, slot: None },
    }
}

/// Saves what a dialog was given through [`page_sessions::save`] (once per session, per
/// form in the wizard, in one transaction with all it changes) and answers the page that
/// says so: back to the wizard, or the finished page. The import's own checks refuse
/// with [`Error::BadInput`], whose messages name fields, never values.
async fn store(
    state: &AppState,
    session: &Session,
    dialog: &Dialog,
    subject: &Subject,
    form_key: &str,
    documents: Documents,
) -> Result<Response, Error> {
    let change = change(dialog, subject, documents);
    let id = page_sessions::save(
        &state.unscoped_db,
        &state.keyring,
        state.refresher.timing(),
        &session.page,
        &save_key(dialog, form_key),
        change,
    )
    .await?;
    Ok(finished(subject, id))
}

/// Where an OAuth sign-in started in `dialog` ends: the provider's tokens saved as the
/// dialog saves (see [`store`]).
pub(super) async fn connected(
    state: &AppState,
    session: &Session,
    dialog: &Dialog,
    form_key: &str,
    mapped: Mapped,
) -> Result<Response, Error> {
    let subject = subject(state, session, dialog).await?;
    store(state, session, dialog, &subject, form_key, Documents::Connected(mapped)).await
}

/// The page after a save: in the wizard, back to its step (the new authentication picked);
/// else the page that tells the opener, then closes.
fn finished(subject: &Subject, id: Uuid) -> Response {
    match &subject.wizard {
        Some(back) => Redirect::to(back).into_response(),
        None => page(StatusCode::OK, views::finished(&subject.brand, &subject.service, &id.to_string())),
    }
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
        client_credentials: subject.client_credentials(),
        wizard: subject.wizard.as_deref().map(|back| (back, key.as_str())),
    })
}

fn refused(subject: &Subject, session: &Session, form: &FormState) -> Response {
    page(StatusCode::UNPROCESSABLE_ENTITY, render(subject, session, form))
}

/// A form's key: at most this long, of the characters the page makes them from.
const MAX_FORM_KEY: usize = 64;

fn form_key_ok(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_FORM_KEY
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `POST` to any dialog: checks the CSRF token, reads the fields as the schemas type them,
/// shows schema violations on their fields, and saves through [`store`]. A
/// client-credentials form gets a token from the provider first: a refusal shows on the
/// form and saves nothing.
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
    if let Some(connect) = connect_view(dialog, &session, &subject) {
        return Ok(connect);
    }
    let (mut form, credentials, user_data) = read(&subject, posted)?;
    if form.form_error.is_some() || !form.errors.is_empty() {
        return Ok(refused(&subject, &session, &form));
    }
    let scopes = subject.scopes(&form);
    let documents = if subject.client_credentials() {
        // Sent again once saved: the provider is not asked again.
        if let Some(id) = saved(state, &session, &save_key(dialog, &form.key)).await? {
            return Ok(finished(&subject, id));
        }
        let environment = &subject.environment;
        match oauth::client_credentials(state, environment, &subject.service, &credentials, &user_data, scopes).await {
            // Editing, the client's documents replace the stored ones whole.
            Ok(mapped) => Documents::Form {
                name: form.name.clone(),
                credentials: mapped.credentials.expose().clone(),
                user_data: mapped.user_data,
                scopes: mapped.scopes,
                keep_credentials: Vec::new(),
                keep_user_data: Vec::new(),
            },
            Err(oauth::Refused::Form(status, message)) => {
                form.form_error = Some(message);
                return Ok(page(status, render(&subject, &session, &form)));
            }
            Err(oauth::Refused::Page(err)) => return Err(err.into()),
        }
    } else {
        // Editing, the secrets left blank: each keeps its stored value.
        let kept = |document, posted: &Value| -> Vec<String> {
            let blank = |f: &&forms::Field| f.document == document && f.secret() && posted.get(&f.property).is_none();
            subject.fields.iter().filter(blank).map(|f| f.property.clone()).collect()
        };
        Documents::Form {
            name: form.name.clone(),
            keep_credentials: kept(forms::Document::Credentials, &credentials),
            keep_user_data: kept(forms::Document::UserData, &user_data),
            credentials,
            user_data,
            scopes,
        }
    };
    match store(state, &session, dialog, &subject, &form.key, documents).await {
        Ok(response) => Ok(response),
        // The import's own checks (name, scopes, the schemas, an instance's slot).
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
    if subject.wizard.is_some() && !form_key_ok(&key) {
        return Err(Error::bad_input("the form has no key"));
    }
    let of =
        |document| -> Vec<forms::Field> { subject.fields.iter().filter(|f| f.document == document).cloned().collect() };
    let (credentials, mut errors) = forms::read(&of(forms::Document::Credentials), &posted);
    let (user_data, user_data_errors) = forms::read(&of(forms::Document::UserData), &posted);
    errors.extend(user_data_errors);
    let kept_blank = |property: &str| {
        subject.editing.is_some()
            && !subject.client_credentials()
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
            // The provider's answer fills the tokens' own properties.
            if subject.client_credentials()
                && document == "credentials"
                && violation.property().is_some_and(oauth::is_token_field)
            {
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
    // A client-credentials form's own fields, which its schema may not name.
    for field in subject.fields.iter().filter(|f| subject.client_credentials() && f.required) {
        if posted.get(&field.name()).is_none_or(|value| value.trim().is_empty()) {
            errors.entry(field.name()).or_insert_with(|| "is required".to_owned());
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

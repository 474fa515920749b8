//! The config wizard: `/external/solutions/{partner}/configure/{solutionInstanceId}`.
//!
//! One step per visible auth slot (pick one of the end user's authentications that fit
//! it, or create one through the auth form under this session), then one step with the
//! visible config slots and Finish. Each step's values go into the session's draft as
//! the step is left, so a reload or Back loses nothing. Finishing saves them once,
//! through the same update as `updateSolutionInstance` (or, where a newer version needs
//! the end user's input, the same upgrade as `upgradeSolutionInstance`).

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use sea_orm::DatabaseConnection;
use serde_json::Value;

use super::{
    Entry, Incoming, Opener, Query, Refusal, Session, brand, enter, forms, not_found, page, posted, respond, session,
    views,
};
use crate::{
    auth::{Caller, UserScope},
    domain::{
        authentications::Authentication,
        catalog,
        instances::{self, Values},
        json_text::JsonText,
        page_sessions::{self, PageTarget, Save},
        solutions::{self, AuthSlot, ConfigSlot, ValueType},
    },
    error::Error,
    http::AppState,
    ids::{InstanceId, ServiceId},
};

/// The draft's key of the finish: one finish per session.
const FINISH: &str = "finish";

/// The control (and draft value) of an auth slot's pick.
pub(super) fn auth_control(external_id: &str) -> String {
    format!("auth.{external_id}")
}

/// The wizard's URL at `step`, from the path of the wizard or of a page under it.
pub(super) fn step_url(path: &str, step: usize) -> String {
    // "", "external", "solutions", partner, "configure", instance
    let base: Vec<&str> = path.split('/').take(6).collect();
    format!("{}?step={step}", base.join("/"))
}

/// A visible auth slot of the wizard of `instance_id`, and its step.
pub(super) async fn auth_slot(
    db: &DatabaseConnection,
    scope: &UserScope,
    instance_id: InstanceId,
    external_id: &str,
) -> Result<(usize, AuthSlot), Error> {
    let configuration = instances::configuration(db, scope, instance_id).await?;
    let found = configuration
        .definition
        .auth_slots
        .into_iter()
        .filter(|slot| !slot.hidden)
        .enumerate()
        .find(|(_, slot)| slot.external_id == external_id);
    found.ok_or(Error::NotFound("auth slot"))
}

/// `GET` shows a step; `POST` checks and keeps its values, and the last step's finishes.
pub async fn handle(
    State(state): State<AppState>,
    Path((partner, instance)): Path<(String, String)>,
    incoming: Incoming,
) -> Response {
    let outcome = match InstanceId::parse(&instance) {
        Ok(instance_id) => {
            let Incoming { query, post, path, headers, body } = &incoming;
            let request = Request { state: &state, partner: &partner, instance_id, query, path, headers };
            if *post { save(&request, body).await } else { show(&request).await }
        }
        Err(_) => Err(not_found()),
    };
    respond(&state, &partner, Opener::Wizard, outcome).await
}

/// One request to the wizard.
struct Request<'a> {
    state: &'a AppState,
    partner: &'a str,
    instance_id: InstanceId,
    query: &'a Query,
    path: &'a str,
    headers: &'a HeaderMap,
}

async fn show(request: &Request<'_>) -> Result<Response, Refusal> {
    let Request { state, partner, instance_id, query, path, headers } = request;
    let target = PageTarget::ConfigureInstance { instance_id: *instance_id };
    let session = match enter(state, partner, &target, query, path, headers).await? {
        Entry::Redirect(response) => return Ok(response),
        Entry::Page(session) => session,
    };
    let wizard = Wizard::load(state, &session, *instance_id).await?;
    if let Some(finished) = wizard.finished() {
        return Ok(finished);
    }
    let step = wizard.step(query);
    Ok(wizard.render(state, &session, path, step, &Problems::default(), StatusCode::OK).await?)
}

/// What a step found wrong: by control name, and what no single field is to blame for.
#[derive(Default)]
struct Problems {
    fields: BTreeMap<String, String>,
    form: Option<String>,
}

impl Problems {
    fn any(&self) -> bool {
        self.form.is_some() || !self.fields.is_empty()
    }
}

/// The wizard of one instance, as its session's end user sees it.
struct Wizard {
    brand: views::Brand,
    title: String,
    instance_id: InstanceId,
    upgrade: bool,
    /// The visible auth slots, a step each.
    auth_slots: Vec<AuthSlot>,
    /// The visible config slots, and their fields (the last step).
    config_slots: Vec<ConfigSlot>,
    fields: Vec<forms::Field>,
    /// Every control's text: the draft over the instance's values over the defaults.
    values: BTreeMap<String, String>,
    finished: Option<uuid::Uuid>,
}

impl Wizard {
    async fn load(state: &AppState, session: &Session, instance_id: InstanceId) -> Result<Self, Error> {
        let db = &state.unscoped_db;
        let configuration = instances::configuration(db, session.scope(), instance_id).await?;
        let definition = configuration.definition;
        let config_slots: Vec<ConfigSlot> = definition.config_slots.into_iter().filter(|slot| !slot.hidden).collect();
        let fields: Vec<forms::Field> = config_slots.iter().map(forms::config_field).collect();
        let mut values = BTreeMap::new();
        for slot in &config_slots {
            let current = configuration.instance.config_values.get(&slot.external_id).or(slot.default_value.as_ref());
            if let Some(value) = current {
                values.insert(format!("config.{}", slot.external_id), forms::text_of(value.value()));
            }
        }
        for (external_id, id) in &configuration.instance.auth_values {
            values.insert(auth_control(external_id), id.to_string());
        }
        let draft = page_sessions::draft(db, &session.page).await?;
        values.extend(draft.values);
        Ok(Self {
            brand: brand(state, session.scope()).await?,
            title: definition.title,
            instance_id,
            upgrade: configuration.upgrade,
            auth_slots: definition.auth_slots.into_iter().filter(|slot| !slot.hidden).collect(),
            config_slots,
            fields,
            values,
            finished: draft.saved.get(FINISH).copied(),
        })
    }

    /// Once finished, the wizard shows (and tells the opener) that it is.
    fn finished(&self) -> Option<Response> {
        self.finished.map(|id| self.finished_page(id))
    }

    fn finished_page(&self, id: uuid::Uuid) -> Response {
        page(StatusCode::OK, views::wizard_finished(&self.brand, &self.title, &id.to_string()))
    }

    fn steps(&self) -> usize {
        self.auth_slots.len() + 1
    }

    fn step(&self, query: &Query) -> usize {
        query.get("step").and_then(|step| step.parse::<usize>().ok()).unwrap_or(0).min(self.steps() - 1)
    }

    async fn render(
        &self,
        state: &AppState,
        session: &Session,
        path: &str,
        step: usize,
        problems: &Problems,
        status: StatusCode,
    ) -> Result<Response, Error> {
        let instance_id = self.instance_id.to_string();
        let csrf = session.csrf();
        let view = views::WizardStep {
            brand: &self.brand,
            title: &self.title,
            instance_id: &instance_id,
            csrf: &csrf,
            step,
            steps: self.steps(),
            errors: &problems.fields,
            form_error: problems.form.as_deref(),
        };
        let Some(slot) = self.auth_slots.get(step) else {
            return Ok(page(status, views::wizard_settings(&view, &self.fields, &self.values)));
        };
        let service =
            catalog::service(&state.unscoped_db, Caller::User(session.scope()), ServiceId(slot.service_id)).await?;
        let fitting = instances::fitting_authentications(&state.unscoped_db, session.scope(), slot).await?;
        let control = auth_control(&slot.external_id);
        let segment = url::form_urlencoded::byte_serialize(slot.external_id.as_bytes()).collect::<String>();
        let base = step_url(path, step);
        let create_url = format!("{}/auth/{}", base.split('?').next().unwrap_or_default(), segment.replace('+', "%20"));
        let auth = views::AuthStep {
            slot_title: &slot.title,
            service: &service,
            control: &control,
            required: slot.required,
            choices: fitting.iter().map(choice).collect(),
            picked: self.values.get(&control).map_or("", String::as_str),
            create_url: &create_url,
        };
        Ok(page(status, views::wizard_auth_step(&view, &auth)))
    }

    /// The values to save, or what is wrong with them: each config value read as its
    /// slot's type and checked as the API checks it, each required slot filled.
    fn values_to_save(&self) -> (Values, Problems) {
        let mut problems = Problems::default();
        let mut auth = Vec::new();
        let mut unpicked = Vec::new();
        for slot in &self.auth_slots {
            match self.values.get(&auth_control(&slot.external_id)).filter(|id| !id.is_empty()) {
                Some(id) => auth.push((slot.external_id.clone(), id.clone())),
                None if slot.required => unpicked.push(slot.title.as_str()),
                None => {}
            }
        }
        if !unpicked.is_empty() {
            problems.form = Some(format!("Choose a connection for {}: go back to its step.", unpicked.join(", ")));
        }
        let (document, errors) = forms::read(&self.fields, &self.values);
        problems.fields = errors;
        let mut config = Vec::new();
        for slot in &self.config_slots {
            let control = format!("config.{}", slot.external_id);
            if problems.fields.contains_key(&control) {
                continue;
            }
            match document.get(&slot.external_id).map(|value| chosen(slot, value)) {
                Some(value) if solutions::check_value(slot, &value).is_ok() => {
                    config.push((slot.external_id.clone(), Some(JsonText::from(value))));
                }
                Some(_) => {
                    problems.fields.insert(control, type_error(slot.value_type).to_owned());
                }
                None if slot.required => {
                    problems.fields.insert(control, "is required".to_owned());
                }
                None => config.push((slot.external_id.clone(), None)),
            }
        }
        (Values { auth, config }, problems)
    }
}

fn choice(authentication: &Authentication) -> views::Choice<'_> {
    views::Choice {
        id: authentication.id.to_string(),
        name: &authentication.name,
        environment: &authentication.environment.title,
    }
}

/// A choice slot's select sends the choice as shown; anything else is read as it is.
fn chosen(slot: &ConfigSlot, value: &Value) -> Value {
    match (slot.value_type, value) {
        (ValueType::Choice, Value::String(shown)) => slot
            .choices
            .iter()
            .find(|choice| &forms::text_of(choice.value()) == shown)
            .map_or_else(|| value.clone(), |choice| choice.value().clone()),
        _ => value.clone(),
    }
}

fn type_error(value_type: ValueType) -> &'static str {
    match value_type {
        ValueType::String => "must be text",
        ValueType::Number => "must be a number",
        ValueType::Boolean => "must be true or false",
        ValueType::Object => "must be a JSON object",
        ValueType::Array => "must be a JSON array",
        ValueType::Choice => "must be one of the choices",
    }
}

/// `POST` of a step: checks the CSRF token and the step's values, keeps them in the
/// session's draft, and goes on (or back); the last step's post finishes.
async fn save(request: &Request<'_>, body: &[u8]) -> Result<Response, Refusal> {
    let Request { state, partner, instance_id, query, path, headers } = request;
    let instance_id = *instance_id;
    let session = session(state, partner, headers, &PageTarget::ConfigureInstance { instance_id }).await?;
    let posted = posted(&session, body)?;
    let mut wizard = Wizard::load(state, &session, instance_id).await?;
    if let Some(finished) = wizard.finished() {
        return Ok(finished);
    }
    let step = wizard.step(query);
    let back = posted.field("_action") == "back" && step > 0;
    let db = &state.unscoped_db;
    let mut problems = Problems::default();
    let texts: BTreeMap<String, String> = match wizard.auth_slots.get(step) {
        Some(slot) => {
            let control = auth_control(&slot.external_id);
            let picked = posted.field(&control).to_owned();
            let fitting = instances::fitting_authentications(db, session.scope(), slot).await?;
            if !picked.is_empty() && !fitting.iter().any(|authentication| authentication.id.to_string() == picked) {
                problems.fields.insert(control.clone(), "Choose one of the connections listed here.".to_owned());
            } else if picked.is_empty() && slot.required && !back {
                problems.fields.insert(control.clone(), "Choose a connection, or create a new one.".to_owned());
            }
            BTreeMap::from([(control, picked)])
        }
        None => wizard.fields.iter().map(|field| (field.name(), posted.field(&field.name()).to_owned())).collect(),
    };
    if problems.any() {
        return Ok(wizard.render(state, &session, path, step, &problems, StatusCode::UNPROCESSABLE_ENTITY).await?);
    }
    page_sessions::remember(db, &session.page, texts.clone()).await?;
    wizard.values.extend(texts);
    if back || step + 1 < wizard.steps() {
        let next = if back { step - 1 } else { step + 1 };
        return Ok(Redirect::to(&step_url(path, next)).into_response());
    }
    let (values, mut problems) = wizard.values_to_save();
    if problems.any() {
        return Ok(wizard.render(state, &session, path, step, &problems, StatusCode::UNPROCESSABLE_ENTITY).await?);
    }
    let finish = Save::Configure { id: instance_id, values, upgrade: wizard.upgrade };
    match page_sessions::save(db, &state.keyring, state.refresher.timing(), &session.page, FINISH, finish).await {
        Ok(id) => Ok(wizard.finished_page(id)),
        // The update's own checks: their messages name slots, never values.
        Err(Error::BadInput(message)) => {
            problems.form = Some(message);
            Ok(wizard.render(state, &session, path, step, &problems, StatusCode::UNPROCESSABLE_ENTITY).await?)
        }
        Err(err) => Err(err.into()),
    }
}

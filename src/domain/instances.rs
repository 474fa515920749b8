//! Solution instances: an end user's copy of a published solution, with authentications in
//! its auth slots and values in its config slots, addressed by exact, case-sensitive
//! `externalId`. Every change is one transaction: on any error no row changes.

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QuerySelect,
};
use uuid::Uuid;

use super::{
    audit,
    authentications::{self, Authentication},
    catalog::{self, Environment},
    idempotency::{self, Begun, Idempotency},
    json_text::JsonText,
    pagination::{Page, PageRequest},
    required_text,
    solutions::{self, AuthSlot, Definition, Workflow},
    webhooks::events::{self, InstanceChange},
};
use crate::{
    auth::{Caller, UserScope},
    error::{Error, Result},
    ids::{AuthenticationId, EnvironmentId, InstanceId, OrgId, ServiceId, SolutionId, UserId},
};
use entity::{authentication, instance_auth_value, instance_config_value, solution_instance};

/// Whether a newer published version exists, and what moving to it needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VersionFlags {
    pub has_newer_version: bool,
    /// A new required, visible slot without a default.
    pub requires_user_input: bool,
    /// A new required, hidden slot without a default.
    pub requires_system_input: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    pub id: InstanceId,
    pub owner: UserId,
    pub solution_id: SolutionId,
    pub version: i32,
    pub name: String,
    pub enabled: bool,
    pub created_at: chrono::DateTime<Utc>,
    /// The definition of the instance's own version.
    pub definition: Definition,
    pub auth_values: BTreeMap<String, AuthenticationId>,
    pub config_values: BTreeMap<String, JsonText>,
    pub flags: VersionFlags,
}

impl Instance {
    pub fn workflows(&self) -> &[Workflow] {
        &self.definition.workflows
    }
}

/// Values given in a create, update or upgrade; `None` for a config value clears it.
#[derive(Default)]
pub struct Values {
    pub auth: Vec<(String, String)>,
    pub config: Vec<(String, Option<JsonText>)>,
}

pub struct NewInstance {
    pub solution_id: SolutionId,
    pub name: String,
    pub values: Values,
}

#[derive(Default)]
pub struct InstancePatch {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub values: Values,
    pub error_on_enabling_with_missing_values: bool,
}

#[derive(Default)]
pub struct Criteria {
    pub id: Option<InstanceId>,
    pub ids: Option<Vec<InstanceId>>,
    pub name: Option<String>,
    pub owner: Option<UserId>,
    pub solution_id: Option<SolutionId>,
}

fn flags(current: &Definition, current_version: i32, latest: Option<(&Definition, i32)>) -> VersionFlags {
    let Some((latest, latest_version)) = latest.filter(|(_, version)| *version > current_version) else {
        return VersionFlags::default();
    };
    let mut flags = VersionFlags { has_newer_version: latest_version > current_version, ..VersionFlags::default() };
    let new_auth = latest.auth_slots.iter().filter(|s| current.auth_slot(&s.external_id).is_none() && s.required);
    let new_config = latest
        .config_slots
        .iter()
        .filter(|s| current.config_slot(&s.external_id).is_none() && s.required && s.default_value.is_none());
    for hidden in new_auth.map(|s| s.hidden).chain(new_config.map(|s| s.hidden)) {
        if hidden {
            flags.requires_system_input = true;
        } else {
            flags.requires_user_input = true;
        }
    }
    flags
}

fn unknown_slot(kind: &str, id: &str, valid: Vec<&str>) -> Error {
    let valid = if valid.is_empty() { "none".to_owned() } else { valid.join(", ") };
    Error::bad_input(format!("unknown {kind} slot externalId {id:?}; valid externalIds: {valid}"))
}

/// Checks values against `definition` and applies them to the current ones (a merge per
/// externalId). Auth values must be the end user's own authentications, of the slot's
/// service (and environment, where the slot fixes one).
async fn merge_values(
    txn: &DatabaseTransaction,
    scope: &UserScope,
    definition: &Definition,
    values: Values,
    auth: &mut BTreeMap<String, AuthenticationId>,
    config: &mut BTreeMap<String, JsonText>,
) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let mut given = Vec::with_capacity(values.auth.len());
    for (external_id, auth_id) in values.auth {
        if !seen.insert(("auth", external_id.clone())) {
            return Err(Error::bad_input(format!("auth slot {external_id:?} is given twice")));
        }
        let slot = definition.auth_slot(&external_id).ok_or_else(|| {
            unknown_slot("auth", &external_id, definition.auth_slots.iter().map(|s| s.external_id.as_str()).collect())
        })?;
        given.push((external_id, slot, AuthenticationId::parse(&auth_id).ok()));
    }
    // The end user's own among them, in one statement, share-locked so that none can be
    // removed before this commits.
    let ids: Vec<Uuid> = given.iter().filter_map(|(_, _, id)| id.map(|id| id.0)).collect();
    let owned: HashMap<Uuid, (Uuid, Uuid)> = if ids.is_empty() {
        HashMap::new()
    } else {
        authentication::Entity::find()
            .select_only()
            .columns([
                authentication::Column::Id,
                authentication::Column::ServiceId,
                authentication::Column::EnvironmentId,
            ])
            .filter(authentication::Column::Id.is_in(ids))
            .filter(authentication::Column::OrgId.eq(scope.org_id().0))
            .filter(authentication::Column::OwnerUserId.eq(scope.user_id().0))
            .lock_shared()
            .into_tuple::<(Uuid, Uuid, Uuid)>()
            .all(txn)
            .await?
            .into_iter()
            .map(|(id, service_id, environment_id)| (id, (service_id, environment_id)))
            .collect()
    };
    for (external_id, slot, id) in given {
        let Some((id, (service_id, environment_id))) = id.and_then(|id| Some((id, *owned.get(&id.0)?))) else {
            return Err(Error::bad_input(format!(
                "authId of auth slot {external_id:?} is not one of your authentications"
            )));
        };
        let environment_fits = slot.service_environment_id.is_none_or(|env| env == environment_id);
        if service_id != slot.service_id || !environment_fits {
            return Err(Error::bad_input(format!(
                "authId of auth slot {external_id:?} is not for the service{} the slot declares",
                if slot.service_environment_id.is_some() { " environment" } else { "" }
            )));
        }
        auth.insert(external_id, id);
    }
    for (external_id, value) in values.config {
        if !seen.insert(("config", external_id.clone())) {
            return Err(Error::bad_input(format!("config slot {external_id:?} is given twice")));
        }
        let slot = definition.config_slot(&external_id).ok_or_else(|| {
            unknown_slot(
                "config",
                &external_id,
                definition.config_slots.iter().map(|s| s.external_id.as_str()).collect(),
            )
        })?;
        match value.filter(|v| !v.value().is_null()) {
            Some(value) => {
                solutions::check_value(slot, value.value())?;
                config.insert(external_id, value);
            }
            None => {
                config.remove(&external_id);
            }
        }
    }
    Ok(())
}

/// Slots with a default take it when they have no value.
fn apply_defaults(definition: &Definition, config: &mut BTreeMap<String, JsonText>) {
    for slot in &definition.config_slots {
        if let Some(default) = &slot.default_value {
            config.entry(slot.external_id.clone()).or_insert_with(|| default.clone());
        }
    }
}

/// Which of an instance's values differ between `before` and `after`, by their API names.
fn changed_values(before: &ValueMaps, after: &ValueMaps) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if before.0 != after.0 {
        changed.push("authValues");
    }
    if before.1 != after.1 {
        changed.push("configValues");
    }
    changed
}

fn missing_required(
    definition: &Definition,
    auth: &BTreeMap<String, AuthenticationId>,
    config: &BTreeMap<String, JsonText>,
) -> Vec<String> {
    let auth_missing = definition.auth_slots.iter().filter(|s| s.required && !auth.contains_key(&s.external_id));
    let config_missing = definition.config_slots.iter().filter(|s| s.required && !config.contains_key(&s.external_id));
    auth_missing.map(|s| s.external_id.clone()).chain(config_missing.map(|s| s.external_id.clone())).collect()
}

/// Replaces an instance's stored values with `auth` and `config`.
async fn store_values(
    txn: &DatabaseTransaction,
    id: Uuid,
    auth: &BTreeMap<String, AuthenticationId>,
    config: &BTreeMap<String, JsonText>,
) -> Result<()> {
    instance_auth_value::Entity::delete_many().filter(instance_auth_value::Column::InstanceId.eq(id)).exec(txn).await?;
    instance_config_value::Entity::delete_many()
        .filter(instance_config_value::Column::InstanceId.eq(id))
        .exec(txn)
        .await?;
    insert_values(txn, id, auth, config).await
}

/// Writes the values of an instance that has none yet.
async fn insert_values(
    txn: &DatabaseTransaction,
    id: Uuid,
    auth: &BTreeMap<String, AuthenticationId>,
    config: &BTreeMap<String, JsonText>,
) -> Result<()> {
    if !auth.is_empty() {
        instance_auth_value::Entity::insert_many(auth.iter().map(|(external_id, auth_id)| {
            instance_auth_value::ActiveModel {
                instance_id: Set(id),
                external_id: Set(external_id.clone()),
                authentication_id: Set(auth_id.0),
            }
        }))
        .exec_without_returning(txn)
        .await?;
    }
    if !config.is_empty() {
        instance_config_value::Entity::insert_many(config.iter().map(|(external_id, value)| {
            instance_config_value::ActiveModel {
                instance_id: Set(id),
                external_id: Set(external_id.clone()),
                // The text as given, so a plain string goes back plain.
                value: Set(value.text()),
            }
        }))
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}

pub async fn create(
    db: &DatabaseConnection,
    scope: &UserScope,
    new: NewInstance,
    idempotency: Option<&Idempotency>,
) -> Result<Instance> {
    let claim = idempotency::claim(idempotency, scope, "solution_instance.create", || {
        serde_json::json!({
            "solutionId": new.solution_id.to_string(),
            "name": new.name,
            "authValues": new.values.auth,
            "configValues": new.values.config,
        })
    });
    let name = required_text("instanceName", &new.name, 256)?;
    let id = InstanceId::generate();
    let txn = match idempotency::begin(db, claim.as_ref(), id.0).await? {
        Begun::Fresh(txn) => txn,
        Begun::Replay(id) => {
            return idempotency::replayed(get(db, Caller::User(scope), InstanceId(id)).await, "solution instance");
        }
    };
    super::users::hold(&txn, scope.org_id(), scope.user_id()).await?;
    let (solution, definition) = solutions::latest(&txn, scope.org_id(), new.solution_id).await?;
    let (mut auth, mut config) = (BTreeMap::new(), BTreeMap::new());
    merge_values(&txn, scope, &definition, new.values, &mut auth, &mut config).await?;
    apply_defaults(&definition, &mut config);
    let now = Utc::now();
    let row = solution_instance::Entity::insert(solution_instance::ActiveModel {
        id: Set(id.0),
        org_id: Set(scope.org_id().0),
        owner_user_id: Set(scope.user_id().0),
        solution_id: Set(solution.id),
        solution_version: Set(solution.latest_version),
        name: Set(name),
        enabled: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_with_returning(&txn)
    .await?;
    insert_values(&txn, id.0, &auth, &config).await?;
    audit::record(&txn, scope.org_id(), scope.into(), "solution_instance.created", Some(id.0)).await?;
    events::instance(&txn, &row, InstanceChange::Created).await?;
    txn.commit().await?;
    // Made at the solution's latest version: nothing is newer.
    Ok(instance_of(row, definition, None, (auth, config)))
}

/// The caller's instance row, locked until the transaction ends (PostgreSQL; SQLite's
/// immediate transactions already admit one writer). Writers of one instance take turns,
/// each reading the values the one before it wrote, so every acknowledged merge survives.
async fn own_row_for_update(
    conn: &impl ConnectionTrait,
    scope: &UserScope,
    id: InstanceId,
) -> Result<solution_instance::Model> {
    solution_instance::Entity::find_by_id(id.0)
        .filter(solution_instance::Column::OrgId.eq(scope.org_id().0))
        .filter(solution_instance::Column::OwnerUserId.eq(scope.user_id().0))
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or(Error::NotFound("solution instance"))
}

async fn current_values(conn: &impl ConnectionTrait, id: Uuid) -> Result<ValueMaps> {
    let mut page = load_values(conn, &[id]).await?;
    Ok(page.remove(&id).unwrap_or_default())
}

type ValueMaps = (BTreeMap<String, AuthenticationId>, BTreeMap<String, JsonText>);

/// The values of many instances: two statements.
async fn load_values(conn: &impl ConnectionTrait, ids: &[Uuid]) -> Result<HashMap<Uuid, ValueMaps>> {
    let mut values: HashMap<Uuid, ValueMaps> = HashMap::new();
    let auth = instance_auth_value::Entity::find()
        .filter(instance_auth_value::Column::InstanceId.is_in(ids.iter().copied()))
        .all(conn)
        .await?;
    for row in auth {
        values.entry(row.instance_id).or_default().0.insert(row.external_id, AuthenticationId(row.authentication_id));
    }
    let config = instance_config_value::Entity::find()
        .filter(instance_config_value::Column::InstanceId.is_in(ids.iter().copied()))
        .all(conn)
        .await?;
    for row in config {
        let value = JsonText::parse(&row.value).map_err(|_| {
            Error::internal(anyhow::anyhow!("instance {} has an unreadable config value", row.instance_id))
        })?;
        values.entry(row.instance_id).or_default().1.insert(row.external_id, value);
    }
    Ok(values)
}

pub async fn update(
    db: &DatabaseConnection,
    scope: &UserScope,
    id: InstanceId,
    patch: InstancePatch,
) -> Result<Instance> {
    let txn = crate::db::write(db).await?;
    update_in(&txn, scope, id, patch).await?;
    txn.commit().await?;
    get(db, Caller::User(scope), id).await
}

/// [`update`] inside a transaction the caller commits, so a use case can compose it with
/// other writes (a new authentication for a slot) that stand or fall together.
pub(crate) async fn update_in(
    txn: &DatabaseTransaction,
    scope: &UserScope,
    id: InstanceId,
    patch: InstancePatch,
) -> Result<()> {
    let name = patch.name.as_deref().map(|name| required_text("instanceName", name, 256)).transpose()?;
    let row = own_row_for_update(txn, scope, id).await?;
    let definition = solutions::versions_unscoped(txn, &[(row.solution_id, row.solution_version)])
        .await?
        .remove(&(row.solution_id, row.solution_version))
        .ok_or_else(|| Error::internal(anyhow::anyhow!("instance {} lost its solution version", row.id)))?;
    let (mut auth, mut config) = current_values(txn, row.id).await?;
    let before = (auth.clone(), config.clone());
    merge_values(txn, scope, &definition, patch.values, &mut auth, &mut config).await?;
    let enabling = patch.enabled == Some(true) && !row.enabled;
    if enabling && patch.error_on_enabling_with_missing_values {
        let missing = missing_required(&definition, &auth, &config);
        if !missing.is_empty() {
            return Err(Error::bad_input(format!(
                "cannot enable: required slots have no value: {}",
                missing.join(", ")
            )));
        }
    }
    store_values(txn, row.id, &auth, &config).await?;
    let was_enabled = row.enabled;
    let mut active: solution_instance::ActiveModel = row.into();
    if let Some(name) = name {
        active.name = Set(name);
    }
    if let Some(enabled) = patch.enabled {
        active.enabled = Set(enabled);
    }
    active.updated_at = Set(Utc::now());
    let row = solution_instance::Entity::update(active).exec(txn).await?;
    audit::record(txn, scope.org_id(), scope.into(), "solution_instance.updated", Some(id.0)).await?;
    let changed = changed_values(&before, &(auth, config));
    if !changed.is_empty() {
        events::instance(txn, &row, InstanceChange::Updated { changed }).await?;
    }
    match patch.enabled {
        Some(true) if !was_enabled => {
            audit::record(txn, scope.org_id(), scope.into(), "solution_instance.enabled", Some(id.0)).await?;
            events::instance(txn, &row, InstanceChange::Enabled).await?;
        }
        Some(false) if was_enabled => {
            audit::record(txn, scope.org_id(), scope.into(), "solution_instance.disabled", Some(id.0)).await?;
            events::instance(txn, &row, InstanceChange::Disabled).await?;
        }
        _ => {}
    }
    Ok(())
}

/// Moves the instance to the latest published version, keeping the values whose slots
/// remain, applying `values`, and refusing when a required slot would have none.
pub async fn upgrade(db: &DatabaseConnection, scope: &UserScope, id: InstanceId, values: Values) -> Result<Instance> {
    let txn = crate::db::write(db).await?;
    upgrade_in(&txn, scope, id, values).await?;
    txn.commit().await?;
    get(db, Caller::User(scope), id).await
}

/// [`upgrade`] inside a transaction the caller commits.
pub(crate) async fn upgrade_in(
    txn: &DatabaseTransaction,
    scope: &UserScope,
    id: InstanceId,
    values: Values,
) -> Result<()> {
    let row = own_row_for_update(txn, scope, id).await?;
    let (solution, definition) = solutions::latest(txn, scope.org_id(), SolutionId(row.solution_id)).await?;
    let (mut auth, mut config) = current_values(txn, row.id).await?;
    let before = (auth.clone(), config.clone());
    auth.retain(|external_id, _| definition.auth_slot(external_id).is_some());
    config.retain(|external_id, value| {
        definition.config_slot(external_id).is_some_and(|slot| solutions::check_value(slot, value.value()).is_ok())
    });
    merge_values(txn, scope, &definition, values, &mut auth, &mut config).await?;
    apply_defaults(&definition, &mut config);
    let missing = missing_required(&definition, &auth, &config);
    if !missing.is_empty() {
        return Err(Error::bad_input(format!(
            "cannot upgrade to version {}: required slots have no value: {}",
            solution.latest_version,
            missing.join(", ")
        )));
    }
    store_values(txn, row.id, &auth, &config).await?;
    let version_changed = row.solution_version != solution.latest_version;
    let mut active: solution_instance::ActiveModel = row.into();
    active.solution_version = Set(solution.latest_version);
    active.updated_at = Set(Utc::now());
    let row = solution_instance::Entity::update(active).exec(txn).await?;
    audit::record(txn, scope.org_id(), scope.into(), "solution_instance.upgraded", Some(id.0)).await?;
    let mut changed = changed_values(&before, &(auth, config));
    if version_changed {
        changed.push("solutionVersion");
    }
    if !changed.is_empty() {
        events::instance(txn, &row, InstanceChange::Updated { changed }).await?;
    }
    Ok(())
}

/// What the config wizard asks for: the instance, and the definition whose slots it
/// shows. Where a newer published version needs the end user's input, that version's,
/// and finishing the wizard upgrades to it.
pub struct Configuration {
    pub instance: Instance,
    pub definition: Definition,
    pub upgrade: bool,
}

pub async fn configuration(conn: &impl ConnectionTrait, scope: &UserScope, id: InstanceId) -> Result<Configuration> {
    let instance = get(conn, Caller::User(scope), id).await?;
    if !(instance.flags.has_newer_version && instance.flags.requires_user_input) {
        let definition = instance.definition.clone();
        return Ok(Configuration { instance, definition, upgrade: false });
    }
    let (_, definition) = solutions::latest(conn, scope.org_id(), instance.solution_id).await?;
    Ok(Configuration { instance, definition, upgrade: true })
}

/// An auth slot of the end user's instance (of the instance's own version), and the
/// environment a new authentication for it is made in.
pub async fn slot_environment(
    conn: &impl ConnectionTrait,
    scope: &UserScope,
    id: InstanceId,
    external_id: &str,
) -> Result<(AuthSlot, Environment)> {
    let instance = get(conn, Caller::User(scope), id).await?;
    let slot = instance.definition.auth_slot(external_id).cloned().ok_or(Error::NotFound("auth slot"))?;
    let environment = environment_of(conn, scope, &slot).await?;
    Ok((slot, environment))
}

/// The environment a new authentication for `slot` is made in: the slot's own, or else
/// the service's default one (`Production` first).
pub async fn environment_of(conn: &impl ConnectionTrait, scope: &UserScope, slot: &AuthSlot) -> Result<Environment> {
    let caller = Caller::User(scope);
    match slot.service_environment_id {
        Some(id) => catalog::environment(conn, caller, EnvironmentId(id)).await,
        None => catalog::environments(conn, caller, ServiceId(slot.service_id))
            .await?
            .into_iter()
            .next()
            .ok_or(Error::NotFound("service environment")),
    }
}

/// The end user's authentications that fit `slot` (its service, and its environment where
/// it fixes one): the first 100.
pub async fn fitting_authentications(
    conn: &impl ConnectionTrait,
    scope: &UserScope,
    slot: &AuthSlot,
) -> Result<Vec<Authentication>> {
    let criteria = authentications::Criteria { owner: None, service_id: Some(ServiceId(slot.service_id)) };
    let page = PageRequest::new(Some(100), None, None, None)?;
    let page = authentications::list(conn, Caller::User(scope), criteria, &page).await?;
    Ok(page
        .items
        .into_iter()
        .filter(|authentication| slot.service_environment_id.is_none_or(|env| authentication.environment.id.0 == env))
        .collect())
}

pub async fn remove(db: &DatabaseConnection, scope: &UserScope, id: InstanceId) -> Result<()> {
    let txn = crate::db::write(db).await?;
    let row = own_row_for_update(&txn, scope, id).await?;
    events::instance(&txn, &row, InstanceChange::Removed).await?;
    solution_instance::Entity::delete_by_id(id.0).exec(&txn).await?;
    audit::record(&txn, scope.org_id(), scope.into(), "solution_instance.removed", Some(id.0)).await?;
    txn.commit().await?;
    Ok(())
}

/// The instances of an end user, removed before the user's authentications (each with
/// its `solution_instance.removed` event).
pub(crate) async fn remove_all_of(txn: &DatabaseTransaction, org_id: OrgId, user_id: UserId) -> Result<u64> {
    let rows = solution_instance::Entity::find()
        .filter(solution_instance::Column::OrgId.eq(org_id.0))
        .filter(solution_instance::Column::OwnerUserId.eq(user_id.0))
        .lock_exclusive()
        .all(txn)
        .await?;
    for row in &rows {
        events::instance(txn, row, InstanceChange::Removed).await?;
    }
    let removed = solution_instance::Entity::delete_many()
        .filter(solution_instance::Column::OrgId.eq(org_id.0))
        .filter(solution_instance::Column::OwnerUserId.eq(user_id.0))
        .exec(txn)
        .await?;
    Ok(removed.rows_affected)
}

/// The names of the caller's instances using an authentication, for a `CONFLICT` message.
pub(crate) async fn using_authentication(
    conn: &impl ConnectionTrait,
    caller: Caller<'_>,
    id: AuthenticationId,
) -> Result<Vec<String>> {
    let values = instance_auth_value::Entity::find()
        .filter(instance_auth_value::Column::AuthenticationId.eq(id.0))
        .all(conn)
        .await?;
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let rows = scoped(caller)
        .filter(solution_instance::Column::Id.is_in(values.iter().map(|v| v.instance_id)))
        .all(conn)
        .await?;
    Ok(rows.into_iter().map(|row| format!("{} ({})", row.name, row.id)).collect())
}

fn scoped(caller: Caller<'_>) -> sea_orm::Select<solution_instance::Entity> {
    let select = solution_instance::Entity::find().filter(solution_instance::Column::OrgId.eq(caller.org_id().0));
    match caller {
        Caller::Master(_) => select,
        Caller::User(scope) => select.filter(solution_instance::Column::OwnerUserId.eq(scope.user_id().0)),
    }
}

pub async fn get(conn: &impl ConnectionTrait, caller: Caller<'_>, id: InstanceId) -> Result<Instance> {
    let row = scoped(caller)
        .filter(solution_instance::Column::Id.eq(id.0))
        .one(conn)
        .await?
        .ok_or(Error::NotFound("solution instance"))?;
    let mut items = assemble(conn, caller.org_id(), vec![row]).await?;
    items.pop().ok_or_else(|| Error::internal(anyhow::anyhow!("instance vanished")))
}

/// A page of instances and the total count under the criteria: six statements, whatever
/// the page size (page, count, auth values, config values, solutions, versions).
pub async fn list(
    conn: &impl ConnectionTrait,
    caller: Caller<'_>,
    criteria: Criteria,
    page: &PageRequest,
) -> Result<(Page<Instance>, u64)> {
    let mut select = scoped(caller);
    if let Some(owner) = criteria.owner {
        if matches!(caller, Caller::User(_)) {
            return Err(Error::Forbidden("only the master token may filter by owner"));
        }
        select = select.filter(solution_instance::Column::OwnerUserId.eq(owner.0));
    }
    if let Some(id) = criteria.id {
        select = select.filter(solution_instance::Column::Id.eq(id.0));
    }
    if let Some(ids) = criteria.ids {
        select = select.filter(solution_instance::Column::Id.is_in(ids.into_iter().map(|id| id.0)));
    }
    if let Some(name) = criteria.name {
        select = select.filter(solution_instance::Column::Name.eq(name));
    }
    if let Some(solution_id) = criteria.solution_id {
        select = select.filter(solution_instance::Column::SolutionId.eq(solution_id.0));
    }
    let total = select.clone().count(conn).await?;
    let mut page = page.fetch(conn, select, solution_instance::Column::Id, |row| row.id).await?;
    let items = assemble(conn, caller.org_id(), std::mem::take(&mut page.items)).await?;
    Ok((page.with_items(items), total))
}

/// An instance from its row, its version's definition, its solution's latest and its values.
fn instance_of(
    row: solution_instance::Model,
    definition: Definition,
    latest: Option<(&Definition, i32)>,
    (auth_values, config_values): ValueMaps,
) -> Instance {
    let flags = flags(&definition, row.solution_version, latest);
    Instance {
        id: InstanceId(row.id),
        owner: UserId(row.owner_user_id),
        solution_id: SolutionId(row.solution_id),
        version: row.solution_version,
        name: row.name,
        enabled: row.enabled,
        created_at: row.created_at,
        definition,
        auth_values,
        config_values,
        flags,
    }
}

/// Loads values, solutions and the needed versions for rows, in four statements.
async fn assemble(
    conn: &impl ConnectionTrait,
    org_id: OrgId,
    rows: Vec<solution_instance::Model>,
) -> Result<Vec<Instance>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let mut values = load_values(conn, &ids).await?;
    let solution_ids: Vec<Uuid> = rows.iter().map(|row| row.solution_id).collect();
    let solutions = solutions::rows(conn, org_id, &solution_ids).await?;
    let mut keys: Vec<(Uuid, i32)> = rows.iter().map(|row| (row.solution_id, row.solution_version)).collect();
    keys.extend(solutions.values().map(|s| (s.id, s.latest_version)));
    keys.sort_unstable();
    keys.dedup();
    let definitions = solutions::versions_unscoped(conn, &keys).await?;
    rows.into_iter()
        .map(|row| {
            let lost = || Error::internal(anyhow::anyhow!("instance {} lost its solution version", row.id));
            let definition = definitions.get(&(row.solution_id, row.solution_version)).cloned().ok_or_else(lost)?;
            let latest = solutions.get(&row.solution_id).and_then(|s| {
                definitions.get(&(s.id, s.latest_version)).map(|definition| (definition, s.latest_version))
            });
            let values = values.remove(&row.id).unwrap_or_default();
            Ok(instance_of(row, definition, latest, values))
        })
        .collect()
}

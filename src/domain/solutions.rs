//! Solutions: packaged integrations an organization defines with the master token. A
//! solution has an editable draft; publishing snapshots it as version N+1. Lists show what
//! can be activated, published versions; the master token may ask for the drafts too.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter, QuerySelect,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{
    audit, catalog,
    idempotency::{self, Begun, Idempotency},
    json_text::JsonText,
    pagination::{Page, PageRequest},
    required_text,
};
use crate::{
    auth::{Caller, MasterScope},
    error::{Error, Result},
    ids::{OrgId, SolutionId},
};
use entity::{solution, solution_instance, solution_version};

/// What a config value must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    String,
    Number,
    Boolean,
    Object,
    Array,
    /// One of the slot's `choices`.
    Choice,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomField {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthSlot {
    pub external_id: String,
    pub title: String,
    pub service_id: Uuid,
    pub service_environment_id: Option<Uuid>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub hidden: bool,
    #[serde(default)]
    pub required: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSlot {
    pub external_id: String,
    pub title: String,
    pub value_type: ValueType,
    pub default_value: Option<JsonText>,
    #[serde(default)]
    pub choices: Vec<JsonText>,
    #[serde(default)]
    pub hidden: bool,
    #[serde(default)]
    pub required: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workflow {
    /// Stable across versions for the same name.
    pub id: Uuid,
    pub name: String,
}

/// A solution's definition: the draft, or one published version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Definition {
    pub title: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub custom_fields: Vec<CustomField>,
    pub auth_slots: Vec<AuthSlot>,
    pub config_slots: Vec<ConfigSlot>,
    pub workflows: Vec<Workflow>,
}

impl Definition {
    pub fn auth_slot(&self, external_id: &str) -> Option<&AuthSlot> {
        self.auth_slots.iter().find(|slot| slot.external_id == external_id)
    }

    pub fn config_slot(&self, external_id: &str) -> Option<&ConfigSlot> {
        self.config_slots.iter().find(|slot| slot.external_id == external_id)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Solution {
    pub id: SolutionId,
    /// The draft for the master token, the latest published version for end users.
    pub definition: Definition,
    /// The latest published version; 0 before the first publish.
    pub version: i32,
    pub created_at: chrono::DateTime<Utc>,
}

/// A solution as given by the master token; slots without workflow ids get them here.
pub struct SolutionInput {
    pub title: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub custom_fields: Vec<CustomField>,
    pub auth_slots: Vec<AuthSlot>,
    pub config_slots: Vec<ConfigSlot>,
    pub workflow_names: Vec<String>,
}

#[derive(Default)]
pub struct SolutionPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub custom_fields: Option<Vec<CustomField>>,
    pub auth_slots: Option<Vec<AuthSlot>>,
    pub config_slots: Option<Vec<ConfigSlot>>,
    pub workflow_names: Option<Vec<String>>,
}

fn parse_definition(text: &str) -> Result<Definition> {
    serde_json::from_str(text).map_err(Error::internal)
}

fn tags_column(tags: &[String]) -> String {
    if tags.is_empty() { String::new() } else { format!("|{}|", tags.join("|")) }
}

/// Checks a config value against its slot's type.
pub fn check_value(slot: &ConfigSlot, value: &Value) -> Result<()> {
    let fits = match slot.value_type {
        ValueType::String => value.is_string(),
        ValueType::Number => value.is_number(),
        ValueType::Boolean => value.is_boolean(),
        ValueType::Object => value.is_object(),
        ValueType::Array => value.is_array(),
        ValueType::Choice => slot.choices.iter().any(|choice| choice.value() == value),
    };
    if fits {
        Ok(())
    } else if slot.value_type == ValueType::Choice {
        let choices: Vec<String> = slot.choices.iter().map(|choice| choice.value().to_string()).collect();
        Err(Error::bad_input(format!("config value of {:?} must be one of {}", slot.external_id, choices.join(", "))))
    } else if slot.value_type == ValueType::String {
        // Text that is JSON (`42`, `true`) is read as JSON; say how to send it as a string.
        Err(Error::bad_input(format!(
            "config value of {:?} must be a string; text such as 42 or true is read as JSON, send \"42\" (with quotes) for the string",
            slot.external_id
        )))
    } else {
        Err(Error::bad_input(
            format!("config value of {:?} must be a JSON {:?}", slot.external_id, slot.value_type).to_lowercase(),
        ))
    }
}

fn external_id(value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 128 || value.chars().any(char::is_whitespace) {
        return Err(Error::bad_input(format!("externalId {value:?} must be 1 to 128 characters without spaces")));
    }
    Ok(())
}

/// Validates a definition against the organization's catalog.
async fn check_definition(conn: &impl ConnectionTrait, scope: &MasterScope, definition: &Definition) -> Result<()> {
    required_text("title", &definition.title, 200)?;
    for tag in &definition.tags {
        required_text("tag", tag, 64)?;
        if tag.contains('|') {
            return Err(Error::bad_input("tags must not contain '|'"));
        }
    }
    let mut seen = HashSet::new();
    let ids = definition
        .auth_slots
        .iter()
        .map(|s| &s.external_id)
        .chain(definition.config_slots.iter().map(|s| &s.external_id));
    for id in ids {
        external_id(id)?;
        if !seen.insert(id.as_str()) {
            return Err(Error::bad_input(format!("externalId {id:?} is used by more than one slot")));
        }
    }
    for slot in &definition.auth_slots {
        required_text("authSlots.title", &slot.title, 200)?;
        let service = catalog::service(conn, scope.into(), crate::ids::ServiceId(slot.service_id)).await?;
        if let Some(environment) = slot.service_environment_id {
            let environment = catalog::environment(conn, scope.into(), crate::ids::EnvironmentId(environment)).await?;
            if environment.service_id != service.id {
                return Err(Error::bad_input(format!(
                    "auth slot {:?}: the environment is not of its service",
                    slot.external_id
                )));
            }
        }
    }
    for slot in &definition.config_slots {
        required_text("configSlots.title", &slot.title, 200)?;
        if slot.value_type == ValueType::Choice && slot.choices.is_empty() {
            return Err(Error::bad_input(format!("config slot {:?} of type choice needs choices", slot.external_id)));
        }
        if let Some(default) = &slot.default_value {
            check_value(slot, default.value())?;
        }
    }
    let mut names = HashSet::new();
    for workflow in &definition.workflows {
        required_text("workflows.name", &workflow.name, 200)?;
        if !names.insert(workflow.name.as_str()) {
            return Err(Error::bad_input(format!("workflow {:?} is declared twice", workflow.name)));
        }
    }
    Ok(())
}

/// Workflows keep their id across edits when their name stays.
fn workflows(names: Vec<String>, previous: &[Workflow]) -> Vec<Workflow> {
    names
        .into_iter()
        .map(|name| {
            let id = previous.iter().find(|w| w.name == name).map_or_else(Uuid::now_v7, |w| w.id);
            Workflow { id, name: name.trim().to_owned() }
        })
        .collect()
}

fn own(org_id: OrgId, id: SolutionId) -> sea_orm::Select<solution::Entity> {
    solution::Entity::find_by_id(id.0).filter(solution::Column::OrgId.eq(org_id.0))
}

/// The solution row, locked for the rest of the transaction (PostgreSQL): edits, publishes
/// and removals of one solution take turns, so none builds on a draft or version another
/// is replacing.
async fn own_row_for_update(conn: &impl ConnectionTrait, org_id: OrgId, id: SolutionId) -> Result<solution::Model> {
    own(org_id, id).lock_exclusive().one(conn).await?.ok_or(Error::NotFound("solution"))
}

fn master_view(row: solution::Model) -> Result<Solution> {
    Ok(Solution {
        id: SolutionId(row.id),
        definition: parse_definition(&row.draft)?,
        version: row.latest_version,
        created_at: row.created_at,
    })
}

pub async fn create(
    db: &DatabaseConnection,
    scope: &MasterScope,
    input: SolutionInput,
    idempotency: Option<&Idempotency>,
) -> Result<Solution> {
    let claim = idempotency::claim(idempotency, scope, "solution.create", || {
        serde_json::json!({
            "title": input.title,
            "description": input.description,
            "tags": input.tags,
            "customFields": input.custom_fields,
            "authSlots": input.auth_slots,
            "configSlots": input.config_slots,
            "workflows": input.workflow_names,
        })
    });
    let id = SolutionId::generate();
    let txn = match idempotency::begin(db, claim.as_ref(), id.0).await? {
        Begun::Fresh(txn) => txn,
        Begun::Replay(id) => {
            let row = own(scope.org_id(), SolutionId(id)).one(db).await?.ok_or(Error::NotFound("solution"));
            return idempotency::replayed(row, "solution").and_then(master_view);
        }
    };
    let definition = Definition {
        title: input.title.trim().to_owned(),
        description: input.description,
        tags: input.tags,
        custom_fields: input.custom_fields,
        auth_slots: input.auth_slots,
        config_slots: input.config_slots,
        workflows: workflows(input.workflow_names, &[]),
    };
    check_definition(&txn, scope, &definition).await?;
    let now = Utc::now();
    let row = solution::Entity::insert(solution::ActiveModel {
        id: Set(id.0),
        org_id: Set(scope.org_id().0),
        draft: Set(serde_json::to_string(&definition).map_err(Error::internal)?),
        draft_tags: Set(tags_column(&definition.tags)),
        published_tags: Set(String::new()),
        latest_version: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_with_returning(&txn)
    .await?;
    audit::record(&txn, scope.org_id(), scope.into(), "solution.created", Some(row.id)).await?;
    txn.commit().await?;
    master_view(row)
}

pub async fn update(
    db: &DatabaseConnection,
    scope: &MasterScope,
    id: SolutionId,
    patch: SolutionPatch,
) -> Result<Solution> {
    let txn = crate::db::write(db).await?;
    let row = own_row_for_update(&txn, scope.org_id(), id).await?;
    let mut definition = parse_definition(&row.draft)?;
    if let Some(title) = patch.title {
        definition.title = title.trim().to_owned();
    }
    if let Some(description) = patch.description {
        definition.description = Some(description);
    }
    if let Some(tags) = patch.tags {
        definition.tags = tags;
    }
    if let Some(custom_fields) = patch.custom_fields {
        definition.custom_fields = custom_fields;
    }
    if let Some(slots) = patch.auth_slots {
        definition.auth_slots = slots;
    }
    if let Some(slots) = patch.config_slots {
        definition.config_slots = slots;
    }
    if let Some(names) = patch.workflow_names {
        definition.workflows = workflows(names, &definition.workflows);
    }
    check_definition(&txn, scope, &definition).await?;
    let mut active: solution::ActiveModel = row.into();
    active.draft = Set(serde_json::to_string(&definition).map_err(Error::internal)?);
    active.draft_tags = Set(tags_column(&definition.tags));
    active.updated_at = Set(Utc::now());
    let row = solution::Entity::update(active).exec(&txn).await?;
    audit::record(&txn, scope.org_id(), scope.into(), "solution.updated", Some(id.0)).await?;
    txn.commit().await?;
    master_view(row)
}

/// Publishes the draft as the next version.
pub async fn publish(db: &DatabaseConnection, scope: &MasterScope, id: SolutionId) -> Result<Solution> {
    let txn = crate::db::write(db).await?;
    let row = own_row_for_update(&txn, scope.org_id(), id).await?;
    let version = row.latest_version + 1;
    solution_version::Entity::insert(solution_version::ActiveModel {
        solution_id: Set(row.id),
        version: Set(version),
        definition: Set(row.draft.clone()),
        published_at: Set(Utc::now()),
    })
    .exec_without_returning(&txn)
    .await
    .map_err(|err| super::conflict_on_unique(err, || "the solution was published concurrently; retry".to_owned()))?;
    let mut active: solution::ActiveModel = row.clone().into();
    active.latest_version = Set(version);
    active.published_tags = Set(row.draft_tags.clone());
    active.updated_at = Set(Utc::now());
    let row = solution::Entity::update(active).exec(&txn).await?;
    audit::record(&txn, scope.org_id(), scope.into(), "solution.published", Some(id.0)).await?;
    txn.commit().await?;
    master_view(row)
}

pub async fn remove(db: &DatabaseConnection, scope: &MasterScope, id: SolutionId) -> Result<()> {
    let txn = crate::db::write(db).await?;
    own_row_for_update(&txn, scope.org_id(), id).await?;
    let instances =
        solution_instance::Entity::find().filter(solution_instance::Column::SolutionId.eq(id.0)).count(&txn).await?;
    if instances > 0 {
        return Err(Error::Conflict(format!("the solution has {instances} instance(s); remove them first")));
    }
    solution::Entity::delete_by_id(id.0).exec(&txn).await?;
    audit::record(&txn, scope.org_id(), scope.into(), "solution.removed", Some(id.0)).await?;
    txn.commit().await?;
    Ok(())
}

/// Published definitions by (solution, version), in one statement. Unscoped: callers pass
/// keys of solutions they have already found in the caller's organization.
pub(crate) async fn versions_unscoped(
    conn: &impl ConnectionTrait,
    keys: &[(Uuid, i32)],
) -> Result<HashMap<(Uuid, i32), Definition>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let condition = keys.iter().fold(Condition::any(), |any, (id, version)| {
        any.add(
            Condition::all()
                .add(solution_version::Column::SolutionId.eq(*id))
                .add(solution_version::Column::Version.eq(*version)),
        )
    });
    let rows = solution_version::Entity::find().filter(condition).all(conn).await?;
    rows.into_iter().map(|row| Ok(((row.solution_id, row.version), parse_definition(&row.definition)?))).collect()
}

/// Solutions as a list shows them: what can be activated, the published ones at their
/// latest version; with `include_drafts` (master token only) every one, as drafted. Two
/// statements a page.
pub async fn list(
    conn: &impl ConnectionTrait,
    caller: Caller<'_>,
    tags: &[String],
    include_drafts: bool,
    page: &PageRequest,
) -> Result<Page<Solution>> {
    if include_drafts && matches!(caller, Caller::User(_)) {
        return Err(Error::Forbidden("only the master token may list drafts"));
    }
    let mut select = solution::Entity::find().filter(solution::Column::OrgId.eq(caller.org_id().0));
    let tag_column = if include_drafts {
        solution::Column::DraftTags
    } else {
        select = select.filter(solution::Column::LatestVersion.gt(0));
        solution::Column::PublishedTags
    };
    for tag in tags {
        select = select.filter(tag_column.contains(format!("|{tag}|")));
    }
    let page = page.fetch(conn, select, solution::Column::Id, |row| row.id).await?;
    resolve(conn, include_drafts, page).await
}

async fn resolve(conn: &impl ConnectionTrait, drafts: bool, mut page: Page<solution::Model>) -> Result<Page<Solution>> {
    let rows = std::mem::take(&mut page.items);
    if drafts {
        let items = rows.into_iter().map(master_view).collect::<Result<Vec<_>>>()?;
        return Ok(page.with_items(items));
    }
    let keys: Vec<_> = rows.iter().map(|row| (row.id, row.latest_version)).collect();
    let mut definitions = versions_unscoped(conn, &keys).await?;
    let items = rows
        .into_iter()
        .map(|row| {
            let definition = definitions
                .remove(&(row.id, row.latest_version))
                .ok_or_else(|| Error::internal(anyhow::anyhow!("solution {} lost a version", row.id)))?;
            Ok(Solution { id: SolutionId(row.id), definition, version: row.latest_version, created_at: row.created_at })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(page.with_items(items))
}

/// Rows of the given solutions in the caller's organization, for instances.
pub(crate) async fn rows(
    conn: &impl ConnectionTrait,
    org_id: OrgId,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, solution::Model>> {
    let rows = solution::Entity::find()
        .filter(solution::Column::OrgId.eq(org_id.0))
        .filter(solution::Column::Id.is_in(ids.iter().copied()))
        .all(conn)
        .await?;
    Ok(rows.into_iter().map(|row| (row.id, row)).collect())
}

/// A published solution of the organization, with its latest definition, for an instance
/// write. The row stays share-locked (PostgreSQL) until the transaction ends, so the
/// solution cannot be removed or republished under the instance being written.
pub(crate) async fn latest(
    conn: &impl ConnectionTrait,
    org_id: OrgId,
    id: SolutionId,
) -> Result<(solution::Model, Definition)> {
    let row = own(org_id, id).lock_shared().one(conn).await?.ok_or(Error::NotFound("solution"))?;
    if row.latest_version == 0 {
        return Err(Error::NotFound("solution"));
    }
    let definition = versions_unscoped(conn, &[(row.id, row.latest_version)])
        .await?
        .remove(&(row.id, row.latest_version))
        .ok_or_else(|| Error::internal(anyhow::anyhow!("solution {} lost a version", row.id)))?;
    Ok((row, definition))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn slot(value_type: ValueType, choices: Vec<JsonText>) -> ConfigSlot {
        ConfigSlot {
            external_id: "s".into(),
            title: "S".into(),
            value_type,
            default_value: None,
            choices,
            hidden: false,
            required: false,
        }
    }

    #[test]
    fn config_values_must_parse_as_their_slot_type() {
        let cases = [
            (ValueType::String, json!("x"), json!(1)),
            (ValueType::Number, json!(1.5), json!("1")),
            (ValueType::Boolean, json!(true), json!("true")),
            (ValueType::Object, json!({"a": 1}), json!([1])),
            (ValueType::Array, json!([1]), json!({})),
        ];
        for (value_type, good, bad) in cases {
            assert!(check_value(&slot(value_type, vec![]), &good).is_ok(), "{value_type:?} {good}");
            assert!(check_value(&slot(value_type, vec![]), &bad).is_err(), "{value_type:?} {bad}");
        }
        let choice = slot(ValueType::Choice, vec![json!("eu").into(), JsonText::parse("us").unwrap()]);
        assert!(check_value(&choice, &json!("eu")).is_ok());
        assert!(check_value(&choice, &json!("us")).is_ok());
        assert!(check_value(&choice, &json!("EU")).is_err());
    }

    #[test]
    fn workflows_keep_their_ids_by_name() {
        let first = workflows(vec!["Sync".into(), "Notify".into()], &[]);
        let second = workflows(vec!["Notify".into(), "Archive".into()], &first);
        assert_eq!(second[0].id, first[1].id);
        assert_ne!(second[1].id, first[0].id);
    }
}

//! Solutions and solution instances: `viewer.solutions`, `viewer.solutionInstances`,
//! `createSolutionInstance`, `updateSolutionInstance`, `upgradeSolutionInstance`,
//! `removeSolutionInstance`, and (ext) the master token's solution mutations.

use async_graphql::{
    Context, Enum, ID, InputObject, Object, Result, SimpleObject,
    connection::{Connection, Edge},
};
use sha2::{Digest, Sha256};

use super::{
    connection::{
        NamedConnection, SolutionConnectionName, SolutionEdgeName, SolutionInstanceConnectionName,
        SolutionInstanceEdgeName, WorkflowInstanceConnectionName, WorkflowInstanceEdgeName, from_page,
    },
    db,
    guard::{Token, access},
    idempotency, page_request, principal,
    scalars::{DateTime, Json},
};
use crate::{
    auth::Access,
    domain::{
        instances::{self, Values},
        pagination::{Page, encode_cursor},
        solutions::{self, ValueType},
    },
    error::Error,
    ids::{InstanceId, SolutionId, UserId},
};

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "ValueType")]
pub enum ConfigValueType {
    String,
    Number,
    Boolean,
    Object,
    Array,
    /// One of the slot's `choices`.
    Choice,
}

#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "CustomFieldInput")]
pub struct CustomField {
    pub key: String,
    pub value: String,
}

#[derive(SimpleObject)]
pub struct AuthSlot {
    pub external_id: String,
    pub title: String,
    pub service_id: ID,
    pub service_environment_id: Option<ID>,
    pub scopes: Vec<String>,
    pub hidden: bool,
    pub required: bool,
}

#[derive(SimpleObject)]
pub struct ConfigSlot {
    pub external_id: String,
    pub title: String,
    pub value_type: ConfigValueType,
    /// The JSON text `null` when the slot has no default.
    pub default_value: Json,
    pub choices: Vec<Json>,
    pub hidden: bool,
    pub required: bool,
}

/// A workflow a solution declares.
#[derive(SimpleObject)]
pub struct SolutionWorkflow {
    pub id: ID,
    pub name: String,
}

#[derive(SimpleObject)]
pub struct Solution {
    pub id: ID,
    pub title: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub custom_fields: Vec<CustomField>,
    pub config_slots: Vec<ConfigSlot>,
    pub auth_slots: Vec<AuthSlot>,
    /// (ext)
    pub workflows: Vec<SolutionWorkflow>,
    /// (ext) The latest published version (0 before the first publish). Lists show that
    /// version; the master token's mutations and `includeDrafts` show the draft.
    pub version: i32,
}

fn solution(id: SolutionId, definition: solutions::Definition, version: i32) -> Solution {
    Solution {
        id: ID(id.to_string()),
        title: definition.title,
        description: definition.description,
        tags: definition.tags,
        custom_fields: definition
            .custom_fields
            .into_iter()
            .map(|f| CustomField { key: f.key, value: f.value })
            .collect(),
        config_slots: definition
            .config_slots
            .into_iter()
            .map(|slot| ConfigSlot {
                external_id: slot.external_id,
                title: slot.title,
                value_type: slot.value_type.into(),
                default_value: slot.default_value.map_or_else(|| Json::from(serde_json::Value::Null), Json),
                choices: slot.choices.into_iter().map(Json).collect(),
                hidden: slot.hidden,
                required: slot.required,
            })
            .collect(),
        auth_slots: definition
            .auth_slots
            .into_iter()
            .map(|slot| AuthSlot {
                external_id: slot.external_id,
                title: slot.title,
                service_id: ID(slot.service_id.to_string()),
                service_environment_id: slot.service_environment_id.map(|id| ID(id.to_string())),
                scopes: slot.scopes,
                hidden: slot.hidden,
                required: slot.required,
            })
            .collect(),
        workflows: definition
            .workflows
            .into_iter()
            .map(|w| SolutionWorkflow { id: ID(w.id.to_string()), name: w.name })
            .collect(),
        version,
    }
}

impl From<solutions::Solution> for Solution {
    fn from(s: solutions::Solution) -> Self {
        solution(s.id, s.definition, s.version)
    }
}

pub type SolutionConnection = NamedConnection<Solution, SolutionConnectionName, SolutionEdgeName>;

#[derive(SimpleObject)]
pub struct AuthSlotValue {
    pub external_id: String,
    pub auth_id: String,
}

#[derive(SimpleObject)]
pub struct ConfigSlotValue {
    pub external_id: String,
    /// Never `null` in latchkey (a cleared value is no entry); nullable as published.
    pub value: Option<Json>,
}

#[derive(SimpleObject)]
pub struct WorkflowInstance {
    pub id: ID,
    pub source_workflow_id: String,
    pub source_workflow_name: String,
    /// Set once the workflow has a trigger URL; `null` until then.
    pub trigger_url: Option<String>,
}

pub type WorkflowInstanceConnection =
    NamedConnection<WorkflowInstance, WorkflowInstanceConnectionName, WorkflowInstanceEdgeName>;

#[derive(SimpleObject)]
pub struct SolutionInstanceSolutionVersionFlags {
    pub has_newer_version: bool,
    pub requires_user_input_to_update_version: bool,
    pub requires_system_input_to_update_version: bool,
}

#[derive(SimpleObject)]
pub struct SolutionInstance {
    pub id: ID,
    pub name: String,
    pub enabled: bool,
    pub created: DateTime,
    /// The owning end user's id.
    pub owner: String,
    /// The solution as of this instance's version.
    pub solution: Solution,
    /// (ext) The published version the instance was made from or upgraded to.
    pub solution_version: i32,
    pub auth_values: Vec<AuthSlotValue>,
    pub config_values: Vec<ConfigSlotValue>,
    pub workflows: WorkflowInstanceConnection,
    pub solution_version_flags: SolutionInstanceSolutionVersionFlags,
}

/// A workflow instance's id: stable, derived from the instance and the workflow.
fn workflow_instance_id(instance: uuid::Uuid, workflow: uuid::Uuid) -> uuid::Uuid {
    let digest = Sha256::digest([instance.as_bytes().as_slice(), workflow.as_bytes()].concat());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

impl From<instances::Instance> for SolutionInstance {
    fn from(instance: instances::Instance) -> Self {
        let mut workflows = Connection::new(false, false);
        workflows.edges = instance
            .workflows()
            .iter()
            .map(|w| {
                let id = workflow_instance_id(instance.id.0, w.id);
                let node = WorkflowInstance {
                    id: ID(id.to_string()),
                    source_workflow_id: w.id.to_string(),
                    source_workflow_name: w.name.clone(),
                    trigger_url: None,
                };
                Edge::new(encode_cursor(id), node)
            })
            .collect();
        Self {
            id: ID(instance.id.to_string()),
            name: instance.name,
            enabled: instance.enabled,
            created: DateTime(instance.created_at),
            owner: instance.owner.to_string(),
            solution: solution(instance.solution_id, instance.definition, instance.version),
            solution_version: instance.version,
            auth_values: instance
                .auth_values
                .into_iter()
                .map(|(external_id, id)| AuthSlotValue { external_id, auth_id: id.to_string() })
                .collect(),
            config_values: instance
                .config_values
                .into_iter()
                .map(|(external_id, value)| ConfigSlotValue { external_id, value: Some(Json(value)) })
                .collect(),
            workflows,
            solution_version_flags: SolutionInstanceSolutionVersionFlags {
                has_newer_version: instance.flags.has_newer_version,
                requires_user_input_to_update_version: instance.flags.requires_user_input,
                requires_system_input_to_update_version: instance.flags.requires_system_input,
            },
        }
    }
}

#[derive(SimpleObject)]
pub struct SolutionInstanceTotal {
    /// How many instances match the criteria, over all pages.
    pub total_count: i64,
}

pub type SolutionInstanceConnection = Connection<
    String,
    SolutionInstance,
    SolutionInstanceTotal,
    async_graphql::connection::EmptyFields,
    SolutionInstanceConnectionName,
    SolutionInstanceEdgeName,
    async_graphql::connection::DisableNodesField,
>;

#[derive(InputObject, Default)]
pub struct SolutionSearchCriteria {
    /// Solutions carrying every one of these tags.
    pub tags: Option<Vec<String>>,
    /// (ext) Master token only: list unpublished drafts too, every solution as drafted.
    pub include_drafts: Option<bool>,
}

#[derive(InputObject, Default)]
pub struct SolutionInstanceSearchCriteria {
    pub id: Option<String>,
    pub ids: Option<Vec<ID>>,
    pub name: Option<String>,
    /// Master token only: the owning end user.
    pub owner: Option<String>,
    pub solution_id: Option<String>,
}

#[derive(InputObject)]
pub struct AuthValue {
    pub external_id: String,
    pub auth_id: String,
}

#[derive(InputObject)]
pub struct ConfigValue {
    pub external_id: String,
    /// `null` clears the value.
    pub value: Option<Json>,
}

fn values(auth: Option<Vec<AuthValue>>, config: Option<Vec<ConfigValue>>) -> Values {
    Values {
        auth: auth.unwrap_or_default().into_iter().map(|v| (v.external_id, v.auth_id)).collect(),
        config: config.unwrap_or_default().into_iter().map(|v| (v.external_id, v.value.map(|json| json.0))).collect(),
    }
}

#[derive(InputObject)]
pub struct CreateSolutionInstanceInput {
    pub solution_id: ID,
    pub instance_name: String,
    pub auth_values: Option<Vec<AuthValue>>,
    pub config_values: Option<Vec<ConfigValue>>,
    pub client_mutation_id: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateSolutionInstanceInput {
    pub solution_instance_id: ID,
    pub instance_name: Option<String>,
    pub enabled: Option<bool>,
    pub auth_values: Option<Vec<AuthValue>>,
    pub config_values: Option<Vec<ConfigValue>>,
    /// Refuse to enable while a required slot has no value.
    pub error_on_enabling_with_missing_values: Option<bool>,
    pub client_mutation_id: Option<String>,
}

#[derive(InputObject)]
pub struct UpgradeSolutionInstanceInput {
    pub solution_instance_id: ID,
    pub auth_values: Option<Vec<AuthValue>>,
    pub config_values: Option<Vec<ConfigValue>>,
    pub client_mutation_id: Option<String>,
}

#[derive(InputObject)]
pub struct RemoveSolutionInstanceInput {
    pub solution_instance_id: ID,
    pub client_mutation_id: Option<String>,
}

/// The payload of a mutation that answers with the instance.
macro_rules! instance_payload {
    ($name:ident) => {
        #[derive(SimpleObject)]
        pub struct $name {
            pub solution_instance: SolutionInstance,
            pub client_mutation_id: Option<String>,
        }
    };
}
instance_payload!(CreateSolutionInstancePayload);
instance_payload!(UpdateSolutionInstancePayload);
instance_payload!(UpgradeSolutionInstancePayload);
client_mutation_id_payload!(RemoveSolutionInstancePayload);

#[derive(InputObject)]
pub struct AuthSlotInput {
    pub external_id: String,
    pub title: String,
    pub service_id: ID,
    pub service_environment_id: Option<ID>,
    pub scopes: Option<Vec<String>>,
    pub hidden: Option<bool>,
    pub required: Option<bool>,
}

#[derive(InputObject)]
pub struct ConfigSlotInput {
    pub external_id: String,
    pub title: String,
    pub value_type: ConfigValueType,
    pub default_value: Option<Json>,
    pub choices: Option<Vec<Json>>,
    pub hidden: Option<bool>,
    pub required: Option<bool>,
}

#[derive(InputObject)]
pub struct WorkflowInput {
    pub name: String,
}

fn auth_slots(slots: Vec<AuthSlotInput>) -> Result<Vec<solutions::AuthSlot>, Error> {
    slots
        .into_iter()
        .map(|slot| {
            Ok(solutions::AuthSlot {
                external_id: slot.external_id,
                title: slot.title,
                service_id: crate::ids::ServiceId::parse(&slot.service_id)?.0,
                service_environment_id: slot
                    .service_environment_id
                    .as_deref()
                    .map(|id| crate::ids::EnvironmentId::parse(id).map(|id| id.0))
                    .transpose()?,
                scopes: slot.scopes.unwrap_or_default(),
                hidden: slot.hidden.unwrap_or(false),
                required: slot.required.unwrap_or(false),
            })
        })
        .collect()
}

fn config_slots(slots: Vec<ConfigSlotInput>) -> Vec<solutions::ConfigSlot> {
    slots
        .into_iter()
        .map(|slot| solutions::ConfigSlot {
            external_id: slot.external_id,
            title: slot.title,
            value_type: slot.value_type.into(),
            default_value: slot.default_value.map(|json| json.0).filter(|v| !v.value().is_null()),
            choices: slot.choices.unwrap_or_default().into_iter().map(|json| json.0).collect(),
            hidden: slot.hidden.unwrap_or(false),
            required: slot.required.unwrap_or(false),
        })
        .collect()
}

fn custom_fields(fields: Vec<CustomField>) -> Vec<solutions::CustomField> {
    fields.into_iter().map(|f| solutions::CustomField { key: f.key, value: f.value }).collect()
}

#[derive(InputObject)]
pub struct CreateSolutionInput {
    pub title: String,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub custom_fields: Option<Vec<CustomField>>,
    pub auth_slots: Option<Vec<AuthSlotInput>>,
    pub config_slots: Option<Vec<ConfigSlotInput>>,
    pub workflows: Option<Vec<WorkflowInput>>,
    pub client_mutation_id: Option<String>,
}

/// Changes the draft; lists given replace the draft's lists.
#[derive(InputObject)]
pub struct UpdateSolutionInput {
    pub solution_id: ID,
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub custom_fields: Option<Vec<CustomField>>,
    pub auth_slots: Option<Vec<AuthSlotInput>>,
    pub config_slots: Option<Vec<ConfigSlotInput>>,
    pub workflows: Option<Vec<WorkflowInput>>,
    pub client_mutation_id: Option<String>,
}

/// Input of the mutations that act on one solution as a whole.
macro_rules! solution_id_input {
    ($name:ident) => {
        #[derive(InputObject)]
        pub struct $name {
            pub solution_id: ID,
            pub client_mutation_id: Option<String>,
        }
    };
}
solution_id_input!(PublishSolutionInput);
solution_id_input!(RemoveSolutionInput);

/// The payload of a mutation that answers with the solution.
macro_rules! solution_payload {
    ($name:ident) => {
        #[derive(SimpleObject)]
        pub struct $name {
            pub solution: Solution,
            pub client_mutation_id: Option<String>,
        }
    };
}
solution_payload!(CreateSolutionPayload);
solution_payload!(UpdateSolutionPayload);
solution_payload!(PublishSolutionPayload);
client_mutation_id_payload!(RemoveSolutionPayload);

fn workflow_names(workflows: Vec<WorkflowInput>) -> Vec<String> {
    workflows.into_iter().map(|w| w.name).collect()
}

#[derive(Default)]
pub struct ViewerSolutions;

#[Object]
impl ViewerSolutions {
    /// What can be activated: published solutions at their latest version. The master token
    /// sees drafts with `criteria.includeDrafts`.
    #[graphql(guard = "Access::MasterOrUser", directive = access::apply(Token::MasterOrUser), complexity = "crate::graphql::connection::page_complexity(first, last, child_complexity)")]
    async fn solutions(
        &self,
        ctx: &Context<'_>,
        criteria: Option<SolutionSearchCriteria>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<SolutionConnection> {
        let caller = principal(ctx).caller()?;
        let criteria = criteria.unwrap_or_default();
        let (tags, drafts) = (criteria.tags.unwrap_or_default(), criteria.include_drafts.unwrap_or(false));
        let page = solutions::list(db(ctx), caller, &tags, drafts, &page_request(first, after, last, before)?).await?;
        Ok(from_page(page, |s| s.id.0, Solution::from))
    }

    /// A user token lists its own instances; the master token all of the organization's.
    #[graphql(guard = "Access::MasterOrUser", directive = access::apply(Token::MasterOrUser), complexity = "crate::graphql::connection::page_complexity(first, last, child_complexity)")]
    async fn solution_instances(
        &self,
        ctx: &Context<'_>,
        criteria: Option<SolutionInstanceSearchCriteria>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<SolutionInstanceConnection> {
        let caller = principal(ctx).caller()?;
        let page = page_request(first, after, last, before)?;
        let criteria = criteria.unwrap_or_default();
        let criteria = instances::Criteria {
            id: criteria.id.as_deref().map(InstanceId::parse).transpose()?,
            ids: criteria
                .ids
                .map(|ids| ids.iter().map(|id| InstanceId::parse(id)).collect::<Result<Vec<_>, _>>())
                .transpose()?,
            name: criteria.name,
            owner: criteria.owner.as_deref().map(UserId::parse).transpose()?,
            solution_id: criteria.solution_id.as_deref().map(SolutionId::parse).transpose()?,
        };
        let (page, total) = instances::list(db(ctx), caller, criteria, &page).await?;
        Ok(instance_connection(page, total))
    }
}

fn instance_connection(page: Page<instances::Instance>, total: u64) -> SolutionInstanceConnection {
    let total_count = i64::try_from(total).unwrap_or(i64::MAX);
    let mut connection = Connection::with_additional_fields(
        page.has_previous_page,
        page.has_next_page,
        SolutionInstanceTotal { total_count },
    );
    connection.edges =
        page.items.into_iter().map(|instance| Edge::new(encode_cursor(instance.id.0), instance.into())).collect();
    connection
}

#[derive(Default)]
pub struct SolutionsMutation;

#[Object]
impl SolutionsMutation {
    /// Makes a disabled instance of the latest published version, with its values, in one transaction.
    #[graphql(guard = "Access::User", directive = access::apply(Token::User))]
    async fn create_solution_instance(
        &self,
        ctx: &Context<'_>,
        input: CreateSolutionInstanceInput,
    ) -> Result<CreateSolutionInstancePayload> {
        let scope = principal(ctx).user()?;
        let new = instances::NewInstance {
            solution_id: SolutionId::parse(&input.solution_id)?,
            name: input.instance_name,
            values: values(input.auth_values, input.config_values),
        };
        let instance = instances::create(db(ctx), scope, new, idempotency(ctx)).await?;
        Ok(CreateSolutionInstancePayload {
            solution_instance: instance.into(),
            client_mutation_id: input.client_mutation_id,
        })
    }

    /// Renames, enables or disables, and merges values per `externalId`.
    #[graphql(guard = "Access::User", directive = access::apply(Token::User))]
    async fn update_solution_instance(
        &self,
        ctx: &Context<'_>,
        input: UpdateSolutionInstanceInput,
    ) -> Result<UpdateSolutionInstancePayload> {
        let scope = principal(ctx).user()?;
        let patch = instances::InstancePatch {
            name: input.instance_name,
            enabled: input.enabled,
            values: values(input.auth_values, input.config_values),
            error_on_enabling_with_missing_values: input.error_on_enabling_with_missing_values.unwrap_or(false),
        };
        let id = InstanceId::parse(&input.solution_instance_id)?;
        let instance = instances::update(db(ctx), scope, id, patch).await?;
        Ok(UpdateSolutionInstancePayload {
            solution_instance: instance.into(),
            client_mutation_id: input.client_mutation_id,
        })
    }

    /// Moves the instance to the latest published version, applying the given values.
    #[graphql(guard = "Access::User", directive = access::apply(Token::User))]
    async fn upgrade_solution_instance(
        &self,
        ctx: &Context<'_>,
        input: UpgradeSolutionInstanceInput,
    ) -> Result<UpgradeSolutionInstancePayload> {
        let scope = principal(ctx).user()?;
        let id = InstanceId::parse(&input.solution_instance_id)?;
        let instance = instances::upgrade(db(ctx), scope, id, values(input.auth_values, input.config_values)).await?;
        Ok(UpgradeSolutionInstancePayload {
            solution_instance: instance.into(),
            client_mutation_id: input.client_mutation_id,
        })
    }

    #[graphql(guard = "Access::User", directive = access::apply(Token::User))]
    async fn remove_solution_instance(
        &self,
        ctx: &Context<'_>,
        input: RemoveSolutionInstanceInput,
    ) -> Result<RemoveSolutionInstancePayload> {
        let scope = principal(ctx).user()?;
        instances::remove(db(ctx), scope, InstanceId::parse(&input.solution_instance_id)?).await?;
        Ok(RemoveSolutionInstancePayload { client_mutation_id: input.client_mutation_id })
    }

    /// (ext) Creates a solution as an unpublished draft.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn create_solution(&self, ctx: &Context<'_>, input: CreateSolutionInput) -> Result<CreateSolutionPayload> {
        let scope = principal(ctx).master()?;
        let new = solutions::SolutionInput {
            title: input.title,
            description: input.description,
            tags: input.tags.unwrap_or_default(),
            custom_fields: custom_fields(input.custom_fields.unwrap_or_default()),
            auth_slots: auth_slots(input.auth_slots.unwrap_or_default())?,
            config_slots: config_slots(input.config_slots.unwrap_or_default()),
            workflow_names: workflow_names(input.workflows.unwrap_or_default()),
        };
        let created = solutions::create(db(ctx), scope, new, idempotency(ctx)).await?;
        Ok(CreateSolutionPayload { solution: created.into(), client_mutation_id: input.client_mutation_id })
    }

    /// (ext) Edits the draft; instances see changes only once published.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn update_solution(&self, ctx: &Context<'_>, input: UpdateSolutionInput) -> Result<UpdateSolutionPayload> {
        let scope = principal(ctx).master()?;
        let patch = solutions::SolutionPatch {
            title: input.title,
            description: input.description,
            tags: input.tags,
            custom_fields: input.custom_fields.map(custom_fields),
            auth_slots: input.auth_slots.map(auth_slots).transpose()?,
            config_slots: input.config_slots.map(config_slots),
            workflow_names: input.workflows.map(workflow_names),
        };
        let updated = solutions::update(db(ctx), scope, SolutionId::parse(&input.solution_id)?, patch).await?;
        Ok(UpdateSolutionPayload { solution: updated.into(), client_mutation_id: input.client_mutation_id })
    }

    /// (ext) Publishes the draft as the next version.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn publish_solution(&self, ctx: &Context<'_>, input: PublishSolutionInput) -> Result<PublishSolutionPayload> {
        let scope = principal(ctx).master()?;
        let published = solutions::publish(db(ctx), scope, SolutionId::parse(&input.solution_id)?).await?;
        Ok(PublishSolutionPayload { solution: published.into(), client_mutation_id: input.client_mutation_id })
    }

    /// (ext) Removes a solution; CONFLICT while it has instances.
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn remove_solution(&self, ctx: &Context<'_>, input: RemoveSolutionInput) -> Result<RemoveSolutionPayload> {
        let scope = principal(ctx).master()?;
        solutions::remove(db(ctx), scope, SolutionId::parse(&input.solution_id)?).await?;
        Ok(RemoveSolutionPayload { client_mutation_id: input.client_mutation_id })
    }
}

//! `organizationSettings` and `updateOrganizationSettings` (ext): the brand and allowed
//! origins of the organization's hosted pages.

use async_graphql::{Context, InputObject, MaybeUndefined, Object, Result, SimpleObject};

use super::{
    guard::{Token, access},
    principal, unscoped_db,
};
use crate::{
    auth::Access,
    domain::org_settings::{self, SettingsPatch},
};

/// How the organization's hosted pages look, and which partner origins they may post
/// window messages to (ext).
#[derive(SimpleObject)]
pub struct OrganizationSettings {
    /// Shown on the pages instead of the organization's name.
    pub display_name: Option<String>,
    /// An `https` URL of the logo the pages show.
    pub logo_url: Option<String>,
    /// `#rrggbb`, lower case.
    pub accent_color: Option<String>,
    /// Exact origins (`scheme://host[:port]`) the pages post their messages to.
    pub allowed_origins: Vec<String>,
}

impl From<org_settings::OrgSettings> for OrganizationSettings {
    fn from(settings: org_settings::OrgSettings) -> Self {
        Self {
            display_name: settings.display_name,
            logo_url: settings.logo_url,
            accent_color: settings.accent_color,
            allowed_origins: settings.allowed_origins,
        }
    }
}

/// A field left out keeps its value; `null` clears it. `allowedOrigins` replaces the list.
#[derive(InputObject)]
pub struct UpdateOrganizationSettingsInput {
    /// At most 100 characters.
    pub display_name: MaybeUndefined<String>,
    /// An absolute `https` URL without credentials, at most 2048 characters.
    pub logo_url: MaybeUndefined<String>,
    /// `#rrggbb`.
    pub accent_color: MaybeUndefined<String>,
    /// At most 20 origins, each `scheme://host[:port]` with `http` or `https`.
    pub allowed_origins: Option<Vec<String>>,
    pub client_mutation_id: Option<String>,
}

#[derive(SimpleObject)]
pub struct UpdateOrganizationSettingsPayload {
    pub organization_settings: OrganizationSettings,
    pub client_mutation_id: Option<String>,
}

fn patch_field(value: MaybeUndefined<String>) -> Option<Option<String>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(value) => Some(Some(value)),
    }
}

#[derive(Default)]
pub struct OrgSettingsQuery;

#[Object]
impl OrgSettingsQuery {
    /// The organization's hosted-page settings (ext).
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn organization_settings(&self, ctx: &Context<'_>) -> Result<OrganizationSettings> {
        let scope = principal(ctx).master()?;
        Ok(org_settings::get(unscoped_db(ctx), scope.into()).await?.into())
    }
}

#[derive(Default)]
pub struct OrgSettingsMutation;

#[Object]
impl OrgSettingsMutation {
    /// Changes the organization's hosted-page settings (ext).
    #[graphql(guard = "Access::Master", directive = access::apply(Token::Master))]
    async fn update_organization_settings(
        &self,
        ctx: &Context<'_>,
        input: UpdateOrganizationSettingsInput,
    ) -> Result<UpdateOrganizationSettingsPayload> {
        let scope = principal(ctx).master()?;
        let patch = SettingsPatch {
            display_name: patch_field(input.display_name),
            logo_url: patch_field(input.logo_url),
            accent_color: patch_field(input.accent_color),
            allowed_origins: input.allowed_origins,
        };
        let settings = org_settings::update(unscoped_db(ctx), scope, patch).await?;
        Ok(UpdateOrganizationSettingsPayload {
            organization_settings: settings.into(),
            client_mutation_id: input.client_mutation_id,
        })
    }
}

//! Hosted-page sessions. Opening a page redeems the authorization code, checks the page's
//! target against its end user and starts the session, all in one transaction, so a code
//! that opens nothing (a missing or foreign target) stays unused. A page saves through
//! [`save`]: once per form, in one transaction with everything the form changes.

use std::collections::BTreeMap;

use sea_orm::{DatabaseConnection, DatabaseTransaction};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    audit,
    authentications::{self, NewAuthentication},
    catalog,
    expiry::Timing,
    instances, orgs,
};
use crate::{
    auth::{Caller, UserScope, page_sessions},
    crypto::KeyringHandle,
    error::{Error, Result},
    ids::{AuthenticationId, EnvironmentId, InstanceId, OrgId, ServiceId},
};

pub use crate::auth::page_sessions::PageSession;

/// What a page session may show and change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageTarget {
    /// The auth dialog for one service environment.
    CreateAuthentication { service_id: ServiceId, environment_id: EnvironmentId },
    /// The auth dialog for one auth slot of an instance.
    SlotAuthentication { instance_id: InstanceId, external_id: String },
    /// The dialog that edits one authentication.
    EditAuthentication { authentication_id: AuthenticationId },
    /// The config wizard of one instance (and the auth forms it opens).
    ConfigureInstance { instance_id: InstanceId },
}

impl PageTarget {
    /// The canonical form a session is bound to.
    pub fn key(&self) -> String {
        match self {
            PageTarget::CreateAuthentication { service_id, environment_id } => {
                format!("auth.create/{service_id}/{environment_id}")
            }
            PageTarget::SlotAuthentication { instance_id, external_id } => {
                format!("auth.slot/{instance_id}/{external_id}")
            }
            PageTarget::EditAuthentication { authentication_id } => format!("auth.edit/{authentication_id}"),
            PageTarget::ConfigureInstance { instance_id } => format!("configure/{instance_id}"),
        }
    }

    /// The target whose [`key`](Self::key) is `key`, for what keeps a target by its key
    /// (an OAuth flow's row). An auth slot's externalId is the key's rest, slashes and all.
    pub fn from_key(key: &str) -> Option<Self> {
        let (kind, rest) = key.split_once('/')?;
        let target = match (kind, rest.split('/').collect::<Vec<_>>().as_slice()) {
            ("auth.create", [service_id, environment_id]) => PageTarget::CreateAuthentication {
                service_id: ServiceId::parse(service_id).ok()?,
                environment_id: EnvironmentId::parse(environment_id).ok()?,
            },
            ("auth.slot", [instance_id, _, ..]) => PageTarget::SlotAuthentication {
                instance_id: InstanceId::parse(instance_id).ok()?,
                external_id: rest.split_once('/')?.1.to_owned(),
            },
            ("auth.edit", [id]) => {
                PageTarget::EditAuthentication { authentication_id: AuthenticationId::parse(id).ok()? }
            }
            ("configure", [id]) => PageTarget::ConfigureInstance { instance_id: InstanceId::parse(id).ok()? },
            _ => return None,
        };
        Some(target)
    }
}

/// A page opened: its organization and the token for the session cookie.
pub struct Opened {
    pub org_id: OrgId,
    pub token: SecretString,
}

/// Why a page does not open. `CodeRefused` covers unknown, used, expired and foreign
/// codes alike, so the page tells nothing about codes it did not issue.
#[derive(Debug)]
pub enum OpenError {
    CodeRefused,
    Other(Error),
}

impl From<Error> for OpenError {
    fn from(err: Error) -> Self {
        OpenError::Other(err)
    }
}

impl From<sea_orm::DbErr> for OpenError {
    fn from(err: sea_orm::DbErr) -> Self {
        OpenError::Other(err.into())
    }
}

/// Redeems `code` for a session of the page `target` of the organization `partner`.
pub async fn open(
    db: &DatabaseConnection,
    partner: &str,
    code: &str,
    target: &PageTarget,
) -> std::result::Result<Opened, OpenError> {
    let org = orgs::by_name_or_id(db, partner).await?;
    let txn = crate::db::write(db).await?;
    let scope = page_sessions::redeem(&txn, org.id, code).await?.ok_or(OpenError::CodeRefused)?;
    check_target(&txn, &scope, target).await?;
    let token = page_sessions::create(&txn, &scope, &target.key()).await?;
    audit::record(&txn, org.id, (&scope).into(), "page_session.opened", Some(scope.user_id().0)).await?;
    txn.commit().await?;
    Ok(Opened { org_id: org.id, token })
}

/// The live session `token` for `target` in the organization `partner`.
pub async fn resume(
    db: &DatabaseConnection,
    partner: &str,
    token: &str,
    target: &PageTarget,
) -> Result<Option<PageSession>> {
    let org = orgs::by_name_or_id(db, partner).await?;
    page_sessions::resolve(db, org.id, token, &target.key()).await
}

/// A target the end user cannot see is `NOT_FOUND`, as a missing one.
async fn check_target(conn: &DatabaseTransaction, scope: &UserScope, target: &PageTarget) -> Result<()> {
    let caller = Caller::User(scope);
    match target {
        PageTarget::CreateAuthentication { service_id, environment_id } => {
            let environment = catalog::environment(conn, caller, *environment_id).await?;
            if environment.service_id != *service_id {
                return Err(Error::NotFound("service environment"));
            }
        }
        PageTarget::SlotAuthentication { instance_id, external_id } => {
            instances::slot_environment(conn, scope, *instance_id, external_id).await?;
        }
        PageTarget::EditAuthentication { authentication_id } => {
            authentications::get(conn, caller, *authentication_id).await?;
        }
        PageTarget::ConfigureInstance { instance_id } => {
            instances::get(conn, caller, *instance_id).await?;
        }
    }
    Ok(())
}

/// What a multi-step page has been given so far, and what each of a session's forms saved.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Draft {
    /// Form values by control name, as sent.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// What each form saved, by the form's key: the same form sent again finds it here.
    #[serde(default)]
    pub saved: BTreeMap<String, Uuid>,
}

/// The largest draft kept, serialized; the body limit bounds each post, this the sum.
const MAX_DRAFT_BYTES: usize = 256 * 1024;
/// Forms one session may save (the wizard's new authentications and its finish).
const MAX_SAVED_FORMS: usize = 50;

fn parse_draft(text: Option<String>) -> Result<Draft> {
    text.map_or_else(|| Ok(Draft::default()), |text| serde_json::from_str(&text).map_err(Error::internal))
}

async fn store(txn: &DatabaseTransaction, session: &PageSession, draft: &Draft) -> Result<()> {
    let text = serde_json::to_string(draft).map_err(Error::internal)?;
    if text.len() > MAX_DRAFT_BYTES || draft.saved.len() > MAX_SAVED_FORMS {
        return Err(Error::bad_input("this window has been given more than it keeps; start again from the app"));
    }
    page_sessions::store_draft(txn, session, text).await
}

/// The session's draft.
pub async fn draft(db: &DatabaseConnection, session: &PageSession) -> Result<Draft> {
    parse_draft(page_sessions::draft(db, session, false).await?)
}

/// Adds `values` to the session's draft (a later value of a control replaces it).
pub async fn remember(db: &DatabaseConnection, session: &PageSession, values: BTreeMap<String, String>) -> Result<()> {
    let txn = crate::db::write(db).await?;
    let mut draft = parse_draft(page_sessions::draft(&txn, session, true).await?)?;
    draft.values.extend(values);
    store(&txn, session, &draft).await?;
    txn.commit().await?;
    Ok(())
}

/// What a page's form saves.
pub enum Save {
    /// A new authentication; with a slot, also the instance's value for that slot.
    Create {
        new: NewAuthentication,
        slot: Option<(InstanceId, String)>,
    },
    /// A new authentication, picked in the session's draft under `control` (the wizard
    /// sets it on the instance when it finishes).
    CreateForDraft {
        new: NewAuthentication,
        control: String,
    },
    Edit {
        id: AuthenticationId,
        edit: authentications::Edit,
    },
    /// New tokens from a provider for an authentication, which keeps its id, name and owner.
    Reconnect {
        id: AuthenticationId,
        reconnect: authentications::Reconnect,
    },
    /// The wizard's values, through the same update as `updateSolutionInstance`, or the
    /// same upgrade as `upgradeSolutionInstance`.
    Configure {
        id: InstanceId,
        values: instances::Values,
        upgrade: bool,
    },
}

/// Saves a form of the session: everything it changes in one transaction with the record
/// that `form` saved it, so the same form sent again, or twice at once, saves once and
/// answers the same id (the authentication's, or the instance's).
pub async fn save(
    db: &DatabaseConnection,
    keyring: &KeyringHandle,
    timing: Timing,
    session: &PageSession,
    form: &str,
    save: Save,
) -> Result<Uuid> {
    let txn = crate::db::write(db).await?;
    // Locked: of two posts of one session, the second waits here and then finds the first.
    let mut draft = parse_draft(page_sessions::draft(&txn, session, true).await?)?;
    if let Some(saved) = draft.saved.get(form) {
        return Ok(*saved);
    }
    let scope = &session.scope;
    let caller = Caller::User(scope);
    let saved = match save {
        Save::Create { new, slot } => {
            let id = AuthenticationId::generate();
            authentications::insert(&txn, &keyring.current(), timing, caller, id, new).await?;
            if let Some((instance_id, external_id)) = slot {
                let values = instances::Values { auth: vec![(external_id, id.to_string())], config: Vec::new() };
                instances::update_in(
                    &txn,
                    scope,
                    instance_id,
                    instances::InstancePatch { values, ..Default::default() },
                )
                .await?;
            }
            id.0
        }
        Save::CreateForDraft { new, control } => {
            let id = AuthenticationId::generate();
            authentications::insert(&txn, &keyring.current(), timing, caller, id, new).await?;
            draft.values.insert(control, id.to_string());
            id.0
        }
        Save::Edit { id, edit } => authentications::edit(&txn, keyring, timing, caller, id, edit).await?.id.0,
        Save::Reconnect { id, reconnect } => {
            authentications::reconnect(&txn, keyring, timing, caller, id, reconnect).await?.id.0
        }
        Save::Configure { id, values, upgrade: true } => {
            instances::upgrade_in(&txn, scope, id, values).await?;
            id.0
        }
        Save::Configure { id, values, upgrade: false } => {
            instances::update_in(&txn, scope, id, instances::InstancePatch { values, ..Default::default() }).await?;
            id.0
        }
    };
    draft.saved.insert(form.to_owned(), saved);
    store(&txn, session, &draft).await?;
    txn.commit().await?;
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_is_found_again_from_its_key_and_nothing_else_is() {
        let instance_id = InstanceId::generate();
        let targets = [
            PageTarget::CreateAuthentication {
                service_id: ServiceId::generate(),
                environment_id: EnvironmentId::generate(),
            },
            PageTarget::SlotAuthentication { instance_id, external_id: "crm".into() },
            PageTarget::SlotAuthentication { instance_id, external_id: "a/b c".into() },
            PageTarget::EditAuthentication { authentication_id: AuthenticationId::generate() },
            PageTarget::ConfigureInstance { instance_id },
        ];
        for target in &targets {
            assert_eq!(PageTarget::from_key(&target.key()).as_ref(), Some(target), "{}", target.key());
        }
        let create = targets[0].key();
        for other in [
            "",
            "auth.create",
            "auth.create/x/y",
            &format!("{create}/extra"),
            "other/a/b",
            &format!("auth.slot/{instance_id}"),
            "auth.slot/x/crm",
            &format!("configure/{instance_id}/more"),
            "auth.edit/",
        ] {
            assert_eq!(PageTarget::from_key(other), None, "{other}");
        }
    }
}

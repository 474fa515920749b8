//! `viewer`: the caller's own view. Later areas add their fields to [`Viewer`].

use async_graphql::{Context, MergedObject, Object, Result, SimpleObject};

use super::{
    db,
    guard::{Token, access},
    principal,
};
use crate::{
    auth::{Access, Principal},
    domain::{orgs, users},
};

/// Who the caller is.
#[derive(SimpleObject)]
pub struct UserDetails {
    /// The end user's `externalUserId`, or the organization's name for the master token.
    pub username: String,
    /// latchkey keeps no email addresses: always the empty string.
    pub email: String,
    pub name: String,
}

/// The caller's own view; each area contributes its fields.
#[derive(MergedObject, Default)]
pub struct Viewer(ViewerDetails, super::authentications::ViewerAuthentications, super::solutions::ViewerSolutions);

#[derive(Default)]
pub struct ViewerDetails;

#[Object]
impl ViewerDetails {
    #[graphql(guard = "Access::MasterOrUser", directive = access::apply(Token::MasterOrUser))]
    async fn details(&self, ctx: &Context<'_>) -> Result<UserDetails> {
        Ok(match principal(ctx) {
            Principal::User(scope) => {
                let user = users::me(db(ctx), scope).await?;
                UserDetails { username: user.external_user_id, email: String::new(), name: user.name }
            }
            other => {
                let org = orgs::get(db(ctx), other.master()?.org_id()).await?;
                UserDetails { username: org.name.clone(), email: String::new(), name: org.name }
            }
        })
    }
}

#[derive(Default)]
pub struct ViewerQuery;

#[Object]
impl ViewerQuery {
    /// The caller: an end user (user token) or the organization (master token).
    #[graphql(guard = "Access::MasterOrUser", directive = access::apply(Token::MasterOrUser))]
    async fn viewer(&self) -> Viewer {
        Viewer::default()
    }
}

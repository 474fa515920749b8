//! The published interfaces: `Node` (every object with a global `id`) and `User` (the
//! end user). Clients spread fragments on them (`... on Node { id }`), so they are part of
//! the schema even though no field returns them.

use async_graphql::{ID, Interface};

use super::{
    authentications::Authentication,
    catalog::{Service, ServiceEnvironment},
    solutions::{Solution, SolutionInstance, WorkflowInstance},
    users::ExternalUser,
};

// Registered for its type only and never built, so its size does not matter.
#[allow(clippy::large_enum_variant)]
/// An object with a global id.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "&ID"))]
pub enum Node {
    ExternalUser(ExternalUser),
    Authentication(Authentication),
    Service(Service),
    ServiceEnvironment(ServiceEnvironment),
    Solution(Solution),
    SolutionInstance(SolutionInstance),
    WorkflowInstance(WorkflowInstance),
}

/// An end user.
#[derive(Interface)]
#[graphql(name = "User", field(name = "id", ty = "&ID"))]
pub enum User {
    ExternalUser(ExternalUser),
}

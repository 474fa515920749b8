//! Relay connections with the contract's type names (`UserConnection`,
//! `UserConnectionEdge`, ...), built from a domain [`Page`].

use async_graphql::{
    OutputType,
    connection::{Connection, ConnectionNameType, DisableNodesField, Edge, EdgeNameType, EmptyFields},
};
use uuid::Uuid;

use crate::domain::pagination::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page, encode_cursor};

/// Names a connection type and its edge type.
macro_rules! connection_names {
    ($connection:ident, $edge:ident, $connection_name:literal, $edge_name:literal) => {
        pub struct $connection;
        impl ConnectionNameType for $connection {
            fn type_name<T: OutputType>() -> String {
                $connection_name.to_owned()
            }
        }
        pub struct $edge;
        impl EdgeNameType for $edge {
            fn type_name<T: OutputType>() -> String {
                $edge_name.to_owned()
            }
        }
    };
}

connection_names!(UserConnectionName, UserEdgeName, "UserConnection", "UserConnectionEdge");
connection_names!(
    AuthenticationConnectionName,
    AuthenticationEdgeName,
    "AuthenticationConnection",
    "AuthenticationEdge"
);
connection_names!(ServiceConnectionName, ServiceEdgeName, "ServiceConnection", "ServiceConnectionEdge");
connection_names!(SolutionConnectionName, SolutionEdgeName, "SolutionConnection", "SolutionConnectionEdge");
connection_names!(
    SolutionInstanceConnectionName,
    SolutionInstanceEdgeName,
    "SolutionInstanceConnection",
    "SolutionInstanceConnectionEdge"
);
connection_names!(
    WorkflowInstanceConnectionName,
    WorkflowInstanceEdgeName,
    "WorkflowInstanceConnection",
    "WorkflowInstanceConnectionEdge"
);
connection_names!(AuditEventConnectionName, AuditEventEdgeName, "AuditEventConnection", "AuditEventConnectionEdge");
connection_names!(
    WebhookEndpointConnectionName,
    WebhookEndpointEdgeName,
    "WebhookEndpointConnection",
    "WebhookEndpointConnectionEdge"
);
connection_names!(
    WebhookDeliveryConnectionName,
    WebhookDeliveryEdgeName,
    "WebhookDeliveryConnection",
    "WebhookDeliveryConnectionEdge"
);

/// A connection with the contract's names and no `nodes` shortcut field.
pub type NamedConnection<Node, Name, EdgeName, Fields = EmptyFields> =
    Connection<String, Node, Fields, EmptyFields, Name, EdgeName, DisableNodesField>;

/// Turns a page of domain values into a connection whose cursors encode each node's id.
pub fn from_page<T, Node, Name, EdgeName>(
    page: Page<T>,
    id_of: impl Fn(&T) -> Uuid,
    to_node: impl Fn(T) -> Node,
) -> NamedConnection<Node, Name, EdgeName>
where
    Node: OutputType,
    Name: ConnectionNameType,
    EdgeName: EdgeNameType,
{
    let mut connection = Connection::new(page.has_previous_page, page.has_next_page);
    connection.edges =
        page.items.into_iter().map(|item| Edge::new(encode_cursor(id_of(&item)), to_node(item))).collect();
    connection
}

/// The complexity of a connection field: what one node costs, times the nodes a page may
/// hold, so that aliases of large pages cannot multiply past the schema's complexity bound.
pub fn page_complexity(first: Option<i32>, last: Option<i32>, child_complexity: usize) -> usize {
    let size = first.or(last).map_or(DEFAULT_PAGE_SIZE, |size| u64::try_from(size).unwrap_or(0).min(MAX_PAGE_SIZE));
    let size = usize::try_from(size.max(1)).unwrap_or(usize::MAX);
    size.saturating_mul(child_complexity).saturating_add(1)
}

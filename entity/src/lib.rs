//! SeaORM entities: one module per table. These are database rows, never API types;
//! the service maps them to its own output structs so no column leaks by accident.

pub mod audit_event;
pub mod authentication;
pub mod authorization_code;
pub mod external_user;
pub mod idempotency_key;
pub mod instance_auth_value;
pub mod instance_config_value;
pub mod master_token;
pub mod oauth_flow;
pub mod organization;
pub mod organization_settings;
pub mod page_session;
pub mod server_state;
pub mod service;
pub mod service_environment;
pub mod solution;
pub mod solution_instance;
pub mod solution_version;
pub mod webhook_attempt;
pub mod webhook_delivery;
pub mod webhook_endpoint;
pub mod webhook_event;

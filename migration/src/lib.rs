//! latchkey's schema, as sea-orm-migration steps. Migrations never import the entity
//! crate and never seed data: built-in data is loaded by the service at start-up.

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_foundation;
mod m20261121_000002_catalog_and_authentications;
mod m20261121_000003_solutions;
mod m20261121_000004_idempotency;
mod m20261121_000005_organization_settings;
mod m20261121_000006_page_sessions;
mod m20261121_000007_page_session_drafts;
mod m20261122_000001_webhooks;
mod m20261122_000002_oauth_flows;
mod m20261123_000001_authentication_refresh;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_foundation::Migration),
            Box::new(m20261121_000002_catalog_and_authentications::Migration),
            Box::new(m20261121_000003_solutions::Migration),
            Box::new(m20261121_000004_idempotency::Migration),
            Box::new(m20261121_000005_organization_settings::Migration),
            Box::new(m20261121_000006_page_sessions::Migration),
            Box::new(m20261121_000007_page_session_drafts::Migration),
            Box::new(m20261122_000001_webhooks::Migration),
            Box::new(m20261122_000002_oauth_flows::Migration),
            Box::new(m20261123_000001_authentication_refresh::Migration),
        ]
    }
}

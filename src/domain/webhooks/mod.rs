//! Webhooks: an organization's endpoints ([`endpoints`]), the outbox of events written in
//! the transaction of the change they report ([`events`]), their deliveries with retries,
//! leases and the delivery log ([`deliveries`]), and the scan that warns of hard expiries
//! ([`expiry`]). Sending is [`crate::workers::webhooks`]'s.
//!
//! An event is written once, with one delivery per endpoint subscribed when the change
//! commits. A delivery is sent at least once; those of one subject (an authentication or
//! a solution instance) reach an endpoint in the order of their changes, one at a time.

pub mod deliveries;
pub mod endpoints;
pub mod events;
pub mod expiry;

pub use deliveries::RetrySchedule;

named_enum! {
    /// What happened. The names are what a payload's `type` holds.
    pub enum EventType {
        /// An authentication was imported or connected.
        AuthenticationCreated = "authentication.created",
        /// An authentication's credentials changed: replaced through the API, or refreshed.
        AuthenticationUpdated = "authentication.updated",
        /// An authentication was removed (with its end user, too).
        AuthenticationRemoved = "authentication.removed",
        /// The provider refused to refresh an authentication; it needs the end user again.
        AuthenticationRefreshFailed = "authentication.refresh_failed",
        /// An authentication will stop working within the warning window, whatever
        /// refreshes happen (its hard expiry).
        AuthenticationExpiring = "authentication.expiring",
        /// A solution instance was created.
        SolutionInstanceCreated = "solution_instance.created",
        /// A solution instance's auth or config values, or its solution version, changed.
        SolutionInstanceUpdated = "solution_instance.updated",
        /// A solution instance was enabled.
        SolutionInstanceEnabled = "solution_instance.enabled",
        /// A solution instance was disabled.
        SolutionInstanceDisabled = "solution_instance.disabled",
        /// A solution instance was removed (with its end user, too).
        SolutionInstanceRemoved = "solution_instance.removed",
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_is_documented_in_the_api_docs() {
        let docs = include_str!("../../../docs/api.md");
        for event in EventType::ALL {
            let row = format!("| `{}` |", event.as_str());
            assert!(docs.contains(&row), "docs/api.md lacks the row {row}");
            assert_eq!(EventType::parse(event.as_str()), Some(*event));
        }
        assert_eq!(EventType::parse("authentication.*"), None);
    }
}

//! Typed identifiers, so an organization id can never be passed where a user id belongs.

use uuid::Uuid;

use crate::error::Error;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUID v7), so ids sort by creation.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses client input; a malformed id is the client's mistake.
            pub fn parse(input: &str) -> Result<Self, Error> {
                Uuid::parse_str(input.trim())
                    .map(Self)
                    .map_err(|_| Error::bad_input(format!("{} is not a valid {} id", quoted(input), $what)))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

/// Quotes client input for an error message, cut short so a huge input stays small.
fn quoted(input: &str) -> String {
    const MAX: usize = 64;
    match input.char_indices().nth(MAX) {
        Some((cut, _)) => format!("\"{}…\"", &input[..cut]),
        None => format!("\"{input}\""),
    }
}

typed_id!(
    /// An organization (tenant).
    OrgId,
    "organization"
);
typed_id!(
    /// An end user of an organization.
    UserId,
    "user"
);
typed_id!(
    /// A master token (its row, not its secret).
    MasterTokenId,
    "master token"
);
typed_id!(
    /// A service of the catalog.
    ServiceId,
    "service"
);
typed_id!(
    /// An environment of a service.
    EnvironmentId,
    "service environment"
);
typed_id!(
    /// A solution (packaged integration).
    SolutionId,
    "solution"
);
typed_id!(
    /// An end user's solution instance.
    InstanceId,
    "solution instance"
);
typed_id!(
    /// An imported authentication.
    AuthenticationId,
    "authentication"
);
typed_id!(
    /// A webhook endpoint of an organization.
    WebhookEndpointId,
    "webhook endpoint"
);
typed_id!(
    /// One event on its way to one webhook endpoint.
    WebhookDeliveryId,
    "webhook delivery"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_garbage_with_a_short_message() {
        let long = "x".repeat(10_000);
        let err = UserId::parse(&long).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
        assert!(UserId::parse("not-a-uuid").is_err());
    }

    #[test]
    fn generated_ids_sort_by_creation() {
        let a = UserId::generate();
        let b = UserId::generate();
        assert!(a < b);
        assert_eq!(UserId::parse(&a.to_string()).unwrap(), a);
    }
}

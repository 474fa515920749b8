//! The one error type of the use cases. Each variant has a stable code; the GraphQL and
//! REST layers map it once each. Internal causes are logged, never sent to a client.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Declares every code a client can receive, each once, with its HTTP status and what it
/// means; `docs/api.md` lists the same table (a test compares the two).
macro_rules! codes {
    ($($(#[doc = $doc:literal])+ $variant:ident = ($name:literal, $status:literal),)+) => {
        /// Stable, greppable error codes: GraphQL `extensions.code` and the REST `code` field.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl Code {
            /// Every code, in the order of the table.
            pub const ALL: &[Code] = &[$(Code::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)+
                }
            }

            /// The HTTP status of an answer that carries this code.
            pub fn http_status(self) -> u16 {
                match self {
                    $(Code::$variant => $status,)+
                }
            }

            /// What the code means, as documented.
            pub fn description(self) -> &'static str {
                match self {
                    $(Code::$variant => concat!($($doc),+).trim_ascii(),)+
                }
            }
        }
    };
}

codes! {
    /// No token, or a token that is invalid, expired or revoked.
    Unauthenticated = ("UNAUTHENTICATED", 401),
    /// The token is valid but of the wrong kind for the operation.
    Forbidden = ("FORBIDDEN", 403),
    /// The object does not exist, or belongs to someone else.
    NotFound = ("NOT_FOUND", 404),
    /// An argument or body field is invalid; the message says which and why.
    BadUserInput = ("BAD_USER_INPUT", 400),
    /// The change conflicts with the current state (a duplicate, an object in use).
    Conflict = ("CONFLICT", 409),
    /// Too many requests for this token or address; retry after the hint.
    RateLimited = ("RATE_LIMITED", 429),
    /// The request is not a GraphQL-over-HTTP or REST request latchkey can read.
    BadRequest = ("BAD_REQUEST", 400),
    /// The request body is larger than the limit.
    PayloadTooLarge = ("PAYLOAD_TOO_LARGE", 413),
    /// The method is not allowed here, such as a mutation sent with GET.
    MethodNotAllowed = ("METHOD_NOT_ALLOWED", 405),
    /// The GraphQL document is not valid GraphQL syntax.
    GraphqlParseFailed = ("GRAPHQL_PARSE_FAILED", 400),
    /// The GraphQL document does not validate against the schema.
    GraphqlValidationFailed = ("GRAPHQL_VALIDATION_FAILED", 400),
    /// The GraphQL document passes a bound: length, nesting, depth, size with fragments
    /// expanded, aliases, directives or complexity.
    QueryTooComplex = ("QUERY_TOO_COMPLEX", 400),
    /// An operation of the published API that latchkey does not offer (`callConnector`:
    /// latchkey runs no connectors).
    NotSupported = ("NOT_SUPPORTED", 501),
    /// Something failed inside latchkey; the cause is logged with the request id.
    Internal = ("INTERNAL", 500),
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a valid master token or user token is required")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(&'static str),
    /// A missing object, and equally an object that belongs to someone else.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Conflict(String),
    #[error("rate limit exceeded; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the request body is larger than {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    #[error("{0}")]
    NotSupported(&'static str),
    /// Anything the client cannot fix. The cause is logged, the client sees a generic text.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    pub fn code(&self) -> Code {
        match self {
            Error::Unauthenticated => Code::Unauthenticated,
            Error::Forbidden(_) => Code::Forbidden,
            Error::NotFound(_) => Code::NotFound,
            Error::BadInput(_) => Code::BadUserInput,
            Error::Conflict(_) => Code::Conflict,
            Error::RateLimited { .. } => Code::RateLimited,
            Error::PayloadTooLarge { .. } => Code::PayloadTooLarge,
            Error::NotSupported(_) => Code::NotSupported,
            Error::Internal(_) => Code::Internal,
        }
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Error::BadInput(message.into())
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Error::Internal(cause.into())
    }

    /// The text a client may see. Internal causes are logged here, once, inside the
    /// current request span (which carries the request id), and replaced by a generic text.
    pub fn public_message(&self) -> String {
        if let Error::Internal(cause) = self {
            tracing::error!(error = %format!("{cause:#}"), "internal error");
        }
        self.to_string()
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(err: sea_orm::DbErr) -> Self {
        Error::Internal(err.into())
    }
}

impl From<sea_orm::TransactionError<Error>> for Error {
    fn from(err: sea_orm::TransactionError<Error>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(inner) => inner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_documented_with_its_status() {
        let docs = include_str!("../docs/api.md");
        for code in Code::ALL {
            let row = format!("| `{}` | {} |", code.as_str(), code.http_status());
            assert!(docs.contains(&row), "docs/api.md lacks the row {row}");
            assert!(!code.description().is_empty());
        }
    }

    #[test]
    fn internal_errors_never_show_their_cause() {
        let err = Error::internal(anyhow::anyhow!("UNIQUE constraint failed: master_tokens.token_hash"));
        assert_eq!(err.code(), Code::Internal);
        assert_eq!(err.public_message(), "internal error");
    }
}

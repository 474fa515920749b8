//! The one error type of the use cases. Each variant has a stable code; the GraphQL and
//! REST layers map it once each. Internal causes are logged, never sent to a client.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Stable, greppable error codes. They appear as GraphQL `extensions.code` and as the
/// REST `code` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Unauthenticated,
    Forbidden,
    NotFound,
    BadUserInput,
    Conflict,
    RateLimited,
    /// An operation of the public API that latchkey does not offer (`callConnector`).
    NotSupported,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::NotFound => "NOT_FOUND",
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::Conflict => "CONFLICT",
            Code::RateLimited => "RATE_LIMITED",
            Code::NotSupported => "NOT_SUPPORTED",
            Code::Internal => "INTERNAL",
        }
    }
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
    fn internal_errors_never_show_their_cause() {
        let err = Error::internal(anyhow::anyhow!("UNIQUE constraint failed: master_tokens.token_hash"));
        assert_eq!(err.code(), Code::Internal);
        assert_eq!(err.public_message(), "internal error");
    }
}

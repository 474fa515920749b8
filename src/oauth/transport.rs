//! The `oauth2` crate sends its requests through [`Outbound`]: pinned addresses, no
//! redirects, timeouts and bounded answers, like every other call latchkey makes.

use std::{future::Future, pin::Pin};

use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};

use crate::outbound::{Outbound, OutboundError};

/// Why a request got no answer the protocol can read.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    /// A 5xx or a 429: the provider is down or busy, which may pass.
    #[error("{host} answered {status}")]
    Unavailable { host: String, status: u16 },
}

impl SendError {
    pub fn is_transient(&self) -> bool {
        match self {
            SendError::Outbound(err) => err.is_transient(),
            SendError::Unavailable { .. } => true,
        }
    }
}

/// [`Outbound`] as the `oauth2` crate's HTTP client.
pub struct Transport<'a>(pub &'a Outbound);

impl<'c> AsyncHttpClient<'c> for Transport<'_> {
    type Error = SendError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, SendError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let host = request.uri().host().unwrap_or_default().to_owned();
            let answer = self.0.send(request).await?;
            let status = answer.status();
            if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
                return Err(SendError::Unavailable { host, status: status.as_u16() });
            }
            Ok(answer)
        })
    }
}

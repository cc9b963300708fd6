//! What a poll or publish request can get wrong, and how it is answered.

use http::header::{HeaderValue, ALLOW};
use http::{Response, StatusCode};
use rt_core::http::Body;

/// Every error of the polling endpoint; each becomes a `4xx`/`5xx` JSON answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Bad channels, cursor or body, or the backplane is down.
    #[error(transparent)]
    Core(#[from] rt_core::Error),
    /// The `timeout` parameter is not a number of seconds.
    #[error(
        "invalid timeout {0:?}: give a number of seconds such as 25 or 0.5 (0 answers at once)"
    )]
    InvalidTimeout(String),
    /// A method the route does not serve.
    #[error("this route accepts only {0} (and OPTIONS for CORS preflight)")]
    MethodNotAllowed(&'static str),
}

impl Error {
    pub(crate) fn to_response(&self) -> Response<Body> {
        match self {
            Error::Core(e) => e.to_response(),
            Error::InvalidTimeout(_) => {
                rt_core::http::error(StatusCode::BAD_REQUEST, "bad_request", &self.to_string())
            }
            Error::MethodNotAllowed(allowed) => {
                let mut res = rt_core::http::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    &self.to_string(),
                );
                res.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allowed));
                res
            }
        }
    }
}

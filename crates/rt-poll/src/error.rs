//! What a poll or publish request can get wrong, and how it is answered.

use http::{Response, StatusCode};
use rt_http::Body;

/// Every error of the polling endpoint; each becomes a `4xx`/`5xx` JSON answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Refused at the edge (method, origin, token), bad channels, cursor or body, or the
    /// backplane is down.
    #[error(transparent)]
    Http(#[from] rt_http::Error),
    /// The `timeout` parameter is not a number of seconds.
    #[error(
        "invalid timeout {0:?}: give a number of seconds such as 25 or 0.5 (0 answers at once)"
    )]
    InvalidTimeout(String),
    /// The `session` parameter is not a session id an answer gave.
    #[error(
        "invalid session {0:?}: give the `session` of a previous poll answer (32 hex digits), or none to start one"
    )]
    InvalidSession(String),
}

impl From<rt_core::Error> for Error {
    fn from(e: rt_core::Error) -> Self {
        Error::Http(e.into())
    }
}

impl Error {
    pub(crate) fn to_response(&self) -> Response<Body> {
        match self {
            Error::Http(e) => e.to_response(),
            Error::InvalidTimeout(_) => {
                rt_http::error(StatusCode::BAD_REQUEST, "bad_request", &self.to_string())
            }
            Error::InvalidSession(_) => rt_http::error(
                StatusCode::BAD_REQUEST,
                "invalid_session",
                &self.to_string(),
            ),
        }
    }
}

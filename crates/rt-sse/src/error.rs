//! Why a stream request is refused.

use http::Response;
use rt_http::Body;

/// Why the endpoint refused to open a stream. Every variant becomes a `4xx`/`5xx` answer with
/// the JSON error body of `docs/protocol.md` ([`Error::to_response`]).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Refused at the edge (method, origin, token), bad channels (too many, or names too long
    /// together for a cursor: `too_many_channels`) or resume value, or the backplane failed.
    #[error(transparent)]
    Http(#[from] rt_http::Error),
}

impl From<rt_core::Error> for Error {
    fn from(e: rt_core::Error) -> Self {
        Error::Http(e.into())
    }
}

impl Error {
    /// This error as an HTTP answer with a JSON body.
    pub fn to_response(&self) -> Response<Body> {
        match self {
            Error::Http(e) => e.to_response(),
        }
    }
}

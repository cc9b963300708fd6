//! Why a stream request is refused.

use http::Response;
use rt_http::Body;

/// Why the endpoint refused to open a stream. Every variant becomes a `4xx`/`5xx` answer with
/// the JSON error body of `docs/protocol.md` ([`Error::to_response`]).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The channels' names are too long together for one cursor to name them all.
    #[error("these channels need a cursor of up to {needed} bytes, over the {max}-byte limit of Last-Event-ID; subscribe to fewer or shorter-named channels")]
    CursorTooLong {
        /// Worst-case cursor length for the requested channels.
        needed: usize,
        /// [`rt_core::Cursor::MAX_LEN`].
        max: usize,
    },
    /// Refused at the edge (method, origin, token), bad channels or resume value, or the
    /// backplane failed.
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
            Error::CursorTooLong { .. } => rt_http::error(
                http::StatusCode::BAD_REQUEST,
                "too_many_channels",
                &self.to_string(),
            ),
        }
    }
}

//! Why a stream request is refused.

use http::{header, HeaderValue, Response, StatusCode};
use rt_core::http::Body;

/// Why the endpoint refused to open a stream. Every variant becomes a `4xx`/`5xx` answer with
/// the JSON error body of `docs/protocol.md` ([`Error::to_response`]).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The request is not a `GET` (or a CORS preflight).
    #[error("method {0} is not allowed here; open the stream with GET")]
    MethodNotAllowed(http::Method),
    /// The channels' names are too long together for one cursor to name them all.
    #[error("these channels need a cursor of up to {needed} bytes, over the {max}-byte limit of Last-Event-ID; subscribe to fewer or shorter-named channels")]
    CursorTooLong {
        /// Worst-case cursor length for the requested channels.
        needed: usize,
        /// [`rt_core::Cursor::MAX_LEN`].
        max: usize,
    },
    /// Bad channels or resume value, or the backplane failed.
    #[error(transparent)]
    Core(#[from] rt_core::Error),
}

impl Error {
    /// This error as an HTTP answer with a JSON body.
    pub fn to_response(&self) -> Response<Body> {
        match self {
            Error::Core(e) => e.to_response(),
            Error::MethodNotAllowed(_) => {
                let mut res = rt_core::http::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    &self.to_string(),
                );
                res.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, OPTIONS"));
                res
            }
            Error::CursorTooLong { .. } => rt_core::http::error(
                StatusCode::BAD_REQUEST,
                "too_many_channels",
                &self.to_string(),
            ),
        }
    }
}

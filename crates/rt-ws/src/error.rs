//! Why a WebSocket handshake was refused.

use http::header::{HeaderValue, SEC_WEBSOCKET_VERSION};
use http::{Response, StatusCode};
use rt_http::Body;

/// A refused handshake. Each variant is answered with its HTTP status and the JSON error body
/// every rt endpoint uses ([`Error::to_response`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request used another method than `GET`.
    #[error("method {0} cannot open a WebSocket; use GET with the upgrade headers")]
    Method(String),
    /// The request is not a valid RFC 6455 upgrade (HTTP version or a header is wrong).
    #[error("not a valid WebSocket handshake: {0}")]
    Handshake(&'static str),
    /// The `cursor` query parameter (where the connect hook's channels start) is malformed.
    #[error("{0}")]
    Cursor(String),
    /// `Sec-WebSocket-Version` names a version other than 13.
    #[error("WebSocket version {0:?} is not supported; this server speaks version 13")]
    Version(String),
}

impl Error {
    /// The HTTP answer: `405`, `400`, or `426` with `Sec-WebSocket-Version: 13`.
    pub fn to_response(&self) -> Response<Body> {
        let (status, code) = match self {
            Error::Method(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Error::Handshake(_) => (StatusCode::BAD_REQUEST, "bad_handshake"),
            Error::Cursor(_) => (StatusCode::BAD_REQUEST, "invalid_cursor"),
            Error::Version(_) => (StatusCode::UPGRADE_REQUIRED, "unsupported_version"),
        };
        let mut res = rt_http::error(status, code, &self.to_string());
        if matches!(self, Error::Version(_)) {
            res.headers_mut()
                .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        res
    }
}

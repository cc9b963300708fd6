//! Refusals at the HTTP edge, and the one JSON error body every rt endpoint answers with.

use http::header::{HeaderValue, ALLOW};
use http::{Method, Response, StatusCode};
use serde::Serialize;

use crate::body::{json, Body};

/// Why the edge refused a request. Each variant has an HTTP status ([`Error::status`]), a
/// stable code ([`Error::code`]) and a JSON answer ([`Error::to_response`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad channels, cursor, payload or token, or the backplane is down.
    #[error(transparent)]
    Core(#[from] rt_core::Error),
    /// The request's `Origin` is not allowed by the endpoint's [`Origins`](crate::Origins).
    #[error("origin {0:?} may not use this endpoint; add it to the allowed origins")]
    OriginNotAllowed(String),
    /// A method the route does not serve.
    #[error("method {method} is not allowed here; use {allowed}")]
    MethodNotAllowed {
        /// The method used.
        method: Method,
        /// The methods the route serves, as sent in `Allow`.
        allowed: &'static str,
    },
    /// A state-changing request (a publish) whose body is not declared
    /// `Content-Type: application/json`. Browsers send other types (`text/plain`, forms)
    /// cross-site without a CORS preflight, so accepting them would let any page publish
    /// through its visitors' browsers.
    #[error("a publish must be sent with Content-Type: application/json, not {0}; other types are refused so that no web page can publish cross-site without a CORS preflight")]
    UnsupportedMediaType(String),
    /// The request body did not arrive within the body read timeout (a client sending it
    /// slowly, or not at all, holds a connection and a task).
    #[error("the request body did not arrive within {0:?}; send the whole body at once")]
    BodyTimeout(std::time::Duration),
    /// The endpoint was built without an authenticator and without
    /// [`allow_anonymous`](crate::Edge::allow_anonymous), so it refuses everyone.
    #[error("this endpoint has no authenticator: build it with Edge::authenticator(...) (e.g. a TokenVerifier), or with Edge::allow_anonymous() to let anyone use every channel")]
    NoAuthenticator,
    /// A server-side route built with no [`ApiKey`](crate::ApiKey), which refuses everyone.
    #[error("this API is disabled: no API key is configured (rt-server: --api-key or RT_API_KEY)")]
    NoApiKey,
    /// A request to a server-side route without the right API key.
    #[error("missing or wrong API key: send it in the X-Api-Key header")]
    WrongApiKey,
    /// A [`Hooks`](crate::Hooks) call could not decide (the application's backend is down,
    /// slow or answered nonsense), so the request is refused: hooks fail closed.
    #[error("the {hook} hook failed, so the request is refused: {reason}; retry later")]
    HookFailed {
        /// Which hook: `connect`, `subscribe` or `publish`.
        hook: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A command-line option is invalid (`LimitArgs::limits`, `AuthArgs::edge`, feature
    /// `clap`); the message names it. Raised when a server starts, never in answer to a
    /// request.
    #[error("{0}")]
    InvalidOption(String),
}

impl Error {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Core(e) => status(e),
            Error::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::NoAuthenticator | Error::NoApiKey | Error::WrongApiKey => {
                StatusCode::UNAUTHORIZED
            }
            Error::HookFailed { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::InvalidOption(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable, machine-readable code (`origin_not_allowed`, `invalid_cursor`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Core(e) => e.code(),
            Error::OriginNotAllowed(_) => "origin_not_allowed",
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::BodyTimeout(_) => "request_timeout",
            Error::NoAuthenticator | Error::NoApiKey | Error::WrongApiKey => "unauthorized",
            Error::HookFailed { .. } => "hook_failed",
            Error::InvalidOption(_) => "invalid_option",
        }
    }

    /// This error as an HTTP answer with its status and JSON error body.
    pub fn to_response(&self) -> Response<Body> {
        let mut res = error(self.status(), self.code(), &self.to_string());
        if let Error::MethodNotAllowed { allowed, .. } = self {
            res.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allowed));
        }
        res
    }
}

/// The HTTP status of an rt-core error.
pub fn status(e: &rt_core::Error) -> StatusCode {
    use rt_core::Error as E;
    match e {
        E::PayloadTooLarge { .. } | E::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        E::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        E::Unauthorized(_) | E::TokenExpired => StatusCode::UNAUTHORIZED,
        E::Forbidden(_) => StatusCode::FORBIDDEN,
        E::InvalidKey(_) => StatusCode::INTERNAL_SERVER_ERROR,
        E::PresenceDisabled(_) => StatusCode::NOT_FOUND,
        E::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The stable code of a JSON error answer, put in the response's extensions by [`error`] so
/// that a server can tell refusals apart (e.g. count them by route) without parsing bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

/// The metric counting every error answer by `kind` (its stable code).
pub const ERRORS: &str = "rt_errors_total";

/// Counts an error answer of `kind` (a stable code such as `payload_too_large`) in [`ERRORS`].
/// Every HTTP error passes [`error`], which counts it; a transport that answers errors in its
/// own messages (WebSocket) counts them here.
pub fn count_error(kind: &'static str) {
    metrics::counter!(ERRORS, "kind" => kind).increment(1);
}

/// The JSON error body every rt endpoint uses: `{"error":{"code":"...","message":"..."}}`.
pub fn error(status: StatusCode, code: &'static str, message: &str) -> Response<Body> {
    count_error(code);
    #[derive(Serialize)]
    struct Inner<'a> {
        code: &'a str,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct Outer<'a> {
        error: Inner<'a>,
    }
    let mut res = json(
        status,
        &Outer {
            error: Inner { code, message },
        },
    );
    res.extensions_mut().insert(ErrorCode(code));
    res
}

//! The one error type of rt-core, with the machine-readable code that every transport reports
//! it with.

/// Everything that can go wrong in rt-core.
///
/// Each variant has a stable snake_case code ([`Error::code`]) so that every transport reports
/// the same failure the same way.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A channel name failed validation.
    #[error("invalid channel name {name:?}: {reason}")]
    InvalidChannel {
        /// The offending name (cut to 64 characters).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An event name failed validation.
    #[error("invalid event name {name:?}: {reason}")]
    InvalidEventName {
        /// The offending name (cut to 64 characters).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A cursor (or `Last-Event-ID`) string could not be parsed.
    #[error(
        "invalid cursor: {0}; send a cursor exactly as the server gave it, `earliest`, or none"
    )]
    InvalidCursor(String),
    /// A request named no channel.
    #[error("no channel given; name at least one channel")]
    NoChannels,
    /// A request named more channels than allowed.
    #[error("too many channels: {given} given, at most {max} allowed")]
    TooManyChannels {
        /// How many were asked for.
        given: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The channels' names are too long together: a cursor naming them all could outgrow
    /// [`Cursor::MAX_ISSUED`](crate::Cursor::MAX_ISSUED), and the client could not resume.
    #[error("too many channels: together their names need a cursor of up to {needed} bytes, over the limit of {max} bytes; subscribe to fewer channels or use shorter names")]
    ChannelSetTooLarge {
        /// The longest cursor the channels could need.
        needed: usize,
        /// [`Cursor::MAX_ISSUED`](crate::Cursor::MAX_ISSUED).
        max: usize,
    },
    /// A payload is larger than the configured limit.
    #[error("payload of {size} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// The payload's size in bytes.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A request body (a publish) is larger than allowed.
    #[error("{}", body_too_large(*.size, *.limit, *.max_payload))]
    BodyTooLarge {
        /// The body's size when known (declared by `Content-Length`); `None`: more than
        /// `limit` bytes arrived before reading stopped.
        size: Option<usize>,
        /// The largest body accepted, in bytes.
        limit: usize,
        /// The largest event payload, when the body limit is derived from it.
        max_payload: Option<usize>,
    },
    /// A request body could not be read or decoded.
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// An idempotency key (client message id) is malformed.
    #[error("invalid message id: {0}")]
    InvalidMessageId(&'static str),
    /// The backplane cannot serve the request now (e.g. Redis is unreachable).
    #[error("backplane unavailable: {0}; retry later")]
    Unavailable(String),
    /// No token, or a token that does not verify, where one is needed.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The token has expired; get a new one and reconnect (or re-authenticate).
    #[error("unauthorized: the token has expired; get a new one and reconnect")]
    TokenExpired,
    /// A valid token that does not allow this channel.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A channel pattern (`chat:*`) failed validation.
    #[error("invalid channel pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The offending pattern (cut to 64 characters).
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Presence was asked of a channel that does not keep it.
    #[error("presence is not enabled for channel {0:?}; the server keeps it only for the channels matching its --presence patterns")]
    PresenceDisabled(String),
    /// The backplane cannot do what was asked (e.g. presence on a backplane without it).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A token verification key is unusable (a server configuration error).
    #[error("invalid token key: {0}")]
    InvalidKey(String),
}

impl Error {
    /// A stable, machine-readable code for clients (`invalid_channel`, `invalid_cursor`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidChannel { .. } => "invalid_channel",
            Error::InvalidEventName { .. } => "invalid_event_name",
            Error::InvalidCursor(_) => "invalid_cursor",
            Error::NoChannels => "no_channels",
            Error::TooManyChannels { .. } | Error::ChannelSetTooLarge { .. } => "too_many_channels",
            Error::PayloadTooLarge { .. } | Error::BodyTooLarge { .. } => "payload_too_large",
            Error::BadRequest(_) => "bad_request",
            Error::InvalidMessageId(_) => "invalid_message_id",
            Error::Unavailable(_) => "unavailable",
            Error::Unauthorized(_) => "unauthorized",
            Error::TokenExpired => "token_expired",
            Error::Forbidden(_) => "forbidden",
            Error::InvalidPattern { .. } => "invalid_pattern",
            Error::InvalidKey(_) => "invalid_key",
            Error::PresenceDisabled(_) => "presence_disabled",
            Error::Unsupported(_) => "unsupported",
        }
    }
}

/// The message of [`Error::BodyTooLarge`]: the real size (or "more than"), the real limit, and
/// the payload limit it leaves room for.
fn body_too_large(size: Option<usize>, limit: usize, max_payload: Option<usize>) -> String {
    let size = match size {
        Some(n) => format!("of {n} bytes"),
        None => format!("of more than {limit} bytes"),
    };
    let payload = match max_payload {
        Some(p) => format!(
            "; event payloads may be up to {p} bytes, and a publish body up to {limit} bytes to hold one as JSON (base64 included)"
        ),
        None => String::new(),
    };
    format!("request body {size} exceeds the limit of {limit} bytes{payload}")
}

/// Cuts untrusted input down before it is echoed back in an error message.
pub(crate) fn excerpt(s: &str) -> String {
    s.chars().take(64).collect()
}

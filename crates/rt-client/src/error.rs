//! The one error type of rt-client.

use std::time::Duration;

use crate::event::Transport;

/// What a token source may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Refusals a new token can cure: the WebSocket's 1008 close reasons (docs/protocol.md,
/// "Close codes") and the HTTP transports' 401 error codes.
pub(crate) const TOKEN_REFUSALS: [&str; 4] = [
    "token_expired",
    "invalid_token",
    "token_required",
    "unauthorized",
];

/// Everything that can go wrong, from a bad URL to a publish the server refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server URL cannot be used.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificates given to [`Client::tls_root_certificates`](crate::Client::tls_root_certificates)
    /// cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// A channel name, cursor or event name breaks the rules of docs/protocol.md ("Names").
    #[error(transparent)]
    Invalid(#[from] rt_core::Error),
    /// A subscription named no channel.
    #[error("subscribe(): name at least one channel")]
    NoChannels,
    /// The server answered an HTTP request with an error status.
    #[error("{what} answered {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Http {
        /// Which request (`SSE`, `poll`, `publish`, `WebSocket handshake`).
        what: &'static str,
        /// The HTTP status.
        status: u16,
        /// The server's machine-readable error code, when its body had one.
        code: Option<String>,
        /// The server's message (or the start of a body that was not rt's JSON error).
        message: String,
    },
    /// The server refused the connection's token (expired, invalid or missing). The client
    /// asks its token source for a fresh one and retries at once.
    #[error("{transport}: the server refused the token ({code}); a fresh one is needed")]
    TokenRefused {
        /// The transport that was refused.
        transport: Transport,
        /// `token_expired`, `invalid_token`, `token_required` or `unauthorized`.
        code: String,
    },
    /// The server closed the WebSocket.
    #[error("the server closed the WebSocket ({code}{})", if reason.is_empty() { String::new() } else { format!(" {reason}") })]
    Closed {
        /// The close code (1001 shutdown, 1008 policy, 1013 try again later, ...).
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// The server answered a message with an `error` (e.g. `invalid_cursor`,
    /// `too_many_channels`).
    #[error("the server refused: {code}: {message}")]
    Refused {
        /// The error code (docs/protocol.md, "Errors").
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// The connection ended without an error of its own (an SSE stream or WebSocket that just
    /// stopped); the client resumes from its cursor.
    #[error("{0}")]
    Disconnected(String),
    /// The server ended the connection for the application (`POST /api/disconnect`):
    /// WebSocket close 4000/4001, SSE `rt.disconnect`, a poll's `disconnect`. With
    /// `reconnect: false` the subscription ends ([`Update::Disconnected`](crate::Update));
    /// otherwise it reconnects and resumes.
    #[error("{transport}: the server ended the connection ({reason}); {}", if *reconnect { "reconnecting" } else { "not coming back, as it asked" })]
    ServerDisconnect {
        /// The transport it came over.
        transport: Transport,
        /// Whether the server allows coming back.
        reconnect: bool,
        /// The application's reason.
        reason: String,
    },
    /// The WebSocket failed (handshake or I/O).
    #[error("WebSocket: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// An HTTP request could not be sent or its answer not read.
    #[error("HTTP request to {url} failed: {source}")]
    Request {
        /// The request's URL.
        url: String,
        /// The failure.
        #[source]
        source: BoxError,
    },
    /// The server sent something this client cannot read.
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
    /// Something took longer than allowed: a connection attempt, or a connection that stayed
    /// silent past its heartbeat (presumed dead).
    #[error("{what}: nothing within {after:?}")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long.
        after: Duration,
    },
    /// The token source failed.
    #[error("the token source failed: {0}")]
    Token(#[source] BoxError),
    /// The server refused a publish for good (bad channel, forbidden, too large, ...).
    #[error("publish {id}: refused: {code}: {message}")]
    PublishRefused {
        /// The client message id.
        id: String,
        /// The server's error code.
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// A publish was not acknowledged within the publish timeout (it may or may not be
    /// stored: publish again with the same id to find out, within the idempotency window).
    #[error("publish {id}: no acknowledgement within {after:?} (last failure: {last})")]
    PublishTimeout {
        /// The client message id.
        id: String,
        /// The publish timeout.
        after: Duration,
        /// Why the last attempt failed.
        last: String,
    },
    /// No transport could connect when subscribing; each attempt's failure, in order.
    #[error("no transport could connect: {}", .0.iter().map(|(t, e)| format!("{t}: {e}")).collect::<Vec<_>>().join("; "))]
    Unreachable(Vec<(Transport, Error)>),
    /// The subscription was closed (dropped), so its publisher cannot use it any more.
    #[error("the subscription was closed")]
    SubscriptionClosed,
}

impl Error {
    /// The token refusal this error is, if any: `Some("token_expired")` etc.
    pub fn token_refusal(&self) -> Option<&str> {
        match self {
            Error::TokenRefused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The error for an HTTP error answer: a 401 with a token refusal code becomes
    /// [`Error::TokenRefused`].
    pub(crate) fn http(
        what: &'static str,
        transport: Option<Transport>,
        status: u16,
        code: Option<String>,
        message: String,
    ) -> Error {
        if let (Some(transport), 401) = (transport, status) {
            let refusal = code.as_deref().unwrap_or("unauthorized");
            if TOKEN_REFUSALS.contains(&refusal) {
                return Error::TokenRefused {
                    transport,
                    code: refusal.to_owned(),
                };
            }
        }
        Error::Http {
            what,
            status,
            code,
            message,
        }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Error::WebSocket(Box::new(e))
    }
}

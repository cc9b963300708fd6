//! Connection telemetry: an [`Observer`] hears when client connections open and close, what
//! they are sent, and which credentials are refused. The default, [`Log`], writes log lines;
//! [`Metrics`](crate::Metrics) records metrics as well.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a client connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The server closed it with this WebSocket close code, or answered it (a poll) with this
    /// HTTP status.
    Code(u16),
    /// The stream ended by itself (an SSE stream's last event was sent).
    End,
    /// The client went away first.
    ClientGone,
}

impl Close {
    /// The value of a `close` label: the code, `end` or `client_gone`.
    pub fn label(&self) -> Cow<'static, str> {
        match self {
            Close::Code(code) => Cow::Owned(code.to_string()),
            Close::End => Cow::Borrowed("end"),
            Close::ClientGone => Cow::Borrowed("client_gone"),
        }
    }
}

/// Why a client was refused for its credentials or permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No token (or API key) where one is needed.
    Missing,
    /// A token (or API key) that does not verify: malformed, wrongly signed, wrong key.
    Invalid,
    /// A token past its expiry.
    Expired,
    /// A valid token that does not grant the channel.
    Forbidden,
}

impl AuthFailure {
    /// The failure a refusal with the stable error `code` answers, if it is one.
    /// `presented` says whether the client sent a credential: `unauthorized` is an invalid
    /// credential when it did, a missing one when it did not.
    pub fn of(code: &str, presented: bool) -> Option<Self> {
        match code {
            "token_expired" => Some(AuthFailure::Expired),
            "forbidden" => Some(AuthFailure::Forbidden),
            "unauthorized" if presented => Some(AuthFailure::Invalid),
            "unauthorized" => Some(AuthFailure::Missing),
            _ => None,
        }
    }

    /// `missing`, `invalid`, `expired` or `forbidden`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Invalid => "invalid",
            AuthFailure::Expired => "expired",
            AuthFailure::Forbidden => "forbidden",
        }
    }
}

/// Hears what happens to an endpoint's client connections. Every method has a default that
/// does nothing, so an observer implements only what it reports. `transport` is the
/// endpoint's name: `ws`, `sse` or `poll`.
///
/// Calls are made on the connection's task: keep them cheap (count, log), never block.
pub trait Observer: Send + Sync + fmt::Debug + 'static {
    /// A client connection opened (a WebSocket upgraded, an SSE stream started, a poll
    /// arrived).
    fn opened(&self, transport: &'static str) {
        let _ = transport;
    }

    /// A WebSocket was opened over `http`: `1.1` (an upgrade) or `2` (an RFC 8441 extended
    /// CONNECT stream). Reported just before [`opened`](Self::opened).
    fn upgraded(&self, transport: &'static str, http: &'static str) {
        let _ = (transport, http);
    }

    /// A client connection ended after `duration`.
    fn closed(&self, transport: &'static str, close: Close, duration: Duration) {
        let _ = (transport, close, duration);
    }

    /// `events` events were written to a client in one go.
    fn delivered(&self, transport: &'static str, events: u64) {
        let _ = (transport, events);
    }

    /// A client's credential or channel was refused.
    fn auth_failed(&self, transport: &'static str, failure: AuthFailure) {
        let _ = (transport, failure);
    }
}

/// The default [`Observer`]: a log line when a connection opens and when it closes (at
/// `info` for long-lived WebSocket and SSE connections, `debug` for polls).
#[derive(Debug, Clone, Copy, Default)]
pub struct Log;

impl Observer for Log {
    fn opened(&self, transport: &'static str) {
        if transport == "poll" {
            tracing::debug!(transport, "connection opened");
        } else {
            tracing::info!(transport, "connection opened");
        }
    }

    fn upgraded(&self, transport: &'static str, http: &'static str) {
        tracing::debug!(transport, http, "websocket upgraded");
    }

    fn closed(&self, transport: &'static str, close: Close, duration: Duration) {
        let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let label = close.label();
        let close: &str = &label;
        if transport == "poll" {
            tracing::debug!(transport, duration_ms, close, "connection closed");
        } else {
            tracing::info!(transport, duration_ms, close, "connection closed");
        }
    }
}

/// One open client connection: reported to the observer when created and when dropped, with
/// how it closed ([`Connection::close`]; [`Close::ClientGone`] unless told otherwise).
#[derive(Debug)]
pub struct Connection {
    observer: Arc<dyn Observer>,
    transport: &'static str,
    opened: Instant,
    close: Close,
}

impl Connection {
    /// Reports a connection of `transport` opened.
    pub fn open(observer: Arc<dyn Observer>, transport: &'static str) -> Self {
        observer.opened(transport);
        Connection {
            observer,
            transport,
            opened: Instant::now(),
            close: Close::ClientGone,
        }
    }

    /// Records how the connection ends (reported when it is dropped).
    pub fn close(&mut self, close: Close) {
        self.close = close;
    }

    /// Reports events written to this connection's client.
    pub fn delivered(&self, events: u64) {
        self.observer.delivered(self.transport, events);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.observer
            .closed(self.transport, self.close, self.opened.elapsed());
    }
}

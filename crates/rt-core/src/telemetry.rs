//! Metrics and connection logs shared by the hub and the transports.
//!
//! rt records through the [`metrics`] facade, which has no exporter of its own: whoever runs
//! the process installs a recorder (rt-server serves Prometheus text at `/metrics`). Without a
//! recorder every call here is a no-op costing an atomic load. The metric names are constants
//! of [`names`], so every crate records the same series and the docs list them in one place.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The names of every metric rt records.
pub mod names {
    /// Counter of publishes, labelled `result` = `stored`, `duplicate` or an error code.
    pub const PUBLISHES: &str = "rt_publishes_total";
    /// Histogram of how long the backplane took to store a publish, in seconds.
    pub const PUBLISH_SECONDS: &str = "rt_publish_duration_seconds";
    /// Counter of events handed to subscriptions (one per subscriber per event).
    pub const DELIVERIES: &str = "rt_deliveries_total";
    /// Gauge of open subscriptions.
    pub const SUBSCRIPTIONS: &str = "rt_subscriptions";
    /// Counter of subscriptions ended because they fell behind the live stream.
    pub const LAGGED: &str = "rt_lagged_total";
    /// Counter of resyncs: continuity lost on some channels (history exceeded or lost).
    pub const RESYNCS: &str = "rt_resyncs_total";
    /// Gauge of events retained in history: all of this process's with the memory backplane;
    /// with the Redis backplane, those of the channels this node published to or read from
    /// within the history age, as Redis last reported them.
    pub const HISTORY_EVENTS: &str = "rt_history_events";
    /// Counter of errors, labelled `kind` (the stable error code).
    pub const ERRORS: &str = "rt_errors_total";
    /// Counter of refused credentials and permissions, labelled `transport` and `reason`
    /// (an [`AuthFailure`](super::AuthFailure)).
    pub const AUTH_FAILURES: &str = "rt_auth_failures_total";
    /// Gauge of open client connections, labelled `transport`.
    pub const CONNECTIONS: &str = "rt_connections";
    /// Counter of client connections opened, labelled `transport`.
    pub const CONNECTIONS_OPENED: &str = "rt_connections_opened_total";
    /// Counter of client connections closed, labelled `transport` and `close` (a WebSocket
    /// close code, an HTTP status, `end` or `client_gone`).
    pub const CONNECTIONS_CLOSED: &str = "rt_connections_closed_total";
    /// Histogram of client connection lifetimes in seconds, labelled `transport`.
    pub const CONNECTION_SECONDS: &str = "rt_connection_duration_seconds";
}

/// Describes every metric of [`names`] to the installed recorder (for `# HELP` lines).
/// Call it once after installing a recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    use names::*;
    describe_counter!(
        PUBLISHES,
        "Publishes by result: stored, duplicate or an error code"
    );
    describe_histogram!(
        PUBLISH_SECONDS,
        Unit::Seconds,
        "Time the backplane took to store a publish"
    );
    describe_counter!(DELIVERIES, "Events handed to subscriptions");
    describe_gauge!(SUBSCRIPTIONS, "Open subscriptions");
    describe_counter!(
        LAGGED,
        "Subscriptions ended because they fell behind the live stream"
    );
    describe_counter!(
        RESYNCS,
        "Continuity losses reported to subscribers (history exceeded or lost)"
    );
    describe_gauge!(
        HISTORY_EVENTS,
        "Events retained in history (Redis: of the channels this node recently used)"
    );
    describe_counter!(ERRORS, "Errors by kind");
    describe_counter!(
        AUTH_FAILURES,
        "Refused tokens, API keys and channel permissions by transport and reason"
    );
    describe_gauge!(CONNECTIONS, "Open client connections by transport");
    describe_counter!(CONNECTIONS_OPENED, "Client connections opened by transport");
    describe_counter!(
        CONNECTIONS_CLOSED,
        "Client connections closed by transport and close code"
    );
    describe_histogram!(
        CONNECTION_SECONDS,
        Unit::Seconds,
        "Client connection lifetimes by transport"
    );
}

/// Counts an error of `kind` (a stable snake_case code such as `payload_too_large`).
pub fn error(kind: &'static str) {
    metrics::counter!(names::ERRORS, "kind" => kind).increment(1);
}

/// Why a client was refused for its credentials or permissions (the `reason` label of
/// [`names::AUTH_FAILURES`]).
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
    /// `presented` says whether the client sent a credential: `unauthorized` means a
    /// credential that does not verify when it did (a valid one is never `unauthorized`, only
    /// `forbidden`), and a missing one when it did not.
    pub fn of(code: &str, presented: bool) -> Option<Self> {
        match code {
            "token_expired" => Some(AuthFailure::Expired),
            "forbidden" => Some(AuthFailure::Forbidden),
            "unauthorized" if presented => Some(AuthFailure::Invalid),
            "unauthorized" => Some(AuthFailure::Missing),
            _ => None,
        }
    }

    /// The label value: `missing`, `invalid`, `expired` or `forbidden`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Invalid => "invalid",
            AuthFailure::Expired => "expired",
            AuthFailure::Forbidden => "forbidden",
        }
    }

    /// Counts this failure on `transport` in [`names::AUTH_FAILURES`]. Call it once where
    /// the refusal is answered.
    pub fn count(self, transport: &'static str) {
        metrics::counter!(names::AUTH_FAILURES, "transport" => transport, "reason" => self.as_str())
            .increment(1);
    }
}

/// Where a transport writes the close code of a connection it ends, so that the connection's
/// metrics and close log line carry it. Servers put one in the request extensions; a transport
/// that finds one there calls [`CloseCode::set`] when it closes.
#[derive(Clone, Debug, Default)]
pub struct CloseCode(Arc<AtomicU16>);

impl CloseCode {
    /// Records the code (e.g. a WebSocket close code, 1001 for "going away").
    pub fn set(&self, code: u16) {
        self.0.store(code, Ordering::Relaxed);
    }

    /// The recorded code, if any.
    pub fn get(&self) -> Option<u16> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            code => Some(code),
        }
    }
}

/// One open client connection: counted in [`names::CONNECTIONS`] while it lives, logged once
/// when it opens and once when it is dropped, with its transport, duration and close code.
#[derive(Debug)]
pub struct Connection {
    transport: &'static str,
    opened: Instant,
    code: CloseCode,
    /// What to report when no close code was set.
    fallback: &'static str,
    /// Log at info (long-lived connections) or debug (one request per poll).
    loud: bool,
}

impl Connection {
    /// Starts tracking a connection of `transport` (`ws`, `sse`, `poll`).
    pub fn open(transport: &'static str, code: CloseCode, loud: bool) -> Self {
        metrics::gauge!(names::CONNECTIONS, "transport" => transport).increment(1.0);
        metrics::counter!(names::CONNECTIONS_OPENED, "transport" => transport).increment(1);
        if loud {
            tracing::info!(transport, "connection opened");
        } else {
            tracing::debug!(transport, "connection opened");
        }
        Connection {
            transport,
            opened: Instant::now(),
            code,
            fallback: "client_gone",
            loud,
        }
    }

    /// What the close log reports when no close code is set (default `client_gone`).
    pub fn set_fallback(&mut self, fallback: &'static str) {
        self.fallback = fallback;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let transport = self.transport;
        let seconds = self.opened.elapsed().as_secs_f64();
        let close = self
            .code
            .get()
            .map_or_else(|| self.fallback.to_owned(), |c| c.to_string());
        metrics::gauge!(names::CONNECTIONS, "transport" => transport).decrement(1.0);
        metrics::histogram!(names::CONNECTION_SECONDS, "transport" => transport).record(seconds);
        metrics::counter!(names::CONNECTIONS_CLOSED, "transport" => transport, "close" => close.clone())
            .increment(1);
        let duration_ms = (seconds * 1000.0).round() as u64;
        if self.loud {
            tracing::info!(transport, duration_ms, close, "connection closed");
        } else {
            tracing::debug!(transport, duration_ms, close, "connection closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_code_is_shared_between_clones() {
        let code = CloseCode::default();
        assert_eq!(code.get(), None);
        code.clone().set(1001);
        assert_eq!(code.get(), Some(1001));
    }
}

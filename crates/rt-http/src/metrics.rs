//! [`Metrics`]: an [`Observer`] that records connection telemetry through the `metrics`
//! facade, into whatever recorder the program installed (rt-server installs Prometheus's).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::{AuthFailure, Close, Log, Observer};

/// Gauge of open client connections, by `transport`.
pub const CONNECTIONS: &str = "rt_connections";
/// Counter of client connections opened, by `transport`.
pub const CONNECTIONS_OPENED: &str = "rt_connections_opened_total";
/// Counter of WebSockets opened, by `transport` and `http` (`1.1`, or `2` for RFC 8441).
pub const UPGRADES: &str = "rt_upgrades_total";
/// Counter of client connections closed, by `transport` and `close`.
pub const CONNECTIONS_CLOSED: &str = "rt_connections_closed_total";
/// Histogram of client connection lifetimes in seconds, by `transport`.
pub const CONNECTION_SECONDS: &str = "rt_connection_duration_seconds";
/// Counter of events written to clients, by `transport`.
pub const SENT: &str = "rt_events_sent_total";
/// Counter of refused credentials and permissions, by `transport` and `reason`.
pub const AUTH_FAILURES: &str = "rt_auth_failures_total";

/// Records every report as a metric (the constants of this module name them) and logs like
/// [`Log`]. It also counts the connections open now ([`Metrics::open`]), which a graceful
/// shutdown can wait on.
#[derive(Debug, Default)]
pub struct Metrics {
    open: AtomicUsize,
}

impl Metrics {
    /// Describes the series to the installed recorder (their help text). Call it once after
    /// installing the recorder.
    pub fn describe() {
        metrics::describe_gauge!(CONNECTIONS, "Open client connections by transport");
        metrics::describe_counter!(CONNECTIONS_OPENED, "Client connections opened by transport");
        metrics::describe_counter!(
            UPGRADES,
            "WebSockets opened by transport and HTTP version (2: RFC 8441 extended CONNECT)"
        );
        metrics::describe_counter!(
            CONNECTIONS_CLOSED,
            "Client connections closed by transport and close code"
        );
        metrics::describe_histogram!(
            CONNECTION_SECONDS,
            metrics::Unit::Seconds,
            "Client connection lifetimes by transport"
        );
        metrics::describe_counter!(SENT, "Events written to clients by transport");
        metrics::describe_counter!(
            AUTH_FAILURES,
            "Refused tokens, API keys and channel permissions by transport and reason"
        );
    }

    /// Registers, at zero, the series of `transports` (endpoint names such as `ws`, `sse`,
    /// `poll`) and of the `auth_routes` that refuse credentials, so that dashboards and alerts
    /// see them before the first use.
    pub fn register(&self, transports: &[&'static str], auth_routes: &[&'static str]) {
        for &transport in transports {
            metrics::gauge!(CONNECTIONS, "transport" => transport).increment(0.0);
            metrics::counter!(CONNECTIONS_OPENED, "transport" => transport).increment(0);
            metrics::counter!(SENT, "transport" => transport).increment(0);
            if transport == "ws" {
                for http in ["1.1", "2"] {
                    metrics::counter!(UPGRADES, "transport" => transport, "http" => http)
                        .increment(0);
                }
            }
        }
        for route in transports.iter().chain(auth_routes) {
            for failure in [
                AuthFailure::Missing,
                AuthFailure::Invalid,
                AuthFailure::Expired,
                AuthFailure::Forbidden,
            ] {
                let reason = failure.as_str();
                metrics::counter!(AUTH_FAILURES, "transport" => *route, "reason" => reason)
                    .increment(0);
            }
        }
    }

    /// Client connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Observer for Metrics {
    fn opened(&self, transport: &'static str) {
        self.open.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(CONNECTIONS, "transport" => transport).increment(1.0);
        metrics::counter!(CONNECTIONS_OPENED, "transport" => transport).increment(1);
        Log.opened(transport);
    }

    fn upgraded(&self, transport: &'static str, http: &'static str) {
        metrics::counter!(UPGRADES, "transport" => transport, "http" => http).increment(1);
        Log.upgraded(transport, http);
    }

    fn closed(&self, transport: &'static str, close: Close, duration: Duration) {
        metrics::gauge!(CONNECTIONS, "transport" => transport).decrement(1.0);
        metrics::histogram!(CONNECTION_SECONDS, "transport" => transport)
            .record(duration.as_secs_f64());
        metrics::counter!(CONNECTIONS_CLOSED, "transport" => transport, "close" => close.label())
            .increment(1);
        Log.closed(transport, close, duration);
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    fn delivered(&self, transport: &'static str, events: u64) {
        metrics::counter!(SENT, "transport" => transport).increment(events);
    }

    fn auth_failed(&self, transport: &'static str, failure: AuthFailure) {
        metrics::counter!(AUTH_FAILURES, "transport" => transport, "reason" => failure.as_str())
            .increment(1);
    }
}

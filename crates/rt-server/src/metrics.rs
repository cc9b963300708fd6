//! Prometheus metrics at `/metrics`: the recorder, and the transports' [`Observer`].
//!
//! rt-core and the transports record through the `metrics` facade and report connections to
//! their edge's observer; this module installs the Prometheus recorder once per process,
//! implements the observer with metrics (and the default log lines), and renders on scrape.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rt_core::{Health, Hub};
use rt_http::{self as h, AuthFailure, Body, Close, Log, Observer};

/// Gauge: 1 when the backplane is up, 0 when degraded.
const BACKPLANE_UP: &str = "rt_backplane_up";
/// Gauge: channels with local subscribers.
const CHANNELS: &str = "rt_channels";
/// Counter of HTTP answers by route and status.
const RESPONSES: &str = "rt_http_responses_total";
/// Counter of refused credentials and permissions, by `transport` and `reason`.
const AUTH_FAILURES: &str = "rt_auth_failures_total";
/// Gauge of open client connections, by `transport`.
const CONNECTIONS: &str = "rt_connections";
/// Counter of client connections opened, by `transport`.
const CONNECTIONS_OPENED: &str = "rt_connections_opened_total";
/// Counter of client connections closed, by `transport` and `close`.
const CONNECTIONS_CLOSED: &str = "rt_connections_closed_total";
/// Histogram of client connection lifetimes in seconds, by `transport`.
const CONNECTION_SECONDS: &str = "rt_connection_duration_seconds";
/// Counter of events written to clients, by `transport`.
const SENT: &str = "rt_events_sent_total";

/// Buckets for latencies and lifetimes in seconds: sub-millisecond publishes up to
/// hour-long connections.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0, 3600.0,
];

/// The process-wide Prometheus recorder, installed on first use. `None` when another recorder
/// was installed first (an embedder's): rt then records into that one and `/metrics` says so.
pub(crate) fn recorder() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            rt_core::telemetry::describe();
            let gauges = [
                (BACKPLANE_UP, "1 when the backplane is up, 0 when degraded"),
                (CHANNELS, "Channels with local subscribers"),
                (CONNECTIONS, "Open client connections by transport"),
            ];
            for (name, help) in gauges {
                metrics::describe_gauge!(name, help);
            }
            let counters = [
                (RESPONSES, "HTTP answers by route and status"),
                (
                    AUTH_FAILURES,
                    "Refused tokens, API keys and channel permissions by transport and reason",
                ),
                (CONNECTIONS_OPENED, "Client connections opened by transport"),
                (
                    CONNECTIONS_CLOSED,
                    "Client connections closed by transport and close code",
                ),
                (SENT, "Events written to clients by transport"),
            ];
            for (name, help) in counters {
                metrics::describe_counter!(name, help);
            }
            metrics::describe_histogram!(
                CONNECTION_SECONDS,
                metrics::Unit::Seconds,
                "Client connection lifetimes by transport"
            );
            Some(handle)
        })
        .clone()
}

/// `GET /metrics`: the Prometheus text exposition.
pub(crate) fn render(hub: &Hub, handle: Option<&PrometheusHandle>) -> Response<Body> {
    let Some(handle) = handle else {
        return h::error(
            StatusCode::NOT_FOUND,
            "metrics_unavailable",
            "another metrics recorder was installed in this process; read metrics from it",
        );
    };
    // Sampled at scrape time: cheaper than updating on every change.
    let up = match hub.health() {
        Health::Up => 1.0,
        Health::Degraded(_) => 0.0,
    };
    metrics::gauge!(BACKPLANE_UP).set(up);
    metrics::gauge!(CHANNELS).set(hub.stats().channels as f64);
    handle.run_upkeep();
    let mut res = Response::new(h::full(handle.render()));
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// Counts an answer of `route`.
pub(crate) fn answered(route: &'static str, status: StatusCode) {
    metrics::counter!(RESPONSES, "route" => route, "status" => status.as_str().to_owned())
        .increment(1);
}

/// The transports' observer: Prometheus series and the default log lines, and a count of
/// open connections that a graceful shutdown waits on.
#[derive(Debug, Default)]
pub(crate) struct Prometheus {
    open: AtomicUsize,
}

impl Prometheus {
    /// Registers, at zero, the series of the enabled `transports` (`ws`, `sse`, `poll`) and
    /// the hub's, so that dashboards and alerts see them before the first use.
    pub(crate) fn register(&self, transports: &[&'static str]) {
        use rt_core::telemetry::names;
        for &transport in transports {
            metrics::gauge!(CONNECTIONS, "transport" => transport).increment(0.0);
            metrics::counter!(CONNECTIONS_OPENED, "transport" => transport).increment(0);
            metrics::counter!(SENT, "transport" => transport).increment(0);
        }
        let publish_routes = transports
            .contains(&"poll")
            .then_some("poll_publish")
            .into_iter()
            .chain(["api_publish"]);
        for route in transports.iter().copied().chain(publish_routes) {
            for failure in [
                AuthFailure::Missing,
                AuthFailure::Invalid,
                AuthFailure::Expired,
                AuthFailure::Forbidden,
            ] {
                let reason = failure.as_str();
                metrics::counter!(AUTH_FAILURES, "transport" => route, "reason" => reason)
                    .increment(0);
            }
        }
        metrics::counter!(names::DELIVERIES).increment(0);
        metrics::counter!(names::PUBLISHES, "result" => "stored").increment(0);
        metrics::counter!(names::LAGGED).increment(0);
        metrics::counter!(names::RESYNCS).increment(0);
        metrics::gauge!(names::SUBSCRIPTIONS).increment(0.0);
    }

    /// Client connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Observer for Prometheus {
    fn opened(&self, transport: &'static str) {
        self.open.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(CONNECTIONS, "transport" => transport).increment(1.0);
        metrics::counter!(CONNECTIONS_OPENED, "transport" => transport).increment(1);
        Log.opened(transport);
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

//! Prometheus metrics at `/metrics`.
//!
//! rt-core and the transports record through the `metrics` facade, the transports' connections
//! through rt-http's [`Metrics`] observer; this module installs the Prometheus recorder once
//! per process and renders it on scrape.

use std::sync::OnceLock;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rt_core::{Health, Hub};
use rt_http::{self as h, Body, Metrics};

/// Gauge: 1 when the backplane is up, 0 when degraded.
const BACKPLANE_UP: &str = "rt_backplane_up";
/// Gauge: channels with local subscribers.
const CHANNELS: &str = "rt_channels";
/// Counter of HTTP answers by route and status.
const RESPONSES: &str = "rt_http_responses_total";

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
            Metrics::describe();
            rt_proxy::metrics::describe();
            metrics::describe_gauge!(BACKPLANE_UP, "1 when the backplane is up, 0 when degraded");
            metrics::describe_gauge!(CHANNELS, "Channels with local subscribers");
            metrics::describe_counter!(RESPONSES, "HTTP answers by route and status");
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

/// Registers, at zero, the series of the enabled `transports` (`ws`, `sse`, `poll`) and the
/// hub's, so that dashboards and alerts see them before the first use.
pub(crate) fn register(observer: &Metrics, transports: &[&'static str]) {
    use rt_core::telemetry::names;
    let poll_publish = transports.contains(&"poll").then_some("poll_publish");
    let keyed: Vec<_> = poll_publish
        .into_iter()
        .chain(rt_api::Api::routes())
        .collect();
    observer.register(transports, &keyed);
    metrics::counter!(names::DELIVERIES).increment(0);
    metrics::counter!(names::PUBLISHES, "result" => "stored").increment(0);
    metrics::counter!(names::LAGGED).increment(0);
    metrics::counter!(names::RESYNCS).increment(0);
    metrics::gauge!(names::SUBSCRIPTIONS).increment(0.0);
}

//! Prometheus metrics at `/metrics`, and tracking of client connections by transport.
//!
//! rt-core and the transports record through the `metrics` facade; this module installs the
//! Prometheus recorder once per process and renders it on scrape. Connections are tracked
//! here, at the edge, so the transports need not know about it: an SSE stream lives as long
//! as its response body, a poll as long as its request, and a WebSocket as long as the TCP
//! stream its upgrade took over.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rt_core::http::{self as h, Body};
use rt_core::telemetry::{AuthFailure, CloseCode, Connection};
use rt_core::{Health, Hub};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

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
fn answered(route: &'static str, status: StatusCode) {
    metrics::counter!(RESPONSES, "route" => route, "status" => status.as_str().to_owned())
        .increment(1);
}

/// Keeps `conn` open for as long as the response body is being sent.
fn track_body(res: Response<Body>, mut conn: Connection) -> Response<Body> {
    // Until the body ends by itself, an end means the client went away.
    conn.set_fallback("client_gone");
    res.map(|inner| {
        Tracked {
            inner,
            conn: Some(conn),
        }
        .boxed_unsync()
    })
}

/// A response body that ends its connection's tracking when it ends or is dropped.
struct Tracked {
    inner: Body,
    conn: Option<Connection>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            if let Some(mut conn) = self.conn.take() {
                conn.set_fallback("end");
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where the router parks the tracking of a WebSocket: the TCP stream it came on outlives
/// the HTTP connection (hyper hands it to the upgrade), so the tracking ends when the
/// WebSocket drops the stream.
#[derive(Clone, Debug, Default)]
pub(crate) struct UpgradeSlot(Arc<Mutex<Option<Connection>>>);

impl UpgradeSlot {
    /// Ties `conn` to the lifetime of the TCP stream.
    pub(crate) fn hold(&self, conn: Connection) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
    }
}

/// A TCP stream carrying an [`UpgradeSlot`], whose writes fail once they make no progress for
/// `--write-stall-timeout` (see [`WriteStall`](crate::limits::WriteStall)).
#[derive(Debug)]
pub(crate) struct TrackedStream {
    stream: TcpStream,
    stall: crate::limits::WriteStall,
    _slot: UpgradeSlot,
}

impl TrackedStream {
    pub(crate) fn new(
        stream: TcpStream,
        slot: UpgradeSlot,
        stall: crate::limits::WriteStall,
    ) -> Self {
        TrackedStream {
            stream,
            stall,
            _slot: slot,
        }
    }

    /// The TCP stream, to wait for the client's first byte before serving it.
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.stream
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.stall.check(cx, outcome)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.stall.check(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.stream).poll_flush(cx);
        this.stall.check(cx, outcome)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.stall.check(cx, outcome)
    }
}

/// The route label of a path (bounded, so that scanners cannot blow up the series count).
fn route(path: &str) -> &'static str {
    match path {
        "/ws" => "ws",
        "/sse" => "sse",
        "/poll" => "poll",
        "/poll/publish" => "poll_publish",
        "/api/publish" => "api_publish",
        "/health" => "health",
        "/metrics" => "metrics",
        _ => "other",
    }
}

/// Runs `handler` on `req`, tracking the connection it opens (if any) and counting the answer.
pub(crate) async fn observe<F, Fut>(mut req: Request<Incoming>, handler: F) -> Response<Body>
where
    F: FnOnce(Request<Incoming>) -> Fut,
    Fut: Future<Output = Response<Body>>,
{
    let route = route(req.uri().path());
    let presented = presents_credentials(&req);
    let res = match route {
        "ws" => {
            let code = CloseCode::default();
            req.extensions_mut().insert(code.clone());
            let slot = req.extensions().get::<UpgradeSlot>().cloned();
            let res = handler(req).await;
            if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                if let Some(slot) = slot {
                    slot.hold(Connection::open("ws", code, true));
                }
            }
            res
        }
        "sse" => {
            let res = handler(req).await;
            if res.status() == StatusCode::OK {
                track_body(res, Connection::open("sse", CloseCode::default(), true))
            } else {
                res
            }
        }
        "poll" if req.method() == Method::GET => {
            // A poll is held before it is answered: track it from the request on.
            let code = CloseCode::default();
            let conn = Connection::open("poll", code.clone(), false);
            let res = handler(req).await;
            code.set(res.status().as_u16());
            track_body(res, conn)
        }
        _ => handler(req).await,
    };
    answered(route, res.status());
    count_auth_failure(route, presented, &res);
    res
}

/// Whether a request carries a credential: a token (`Authorization`, `?token=`) or an API key.
fn presents_credentials<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    h.contains_key(http::header::AUTHORIZATION)
        || h.contains_key("x-api-key")
        || h::Query::parse(req.uri().query()).get("token").is_some()
}

/// Counts a `401`/`403` refusal of a transport route (or the publish API) in
/// `rt_auth_failures_total`: every refused token, key or channel of an HTTP request, the
/// WebSocket handshake included, is answered through here.
fn count_auth_failure(route: &'static str, presented: bool, res: &Response<Body>) {
    if !matches!(
        res.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) || !matches!(
        route,
        "ws" | "sse" | "poll" | "poll_publish" | "api_publish"
    ) {
        return;
    }
    let failure = res
        .extensions()
        .get::<h::ErrorCode>()
        .and_then(|code| AuthFailure::of(code.0, presented));
    if let Some(failure) = failure {
        failure.count(route);
    }
}
